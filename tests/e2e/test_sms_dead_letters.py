"""Dead letters through the real server and its dispatcher (docs/decisions/0033): an SMS no provider took
in its tries, or whose code expired first, is given up on with a reason on the challenge, a journal entry,
a metric, and a masked line that `sesame sms dead-letters` lists; an expired code is never sent late."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.clients.redis_server import EmbeddedRedis
from sesame.server.dispatch_loop import DispatchSettings
from sesame.server.domain.challenges import ChallengePolicy
from sesame.server.grpc.demo import find_sms
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, PHONE, enrolled, transfer
from tests.support.outbox import dispatched_state, settled
from tests.support.serve_process import sesame_on, start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

# Three tries, the next one a second after a failed one (the claim of an idle entry).
RETRYING = DispatchSettings(claim_idle=timedelta(seconds=1), max_tries=3)
MASKED = "+33*******78"


def _break_gateway(live: Live) -> None:
    """A directory where the console SMS file was: every send fails (`error`), as on a full disk."""
    live.sms_file.unlink()
    live.sms_file.mkdir()


def _mend_gateway(live: Live) -> None:
    live.sms_file.rmdir()


async def _start(live: Live) -> str:
    reply = await live.auth.StartChallenge(
        auth_pb.StartChallengeRequest(user_id=await enrolled(live), operation=transfer(), context=CONTEXT)
    )
    assert reply.delivery_state == auth_pb.DELIVERY_STATE_QUEUED
    return reply.challenge_id


async def _described(live: Live, challenge_id: str) -> auth_pb.Challenge:
    reply = await live.auth.GetChallenge(auth_pb.GetChallengeRequest(challenge_id=challenge_id))
    return reply.challenge


async def _until_given_up(live: Live, challenge_id: str, within: float = 15.0) -> auth_pb.Challenge:
    """The challenge once its SMS left the outbox (sent or given up on); TimeoutError past `within`."""
    await settled(live.store, within)
    return await _described(live, challenge_id)


async def _first_try_failed(live: Live, challenge_id: str) -> None:
    """Return once the challenge's journal holds a failed try of its SMS; TimeoutError after 10 s."""
    async with asyncio.timeout(10):
        while True:
            journal = await live.store.journal.challenge_journal(challenge_id)
            if any(entry.get("outcome") == "try_failed" for entry in journal):
                return
            await asyncio.sleep(0.02)


def dead_letters_command(env: dict[str, str]) -> list[str]:
    """`sesame sms dead-letters` in a process of its own with `env` (its SESAME_ settings), line by line."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SESAME_", "SOFTHSM2_"))}
    result = subprocess.run(
        [sys.executable, "-m", "sesame.server.cli", "sms", "dead-letters"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.splitlines()


async def test_an_sms_no_provider_takes_is_dead_lettered(live: Live, redis_server: EmbeddedRedis) -> None:
    """One try (the default), the gateway failing: FAILED with reason max_tries, journaled, counted, and
    listed masked by `sesame sms dead-letters` against the configured Redis."""
    _break_gateway(live)
    challenge_id = await _start(live)

    described = await _until_given_up(live, challenge_id)

    assert (described.delivery_state, described.delivery_reason) == (
        auth_pb.DELIVERY_STATE_FAILED,
        "max_tries",
    )
    assert described.status == auth_pb.CHALLENGE_STATUS_OPEN  # the caller may resend
    journal = await live.store.journal.challenge_journal(challenge_id)
    (dead,) = [entry for entry in journal if entry["event"] == "challenge.dead_letter"]
    assert (dead["outcome"], dead["reason"], dead["failure"], dead["tries"]) == (
        "failed",
        "max_tries",
        "error",
        "1",
    )
    assert "seq" in dead  # through journal_append, as every entry
    # The text the providers were handed, as a send is journaled: its hash with the code masked, the
    # template and its version (decision 0041).
    assert (dead["template"], len(dead["text_sha256"]), len(dead["template_sha256"])) == (
        "fr/credit_transfer",
        64,
        64,
    )
    sample = live.metrics.registry.get_sample_value
    assert sample("sesame_sms_dead_letters_total", {"reason": "max_tries"}) == 1
    assert sample("sesame_outbox_dispatches_total", {"outcome": "dead_lettered"}) == 1
    header, line = await asyncio.to_thread(dead_letters_command, {"SESAME_REDIS_URL": redis_server.url})
    assert header.split("\t")[:3] == ["at", "challenge", "user"]
    assert line.split("\t")[1:8] == [challenge_id, "alice", MASKED, "failed", "max_tries", "error", "1"]
    assert PHONE not in line
    assert PHONE.lstrip("+") not in "".join(str(v) for entry in journal for v in entry.values())


@pytest.mark.parametrize("dispatch", [RETRYING])
async def test_a_failed_try_is_sent_once_the_gateway_is_back(live: Live) -> None:
    """Three tries: the first fails and the SMS stays QUEUED; the gateway back, the next try sends it once."""
    _break_gateway(live)
    challenge_id = await _start(live)
    await _first_try_failed(live, challenge_id)
    assert (await _described(live, challenge_id)).delivery_state == auth_pb.DELIVERY_STATE_QUEUED
    _mend_gateway(live)

    described = await _until_given_up(live, challenge_id)

    assert described.delivery_state == auth_pb.DELIVERY_STATE_SENT
    assert described.delivery_reason == ""
    assert find_sms(live.sms_file, challenge_id) is not None
    lines = [line for line in live.sms_file.read_text().splitlines() if challenge_id in line]
    assert len(lines) == 1
    # The failed try is journaled with the record of the text it handed over, the one then sent (whose
    # hash tests/e2e/test_sms_text_journaled.py checks against the text received): decision 0041.
    journal = await live.store.journal.challenge_journal(challenge_id)
    (failed,) = [entry for entry in journal if entry.get("outcome") == "try_failed"]
    (sent,) = [entry for entry in journal if entry.get("outcome") == "sent"]
    recorded = ("text_sha256", "template", "template_sha256", "warning_sha256")
    assert [failed[name] for name in recorded] == [sent[name] for name in recorded]


@pytest.mark.parametrize("dispatch", [RETRYING])
@pytest.mark.parametrize("policy", [ChallengePolicy(lifetime=timedelta(seconds=30))])
async def test_a_code_that_expired_between_tries_is_dead_lettered_never_sent(live: Live) -> None:
    """A failed try, then the code expires before the next: EXPIRED (reason expired), dead-lettered, and
    nothing sent though the gateway works again."""
    _break_gateway(live)
    challenge_id = await _start(live)
    await _first_try_failed(live, challenge_id)
    live.clock.advance(timedelta(seconds=31))
    _mend_gateway(live)

    described = await _until_given_up(live, challenge_id)

    assert (described.delivery_state, described.delivery_reason) == (
        auth_pb.DELIVERY_STATE_EXPIRED,
        "expired",
    )
    assert find_sms(live.sms_file, challenge_id) is None
    sample = live.metrics.registry.get_sample_value
    assert sample("sesame_sms_dead_letters_total", {"reason": "expired"}) == 1


def test_dead_letters_are_listed_from_the_embedded_redis(tmp_path: Path) -> None:
    """`sesame serve` on its defaults (embedded Redis), its console SMS file unwritable: the dead letter
    is listed from the running server's Redis, and again from its directory once the server stopped."""
    var = tmp_path / "var"
    sms_file = tmp_path / "sms.jsonl"
    serving = start_serve(var, settings={"SESAME_SMS_CONSOLE_FILE": str(sms_file)})
    try:
        sms_file.unlink()  # checked at boot; a directory in its place: every send fails
        sms_file.mkdir()
        with grpc.insecure_channel(serving.address) as channel:
            enrol = enrol_grpc.EnrollmentServiceStub(channel)
            enrol.EnrollUser(enrol_pb.EnrollUserRequest(user_id="bob", client_id="acme", secure_phone=PHONE))
            auth = auth_grpc.AuthenticationServiceStub(channel)
            started = auth.StartChallenge(auth_pb.StartChallengeRequest(user_id="bob", operation=transfer()))
        assert dispatched_state(serving.address, started.challenge_id) == auth_pb.DELIVERY_STATE_FAILED
        running = _listed(var)
    finally:
        serving.process.terminate()
        serving.process.wait(timeout=30)
    stopped = _listed(var)
    for lines in (running, stopped):
        assert [line.split("\t")[1:6] for line in lines[1:]] == [
            [started.challenge_id, "bob", MASKED, "failed", "max_tries"]
        ]
        assert PHONE not in "\n".join(lines)
    # Another shard count than the data's (an outside audit's): it listed some shards' letters only, exit 0.
    done = sesame_on(var, "sms", "dead-letters", settings={"SESAME_REDIS_SHARDS": "1"})
    assert (done.returncode, done.stdout) == (2, ""), done.stdout + done.stderr[-2000:]
    assert "SESAME_REDIS_SHARDS is 1" in done.stderr


def _listed(var: Path) -> list[str]:
    deadline = time.monotonic() + 10
    while True:
        lines = dead_letters_command({"SESAME_VAR_DIR": str(var)})
        if len(lines) > 1 or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def test_dead_letters_of_a_directory_no_server_ran_in_is_an_error(tmp_path: Path) -> None:
    """`sesame sms dead-letters` with a SESAME_VAR_DIR no `sesame serve` used (run from the wrong place):
    exit 2, saying so, and nothing created there. It started a redis-server on a new `var/redis` and printed
    an empty list, exit 0: "no dead letters", true of nothing."""
    var = tmp_path / "elsewhere"
    done = sesame_on(var, "sms", "dead-letters")
    assert (done.returncode, done.stdout) == (2, ""), done.stdout + done.stderr[-2000:]
    assert f"no embedded Redis under {var.resolve() / 'redis'}: no `sesame serve` ran" in done.stderr
    assert not var.exists()
