"""A call to a method the server does not have is counted, under one `method` whatever its name.

gRPC answers UNIMPLEMENTED to a method no handler answers, before any interceptor of ours sees a call: such
calls were in no metric, so a caller built from a newer API (or a typo in a method name) failed every call
while the dashboards and SesameVerificationFailureSpike's denominators showed nothing. Counted under the
caller's name, they would let any caller add label values at will: one value, `unknown` (decision 0113).
"""

from __future__ import annotations

import os
import secrets

import grpc
import pytest

from tests.e2e.conftest import Live
from tests.e2e.helpers import counted

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CALLS = 60
UNKNOWN = {"method": "unknown", "code": "UNIMPLEMENTED"}


def _families(live: Live) -> set[tuple[str, ...]]:
    """The label values of every sample of sesame_rpc_requests_total and sesame_rpc_duration_seconds."""
    return {
        tuple(sorted(sample.labels.items()))
        for metric in live.metrics.registry.collect()
        if metric.name in ("sesame_rpc_requests", "sesame_rpc_duration_seconds")
        for sample in metric.samples
    }


async def test_unknown_methods_are_counted_under_one_name(live: Live) -> None:
    """CALLS calls, each to a method of its own name (in our services, another, none): every one answered
    UNIMPLEMENTED and counted under `unknown`; no other series made."""
    before = _families(live)
    assert live.metrics.registry.get_sample_value("sesame_rpc_requests_total", UNKNOWN) == 0
    names = [
        "/sesame.api.v1.AuthenticationService/StartChalenge",
        "/grpc.health.v1.Health/Probe",
        "/sesame.api.v2.AuthenticationService/StartChallenge",
    ]
    for n in range(CALLS):
        name = names[n] if n < len(names) else f"/{secrets.token_hex(4)}.Service/{secrets.token_hex(4)}"
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await live.channel.unary_unary(name)(os.urandom(16), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert await counted(live.metrics.registry, "sesame_rpc_requests_total", UNKNOWN) == CALLS
    assert _families(live) == before
