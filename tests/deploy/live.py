"""Five running `sesame serve`, real flows and real failures, scraped by a real Prometheus with our alerts.

- `main`: mTLS with the test PKI (so it publishes its certificate's expiry, a day away), console SMS, a
  send budget of 2 per user. Ana passes a login (one wrong code first, a resend too soon); Bob's third code
  is refused by his budget; Eve guesses until she is blocked, then keeps submitting codes. At the end its
  Redis is stopped (SIGSTOP): the health probe fails and the replica reports NOT_SERVING.
  Max adds a payee from a new device (a risk WARN with its reason, a SIM-swap check); the mobile operator
  (a local CAMARA SIM Swap API) says the SIM of four other users was just changed: their new payees are
  denied.
- `failing`: Kannel at a port nobody listens on, so every SMS fails (`unreachable`) and its breaker opens;
  then its SoftHSM token is deleted under it, so HSM calls fail and the journal is no longer sealed; last,
  its Redis (one of the test's own) is full (maxmemory, noeviction): it answers the health probe and refuses
  every enrolment (SesameRedisRefusing, decision 0133).
- `stalled`: no dispatch loop (`SESAME_DISPATCHERS=0`), so its outbox backs up; its journal archive's first
  segment is a directory, not a file, so its sealed blocks are never archived. Its workers run one call at
  a time (`SESAME_MAX_CONCURRENT_RPCS=1`): a burst of reads at once is shed (SesameCallsShed).
- `down`: nothing but boot; at the end its Redis is stopped and its worker killed: the new one cannot boot,
  no worker serves (SesameWorkersDown and SesameNotServing), and nothing is sealed.
- `gone`: nothing but boot; once scraped, its supervisor is killed (SIGKILL: its workers and Redis follow
  it), so its target no longer answers and every series of its goes (SesameScrapeFailing).

Each replica is its own scrape job: each has its own Redis, a deployment of its own. The rules are the
file's with the thresholds, windows and `for:` of LIVE_SCALE (tests/deploy/artifacts.py): minutes cannot be
waited for.

Each counter is first moved once and seen by two scrapes before the burst that makes an alert fire:
Prometheus computes `increase` from the samples it holds, and a series born in the middle of a burst would
show no increase at all.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
import redis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.clients.redis_server import EmbeddedRedis
from tests.deploy.artifacts import LIVE_SCALE, live_alerts
from tests.support.camara_sim_swap import TOKEN, Operator, camara_operator
from tests.support.outbox import sms_in
from tests.support.pki import Pki
from tests.support.prometheus import Prometheus, running_prometheus
from tests.support.serve_process import ServeProcess, free_port, start_serve

LOGIN = op_pb.Operation(login=op_pb.Login())
WRONG_CODE = auth_pb.VERIFY_RESULT_WRONG_CODE
QUEUED = auth_pb.DELIVERY_STATE_QUEUED
DENIED = tuple((f"swapped-{n}", f"+336120001{n:02d}") for n in range(4))  # their SIMs just changed
STALLED_SMS = 5  # queued on the stalled replica: past the live backlog threshold (3)
NEW_PAYEE = op_pb.Operation(
    add_beneficiary=op_pb.AddBeneficiary(payee=op_pb.Payee(name="L J H", iban="FR7630006000011234567890189"))
)
REFUSED_UNEVALUATED = {auth_pb.VERIFY_RESULT_LOCKED, auth_pb.VERIFY_RESULT_USER_BLOCKED}


@dataclass(frozen=True, slots=True)
class Replica:
    """A `sesame serve` child, its var/ directory and its metrics port."""

    serving: ServeProcess
    var: Path
    metrics_port: int

    @property
    def target(self) -> str:
        """The scrape target."""
        return f"127.0.0.1:{self.metrics_port}"


@dataclass(frozen=True, slots=True)
class Callers:
    """Stubs on one replica: the back office enrols, payments runs challenges."""

    enrol: enrol_grpc.EnrollmentServiceStub
    auth: auth_grpc.AuthenticationServiceStub
    sms_file: Path

    def enrolled(self, user_id: str, phone: str) -> None:
        """Enrol `user_id` on `phone`."""
        self.enrol.EnrollUser(
            enrol_pb.EnrollUserRequest(user_id=user_id, client_id="acme", secure_phone=phone), timeout=10
        )

    def start(
        self, user_id: str, operation: op_pb.Operation = LOGIN, device: str = ""
    ) -> auth_pb.StartChallengeResponse:
        """Start a challenge (a login by default), from `device` when named."""
        context = op_pb.RequestContext(device_id=device) if device else None
        request = auth_pb.StartChallengeRequest(user_id=user_id, operation=operation, context=context)
        reply: auth_pb.StartChallengeResponse = self.auth.StartChallenge(request, timeout=20)
        return reply

    def sent_state(self, user_id: str) -> int:
        """Start a login challenge (answered QUEUED) and its delivery state once its SMS was dispatched."""
        challenge_id = self.start(user_id).challenge_id
        request = auth_pb.GetChallengeRequest(challenge_id=challenge_id)
        deadline = time.monotonic() + 20
        while (state := self.auth.GetChallenge(request, timeout=10).challenge.delivery_state) == QUEUED:
            assert time.monotonic() < deadline, f"the SMS of {challenge_id} is still queued"
            time.sleep(0.02)
        return int(state)

    def code(self, challenge_id: str) -> str:
        """The code the console gateway wrote for `challenge_id`."""
        return sms_in(self.sms_file, challenge_id)[1]

    def verify(
        self, challenge_id: str, code: str, operation: op_pb.Operation = LOGIN, device: str = ""
    ) -> int:
        """Submit `code` (for a login by default, from `device` when named); the result."""
        context = op_pb.RequestContext(device_id=device) if device else None
        request = auth_pb.VerifyChallengeRequest(
            challenge_id=challenge_id, code=code, operation=operation, context=context
        )
        result: int = self.auth.VerifyChallenge(request, timeout=10).result
        return result

    def refused(self, call: Callable[[], object], code: grpc.StatusCode) -> None:
        """Assert that `call` fails with `code`."""
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == code


def wrong(code: str) -> str:
    """Another code of the same length."""
    return code[:-1] + str((int(code[-1]) + 1) % 10)


def replica(directory: Path, settings: dict[str, str]) -> Replica:
    directory.mkdir(parents=True)
    var = directory / "var"
    serving = start_serve(var, settings=settings)
    assert serving.metrics_port is not None
    return Replica(serving, var, serving.metrics_port)


@contextmanager
def stopped_on_exit(replica: Replica) -> Iterator[Replica]:
    """`replica`, stopped (SIGTERM, then waited for) on exit."""
    try:
        yield replica
    finally:
        replica.serving.process.terminate()
        replica.serving.process.wait(timeout=30)


@contextmanager
def monitored(directory: Path, pki: Pki) -> Iterator[Prometheus]:
    """Start both replicas and Prometheus, make the flows and the failures; yield Prometheus, alerts live."""
    with ExitStack() as stack:
        operator = stack.enter_context(camara_operator())
        main = stack.enter_context(
            stopped_on_exit(
                replica(
                    directory / "main",
                    {
                        **pki.env,
                        "SESAME_HEALTH_ADDR": f"127.0.0.1:{free_port()}",
                        "SESAME_SEND_BUDGET_USER": "2",
                        "SESAME_SIM_SWAP_URL": operator.url,
                        "SESAME_SIM_SWAP_TOKEN": TOKEN,
                    },
                )
            )
        )
        # The failing replica's Redis is the test's own: it fills it up (CONFIG SET maxmemory).
        failing_redis = stack.enter_context(EmbeddedRedis(directory / "failing-redis"))
        failing = stack.enter_context(
            stopped_on_exit(
                replica(
                    directory / "failing",
                    {
                        "SESAME_REDIS_URL": failing_redis.url,
                        "SESAME_SMS_PROVIDERS": "kannel",
                        "SESAME_KANNEL_URL": f"http://127.0.0.1:{free_port()}",
                        "SESAME_KANNEL_USERNAME": "sesame",
                        "SESAME_KANNEL_PASSWORD": "any-password",
                        "SESAME_DLR_ADDR": "off",
                    },
                )
            )
        )
        # The stalled replica's archive cannot take a line: its first segment's name is a directory (a file
        # there instead of the archive's directory is refused at boot, decision 0084).
        (directory / "stalled-archive" / "segment-000000000001.jsonl").mkdir(parents=True)
        stalled = stack.enter_context(
            stopped_on_exit(
                replica(
                    directory / "stalled",
                    {
                        "SESAME_DISPATCHERS": "0",
                        "SESAME_MAX_CONCURRENT_RPCS": "1",
                        "SESAME_JOURNAL_ARCHIVE_DIR": str(directory / "stalled-archive"),
                    },
                )
            )
        )
        # Its worker killed while its Redis is stopped: the new one cannot boot, and none serves.
        down = stack.enter_context(stopped_on_exit(replica(directory / "down", {})))
        gone = stack.enter_context(stopped_on_exit(replica(directory / "gone", {})))
        jobs = {
            "main": main.target,
            "failing": failing.target,
            "stalled": stalled.target,
            "down": down.target,
            "gone": gone.target,
        }
        rules = live_alerts(directory / "alerts.yml")
        prometheus = stack.enter_context(running_prometheus(directory / "prometheus", jobs, [rules]))
        prometheus.wait_for("count(up == 1) == 5")
        prometheus.wait_for('count(sesame_build_info{job="gone"}) == 1')
        on_main = stack.enter_context(callers(main, pki))
        on_failing = stack.enter_context(callers(failing, None))
        on_stalled = stack.enter_context(callers(stalled, None))
        eve = _flows(on_main, on_failing)
        _risky(on_main, operator)
        stalled_challenges = queued(on_stalled, STALLED_SMS)
        _seen_twice(prometheus)
        _bursts(on_main, on_failing, eve)
        _denied(on_main, operator, DENIED[1:])
        _hsm_fails(failing, on_failing, prometheus)
        _redis_full(failing_redis, on_failing, prometheus)
        _shed(on_stalled, stalled_challenges)
        stack.callback(_redis_stopped(main))
        stack.callback(_workers_down(down))
        os.kill(gone.serving.process.pid, signal.SIGKILL)
        prometheus.wait_for('sesame_health_probe_up{probe="state store"} == 0')
        # The scaled alerts need a few seconds of their condition (a window, a time since): let them build.
        prometheus.wait_for_alerts(set(LIVE_SCALE))
        yield prometheus


@contextmanager
def callers(replica: Replica, pki: Pki | None) -> Iterator[Callers]:
    """Stubs on `replica`, through mTLS with the test PKI's callers when `pki` is given."""
    address = replica.serving.address
    if pki is None:
        backoffice = payments = grpc.insecure_channel(address)
    else:
        backoffice = grpc.secure_channel(address, pki.backoffice.credentials(pki.ca))
        payments = grpc.secure_channel(address, pki.payments.credentials(pki.ca))
    try:
        yield Callers(
            enrol_grpc.EnrollmentServiceStub(backoffice),
            auth_grpc.AuthenticationServiceStub(payments),
            replica.var / "sms.jsonl",
        )
    finally:
        backoffice.close()
        payments.close()


def _flows(main: Callers, failing: Callers) -> str:
    """Ordinary traffic, and the first move of every counter the bursts raise; Eve's open challenge."""
    main.enrolled("ana", "+33612000001")
    challenge = main.start("ana").challenge_id
    code = main.code(challenge)
    assert main.verify(challenge, wrong(code)) == auth_pb.VERIFY_RESULT_WRONG_CODE
    main.refused(
        lambda: main.auth.ResendChallenge(auth_pb.ResendChallengeRequest(challenge_id=challenge), timeout=10),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
    assert main.verify(challenge, code) == auth_pb.VERIFY_RESULT_VERIFIED
    main.enrolled("bob", "+33612000002")
    main.start("bob")
    main.start("bob")
    main.refused(lambda: main.start("bob"), grpc.StatusCode.RESOURCE_EXHAUSTED)
    # Eve: three wrong codes lock her first challenge, two more on the second block her (which voids it);
    # her codes are refused from then on, unevaluated.
    main.enrolled("eve", "+33612000003")
    first = main.start("eve").challenge_id
    for _ in range(3):
        assert main.verify(first, "000000") == auth_pb.VERIFY_RESULT_WRONG_CODE
    assert main.verify(first, "000000") == auth_pb.VERIFY_RESULT_LOCKED
    second = main.start("eve").challenge_id
    results = [main.verify(second, "000000") for _ in range(3)]
    assert results == [WRONG_CODE, WRONG_CODE, auth_pb.VERIFY_RESULT_VOIDED]
    assert main.verify(first, "000000") in REFUSED_UNEVALUATED
    failing.enrolled("zoe", "+33612000004")
    assert failing.sent_state("zoe") == auth_pb.DELIVERY_STATE_FAILED
    return first


def _risky(main: Callers, operator: Operator) -> None:
    """Max adds a payee from his phone (dev-1), then another from a device never seen: WARN NEW_DEVICE. The
    first of the users whose SIM was swapped is denied a new payee."""
    operator.changes["+33612000005"] = None  # never swapped
    main.enrolled("max", "+33612000005")
    challenge = main.start("max", NEW_PAYEE, "dev-1").challenge_id
    assert main.verify(challenge, main.code(challenge), NEW_PAYEE, "dev-1") == auth_pb.VERIFY_RESULT_VERIFIED
    assert main.start("max", NEW_PAYEE, "dev-2").risk.decision == auth_pb.RISK_DECISION_WARN
    _denied(main, operator, DENIED[:1])


def _denied(main: Callers, operator: Operator, users: tuple[tuple[str, str], ...]) -> None:
    """Each of `users` (id, number), whose SIM the operator says was changed now, is denied a new payee."""
    for user_id, phone in users:
        operator.changes[phone] = datetime.now(UTC)
        main.enrolled(user_id, phone)
        main.refused(
            lambda user_id=user_id: main.start(user_id, NEW_PAYEE), grpc.StatusCode.FAILED_PRECONDITION
        )


def queued(callers: Callers, count: int) -> list[str]:
    """`count` users enrolled and a login started for each, on a replica that dispatches nothing: QUEUED."""
    started = []
    for n in range(count):
        callers.enrolled(f"queued-{n}", f"+336130000{n:02d}")
        reply = callers.start(f"queued-{n}")
        assert reply.delivery_state == QUEUED
        started.append(reply.challenge_id)
    return started


def _seen_twice(prometheus: Prometheus) -> None:
    """Wait until Prometheus holds two samples of the counters the bursts will raise."""
    for series in (
        'sesame_verifications_total{result=~"locked|user_blocked"}',
        'sesame_sms_total{outcome="failed"}',
        'sesame_risk_decisions_total{decision="deny"}',
    ):
        prometheus.wait_for(f"min(count_over_time({series}[1m])) >= 2")


def _bursts(main: Callers, failing: Callers, eve_challenge: str) -> None:
    """Eve submits twelve more codes while blocked; eight SMS fail on the failing replica."""
    for _ in range(12):
        assert main.verify(eve_challenge, "000000") in REFUSED_UNEVALUATED
    for _ in range(8):
        assert failing.sent_state("zoe") == auth_pb.DELIVERY_STATE_FAILED


def _shed(stalled: Callers, challenges: list[str]) -> None:
    """Reads of the stalled replica's challenges, 32 at once on its one connection, where a worker runs one
    call at a time: some are shed (UNAVAILABLE), each answered one way or the other. Late in the drill: the
    alert's live window (5 minutes) holds them until the tests are done."""
    requests = [auth_pb.GetChallengeRequest(challenge_id=challenges[n % len(challenges)]) for n in range(320)]

    def read(request: auth_pb.GetChallengeRequest) -> grpc.StatusCode:
        try:
            stalled.auth.GetChallenge(request, timeout=20)
        except grpc.RpcError as error:
            return error.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK

    with ThreadPoolExecutor(32) as pool:
        codes = Counter(pool.map(read, requests))
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, codes
    assert codes[grpc.StatusCode.UNAVAILABLE] >= 2, codes


def _hsm_fails(replica: Replica, callers: Callers, prometheus: Prometheus) -> None:
    """Delete the replica's token under it: its HSM calls fail, and go on failing across scrapes."""
    env = {**os.environ, "SOFTHSM2_CONF": str(replica.var / "softhsm" / "softhsm2.conf")}
    slots = subprocess.run(
        ["softhsm2-util", "--show-slots"], env=env, capture_output=True, text=True, check=True
    ).stdout
    label = re.findall(r"Label:\s+(\S+)", slots)[0]
    subprocess.run(
        ["softhsm2-util", "--delete-token", "--token", label], env=env, capture_output=True, check=True
    )
    # Journaled after the token went (an enrolment needs no HSM): the sealer cannot sign it.
    callers.enrolled("yann", "+33612000006")
    # Which HSM call fails first (mac, then random) is the reconnect policy's business: each failing call
    # waits until Prometheus has scraped the one before, so that every series rises after it is born.
    failures = 'sesame_dependency_failures_total{dependency="hsm"}'
    for count in range(1, 5):
        callers.refused(lambda: callers.start("zoe"), grpc.StatusCode.UNAVAILABLE)
        prometheus.wait_for(f"sum({failures}) >= {count}")
    prometheus.wait_for(f"sum(increase({failures}[5m])) > 0")


def _redis_full(server: EmbeddedRedis, callers: Callers, prometheus: Prometheus) -> None:
    """Fill the replica's Redis (maxmemory 1 byte, noeviction): it still answers PING, so health's probe
    passes, and refuses every enrolment (OutOfMemoryError: UNAVAILABLE), across scrapes."""
    with redis.Redis.from_url(server.url) as admin:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", 1)
    failures = 'sesame_dependency_failures_total{job="failing",dependency="store"}'
    for count in range(1, 4):
        callers.refused(lambda: callers.enrolled("full", "+33612000007"), grpc.StatusCode.UNAVAILABLE)
        prometheus.wait_for(f"sum({failures}) >= {count}")
    assert prometheus.query('sesame_health_probe_up{job="failing",probe="state store"} == 1')


def _redis_stopped(replica: Replica) -> Callable[[], None]:
    """SIGSTOP the replica's embedded redis-server (alive, silent); return what resumes it."""
    pid = int((replica.var / "redis" / "redis.pid").read_text())
    os.kill(pid, signal.SIGSTOP)
    return lambda: os.kill(pid, signal.SIGCONT)


def _workers_down(replica: Replica) -> Callable[[], None]:
    """Stop the replica's Redis and kill its workers: none comes back until Redis does; return what resumes
    it."""
    resume = _redis_stopped(replica)
    for worker in replica.serving.workers():
        os.kill(worker, signal.SIGKILL)
    return resume
