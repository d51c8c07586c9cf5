"""The counters the alerts and the dashboard read are on /metrics at 0 from boot, summed over the workers.

A series born at its first increment is one rate() and increase() take as starting there: the wrong code, the
failed SMS or the HSM failure that made it went uncounted, and a burst of HSM failures between two scrapes,
then none, never fired SesameHsmErrors (decision 0119).
"""

from __future__ import annotations

import json
import os
import re
import signal
import urllib.request
from importlib import resources
from pathlib import Path
from typing import get_args

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.server.domain.call_meter import StoreRead
from tests.support.serve_process import served, until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]

# Every call the store's funnel names: each script (its lua/*.lua file) and each read.
_STORE_CALLS = (
    *(
        entry.name.removesuffix(".lua")
        for entry in resources.files("sesame.clients").joinpath("lua").iterdir()
        if entry.name.endswith(".lua") and not entry.name.startswith("_")
    ),
    *get_args(StoreRead),
)
_FAILURES = ("unreachable", "timeout", "refused", "error", "throttled", "unavailable", "lost")
_FAILURES += ("bad_number", "bad_content", "partial")
# What an alert or a panel selects, each label value docs/operations.md lists for it.
EXPECTED: dict[str, list[dict[str, str]]] = {
    "sesame_verifications_total": [
        {"result": r}
        for r in (
            "verified",
            "wrong_code",
            "locked",
            "expired",
            "already_used",
            "operation_mismatch",
            "voided",
            "user_blocked",
        )
    ],
    "sesame_dependency_failures_total": [
        *({"dependency": "hsm", "call": c} for c in ("mac", "sign", "random", "public_keys", "versions")),
        {"dependency": "sms", "call": "console"},
        *({"dependency": "store", "call": c} for c in _STORE_CALLS),
    ],
    "sesame_sms_total": [{"gateway": "console", "outcome": o} for o in ("sent", "failed")],
    "sesame_sms_failures_total": [{"gateway": "console", "reason": r} for r in _FAILURES],
    "sesame_sms_provider_attempts_total": [
        {"provider": "console", "outcome": o} for o in ("sent", "queued", "open", *_FAILURES)
    ],
    "sesame_risk_decisions_total": [
        {"operation": o, "decision": d}
        for o in ("login", "credit_transfer", "add_beneficiary", "change_phone")
        for d in ("allow", "warn", "hold", "deny")
    ],
    "sesame_challenges_opened_total": [
        {"operation": o} for o in ("login", "credit_transfer", "add_beneficiary", "change_phone")
    ],
    "sesame_resends_total": [
        {"outcome": o} for o in ("resent", "too_soon", "exhausted", "closed", "user_blocked")
    ],
    "sesame_send_budget_refusals_total": [{"subject": s} for s in ("user", "phone", "caller", "global")],
    "sesame_user_changes_total": [
        {"change": c}
        for c in ("suspend", "reinstate", "unblock", "revoke", "change_phone", "terminate_client")
    ],
    "sesame_challenges_voided_total": [
        {"reason": r} for r in ("user_suspended", "user_revoked", "phone_changed", "user_blocked")
    ],
    "sesame_outbox_dispatches_total": [
        {"outcome": o}
        for o in ("sent", "retry", "dead_lettered", "expired", "missing", "notice_sent", "notice_failed")
    ],
    "sesame_sms_dead_letters_total": [
        {"reason": r} for r in ("expired", "max_tries", "unconfirmed", "refused", "user_suspended")
    ],
    "sesame_sim_swap_checks_total": [{"state": s} for s in ("swapped", "not_swapped", "unavailable", "off")],
    "sesame_rpc_shed_total": [
        {"method": m} for m in ("StartChallenge", "VerifyChallenge", "GetUser", "GetUserEvidence")
    ],
}


def _scrape(port: int) -> tuple[Series, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    series: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series[sample.name, frozenset(sample.labels.items())] = sample.value
    return series, len(text)


def _key(name: str, labels: dict[str, str]) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def test_alerted_counters_read_zero_from_boot_and_count_the_first_event(tmp_path: Path) -> None:
    """Two workers just booted: every series above reads 0; one wrong code then moves its series 0 -> 1."""
    var = tmp_path / "var"
    with served(var, {"SESAME_WORKERS": "2"}) as serving:
        assert serving.metrics_port is not None
        booted, size = _scrape(serving.metrics_port)
        missing = [
            f"{name}{labels}"
            for name, every in EXPECTED.items()
            for labels in every
            if booted.get(_key(name, labels)) != 0
        ]
        assert not missing, f"not at 0 at boot: {missing}"
        assert size < 64_000  # the zeros are a bounded set: what the page holds at boot, once
        wrong = _key("sesame_verifications_total", {"result": "wrong_code"})
        with grpc.insecure_channel(serving.address) as channel:
            enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(
                enrol_pb.EnrollUserRequest(
                    user_id="first-wrong", client_id="acme", secure_phone="+33612345678"
                ),
                timeout=5,
            )
            auth = auth_grpc.AuthenticationServiceStub(channel)
            login = op_pb.Operation(login=op_pb.Login())
            started = auth.StartChallenge(
                auth_pb.StartChallengeRequest(user_id="first-wrong", operation=login)
            )
            sms = var / "sms.jsonl"
            assert until(lambda: sms.exists() and sms.read_text().endswith("\n"), 5)
            sent = json.loads(sms.read_text().splitlines()[-1])["text"]
            code = re.search(r"\b\d{6}\b", sent)
            assert code is not None
            other = "".join(str((int(d) + 1) % 10) for d in code.group())
            auth.VerifyChallenge(
                auth_pb.VerifyChallengeRequest(challenge_id=started.challenge_id, code=other, operation=login)
            )
        assert until(lambda: _scrape(serving.metrics_port)[0].get(wrong) == 1, 5)


def test_a_store_call_failure_reads_zero_from_boot_then_one(tmp_path: Path) -> None:
    """Each Redis call's failures read 0 from boot; a StartChallenge while Redis is hung (SIGSTOP) moves its
    call's series 0 -> 1: an increase the dashboard's failures panel sees, where it was born at 1."""
    var = tmp_path / "var"
    with served(var, {"SESAME_WORKERS": "1"}) as serving:
        assert serving.metrics_port is not None
        with grpc.insecure_channel(serving.address) as channel:
            enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(
                enrol_pb.EnrollUserRequest(user_id="hung", client_id="acme", secure_phone="+33612345678"),
                timeout=5,
            )
            booted, _ = _scrape(serving.metrics_port)
            store = {
                key: value
                for key, value in booted.items()
                if key[0] == "sesame_dependency_failures_total" and ("dependency", "store") in key[1]
            }
            assert store, "no store failure series at boot"
            assert set(store.values()) == {0}
            redis = int((var / "redis" / "redis.pid").read_text().strip())
            os.kill(redis, signal.SIGSTOP)
            try:
                with pytest.raises(grpc.RpcError) as refused:
                    auth_grpc.AuthenticationServiceStub(channel).StartChallenge(
                        auth_pb.StartChallengeRequest(
                            user_id="hung", operation=op_pb.Operation(login=op_pb.Login())
                        ),
                        timeout=15,
                    )
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            finally:
                os.kill(redis, signal.SIGCONT)
        after, _ = _scrape(serving.metrics_port)
        failed = {dict(key[1])["call"]: value for key, value in after.items() if key in store and value > 0}
        assert failed == {"open_challenge": 1}
