"""Spans through a real server: one per RPC, its Redis scripts and HSM calls as children, no personal data."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp_pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as otlp_grpc
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.server.tracing import install_tracing
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, IBAN, PHONE, enrolled, started, transfer, verify, wrong
from tests.support.serve_process import start_serve
from tests.support.telemetry_fixtures import JsonLogs

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

USER = "customer-0042"
START = "sesame.api.v1.AuthenticationService/StartChallenge"
VERIFY = "sesame.api.v1.AuthenticationService/VerifyChallenge"
# A W3C trace context a caller (the bank's gateway, say) sends along with its call.
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"


def _rpc(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    (span,) = [s for s in spans if s.name == name and s.kind is SpanKind.SERVER]
    return span


def _children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[str]:
    assert parent.context is not None
    return [s.name for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


async def test_a_start_is_one_server_span_with_its_redis_and_hsm_calls_as_children(
    live: Live, spans: InMemorySpanExporter
) -> None:
    """StartChallenge: a SERVER span, OK, whose children are the open_challenge script and HSM calls."""
    await enrolled(live, USER)
    await started(live, USER)
    recorded = spans.get_finished_spans()
    rpc = _rpc(recorded, START)
    assert rpc.attributes is not None
    assert (rpc.attributes["rpc.method"], rpc.attributes["rpc.grpc.status_code"]) == ("StartChallenge", 0)
    children = _children(recorded, rpc)
    assert "redis open_challenge" in children
    assert "hsm mac" in children
    assert {s.context.trace_id for s in recorded if s.name in children} == {rpc.context.trace_id}


async def test_a_verification_traces_its_script_and_mac(live: Live, spans: InMemorySpanExporter) -> None:
    """VerifyChallenge: the record_verification script and the HSM's MAC under the RPC's span."""
    await enrolled(live, USER)
    challenge_id, code = await started(live, USER)
    spans.clear()
    await verify(live, challenge_id, wrong(code))
    recorded = spans.get_finished_spans()
    children = _children(recorded, _rpc(recorded, VERIFY))
    assert {"redis record_verification", "hsm mac"} <= set(children)


async def test_no_span_holds_personal_data(live: Live, spans: InMemorySpanExporter) -> None:
    """No attribute or event of any span holds the user id, the number, the IBAN or the code."""
    await enrolled(live, USER)
    challenge_id, code = await started(live, USER)
    await verify(live, challenge_id, code)
    recorded = spans.get_finished_spans()
    assert len(recorded) > 5
    shown = " ".join(span.to_json() for span in recorded)
    for secret in (USER, PHONE, PHONE[1:], IBAN, code):
        assert secret not in shown, secret


async def test_a_callers_trace_context_is_continued(live: Live, spans: InMemorySpanExporter) -> None:
    """A `traceparent` sent by the caller makes the RPC's span part of the caller's trace."""
    await enrolled(live, USER)
    await live.auth.StartChallenge(
        auth_pb.StartChallengeRequest(user_id=USER, operation=transfer(), context=CONTEXT),
        metadata=(("traceparent", TRACEPARENT),),
    )
    rpc = _rpc(spans.get_finished_spans(), START)
    assert format(rpc.context.trace_id, "032x") == CALLER_TRACE


async def test_the_sms_dispatch_joins_the_trace_of_the_start_that_queued_it(
    live: Live, spans: InMemorySpanExporter
) -> None:
    """The outbox entry carries the Start's trace context (decision 0040): the dispatch of its SMS is a child
    of the StartChallenge span, in its trace, and the dispatch's own script is a child of the dispatch."""
    await enrolled(live, USER)
    await started(live, USER)  # returns once the SMS was handed over; its dispatch settles right after
    for _ in range(500):
        dispatches = [s for s in spans.get_finished_spans() if s.name == "dispatch sms"]
        if dispatches:
            break
        await asyncio.sleep(0.01)
    recorded = spans.get_finished_spans()
    rpc = _rpc(recorded, START)
    (dispatch,) = [s for s in recorded if s.name == "dispatch sms"]
    assert dispatch.parent is not None
    assert dispatch.parent.span_id == rpc.context.span_id
    assert dispatch.context.trace_id == rpc.context.trace_id
    assert "redis record_dispatch" in _children(recorded, dispatch)


async def test_the_log_lines_of_a_call_carry_its_trace_and_span_ids(
    live: Live, spans: InMemorySpanExporter, json_logs: JsonLogs
) -> None:
    """The line that closes a call names the trace and the span of that call."""
    await enrolled(live, USER)
    await started(live, USER)
    rpc = _rpc(spans.get_finished_spans(), START)
    (answered,) = [
        line for line in json_logs.lines() if line.get("rpc") == "StartChallenge" and "code" in line
    ]
    assert answered["trace_id"] == format(rpc.context.trace_id, "032x")
    assert answered["span_id"] == format(rpc.context.span_id, "016x")


class _Collector(otlp_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace collector that keeps what it is sent."""

    def __init__(self) -> None:
        self.received: list[otlp_pb.ExportTraceServiceRequest] = []

    def Export(self, request: otlp_pb.ExportTraceServiceRequest, context: Any) -> Any:  # noqa: N802
        self.received.append(request)
        return otlp_pb.ExportTraceServiceResponse()

    def span_names(self) -> set[str]:
        return {
            span.name
            for request in self.received
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        }

    def service_names(self) -> set[str]:
        return {
            attribute.value.string_value
            for request in self.received
            for resource in request.resource_spans
            for attribute in resource.resource.attributes
            if attribute.key == "service.name"
        }


@pytest.fixture
def collector() -> Iterator[tuple[_Collector, int]]:
    """A collector on a free loopback port."""
    kept = _Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    otlp_grpc.add_TraceServiceServicer_to_server(kept, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield kept, port
    finally:
        server.stop(0)


def test_serve_exports_its_spans_over_otlp_when_an_endpoint_is_set(
    tmp_path: Path, collector: tuple[_Collector, int]
) -> None:
    """With SESAME_OTLP_ENDPOINT, `sesame serve` exports the spans of a call to the collector."""
    kept, port = collector
    served = start_serve(
        tmp_path / "var",
        settings={"SESAME_OTLP_ENDPOINT": f"http://127.0.0.1:{port}", "OTEL_BSP_SCHEDULE_DELAY": "100"},
    )
    try:
        with grpc.insecure_channel(served.address) as channel:
            get_user = channel.unary_unary(
                "/sesame.api.v1.EnrollmentService/GetUser",
                request_serializer=enrol_pb.GetUserRequest.SerializeToString,
                response_deserializer=enrol_pb.GetUserResponse.FromString,
            )
            with pytest.raises(grpc.RpcError):
                get_user(enrol_pb.GetUserRequest(user_id="nobody-here"), timeout=10)
    finally:
        served.process.terminate()
        served.process.wait(timeout=30)
    assert "sesame.api.v1.EnrollmentService/GetUser" in kept.span_names()
    assert kept.service_names() == {"sesame"}


def test_without_an_endpoint_no_tracer_provider_is_installed() -> None:
    """SESAME_OTLP_ENDPOINT unset: nothing installed, OpenTelemetry's API stays a no-op."""
    before = trace.get_tracer_provider()
    assert install_tracing(None) is None
    assert trace.get_tracer_provider() is before
