"""A worker gathers one first page of users' evidence at a time: another is shed (UNAVAILABLE, OVERLOADED,
RetryInfo), counted, and `sesame evidence --user` waits its turn (decision 0146).

A first page gathers the seals covering the period: up to ~400 MB of a worker at the leaves' bound (decision
0145); two or three back-office reads at once took a worker past what a container gives it. Here one user's
500 challenges, each in a block of 501 entries (250,500 leaves, a first page of a few seconds), are read while
another user's first page, a later page and the CLI's fetch are asked of the same worker.
"""

from __future__ import annotations

import os
import re
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from sesame.api.v1 import evidence_service_pb2 as evidence_pb
from sesame.api.v1 import evidence_service_pb2_grpc as evidence_grpc
from sesame.clients.redis_server import EmbeddedRedis
from sesame.server.grpc.evidence_client import RECEIVE_BYTES
from sesame.server.grpc.user_evidence_client import fetch_user_evidence
from tests.e2e.helpers import shed_details
from tests.support.evidence_history import History, build
from tests.support.serve_process import ServeProcess, served

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

LONG = "u-long"  # the history a first page takes seconds to gather
NONE = "u-none"  # no history: a first page of a few milliseconds
SHED = 'sesame_rpc_shed_total{method="GetUserEvidence"}'


@pytest.fixture(scope="module")
def serving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    saved = {n: os.environ.pop(n) for n in list(os.environ) if n.startswith(("SESAME_", "SOFTHSM2_"))}
    root = tmp_path_factory.mktemp("at-once")
    try:
        with EmbeddedRedis(root / "redis") as redis_server:
            build(
                root / "var",
                redis_server.url,
                History(LONG, 500, 500, datetime.now(UTC) - timedelta(days=30)),
            )
            with served(root / "var", {"SESAME_REDIS_URL": redis_server.url}) as server:
                yield server
    finally:
        os.environ.update(saved)


def test_a_first_page_beside_one_being_gathered_is_shed_and_a_later_page_answered(
    serving: ServeProcess,
) -> None:
    options = [("grpc.max_receive_message_length", RECEIVE_BYTES)]
    with grpc.insecure_channel(serving.address, options=options) as channel, ThreadPoolExecutor(1) as pool:
        stub = evidence_grpc.EvidenceServiceStub(channel)
        shed_before = _shed(serving)
        long = _gathering(pool, stub)
        refused, later = _probe_while(long, stub)
        reply = long.result()
        assert tuple(m.challenge_id for m in reply.challenges) == _ids(0, 100)  # a page
        assert reply.seals_json
        # Shed while the long one was gathered, each with what a caller needs to retry.
        assert refused, "no first page was shed while the long one was gathered"
        for error in refused:
            assert error.code() is grpc.StatusCode.UNAVAILABLE
            assert error.details() == "evidence already being gathered, retry later"
            assert shed_details(error) == ("OVERLOADED", 1.0)
        # A later page reads a slice of the index only: never shed.
        assert later
        assert {tuple(m.challenge_id for m in page.challenges) for page in later} == {_ids(100, 150)}
        assert _shed(serving) - shed_before == len(refused)
        # Nothing held once the long one was answered.
        assert stub.GetUserEvidence(evidence_pb.GetUserEvidenceRequest(user_id=NONE), timeout=30).seals_json


def test_the_cli_waits_its_turn(serving: ServeProcess) -> None:
    options = [("grpc.max_receive_message_length", RECEIVE_BYTES)]
    with grpc.insecure_channel(serving.address, options=options) as channel, ThreadPoolExecutor(1) as pool:
        stub = evidence_grpc.EvidenceServiceStub(channel)
        long = _gathering(pool, stub)
        first = _first_refusal(long, stub)
        shed_before = _shed(serving)
        record = fetch_user_evidence(serving.address, NONE)  # shed at first, then answered
        assert record.challenges == []
        assert record.seals_json
        assert first.code() is grpc.StatusCode.UNAVAILABLE
        assert _shed(serving) > shed_before  # the CLI's own first calls were shed, and it asked again
        long.result()


def _gathering(
    pool: ThreadPoolExecutor, stub: evidence_grpc.EvidenceServiceStub
) -> Future[evidence_pb.GetUserEvidenceResponse]:
    """The long user's first page, asked in `pool`, once the worker has taken it (it takes a second or more):
    a first page asked at the same moment could be taken first, and the long one shed."""
    long = pool.submit(stub.GetUserEvidence, evidence_pb.GetUserEvidenceRequest(user_id=LONG), timeout=120)
    time.sleep(0.2)
    return long


def _probe_while(
    long: Future[evidence_pb.GetUserEvidenceResponse], stub: evidence_grpc.EvidenceServiceStub
) -> tuple[list[grpc.Call], list[evidence_pb.GetUserEvidenceResponse]]:
    """Another user's first page and a later page, in turn, every 20 ms until `long` is answered."""
    refused: list[grpc.Call] = []
    later: list[evidence_pb.GetUserEvidenceResponse] = []
    while not long.done():
        if (error := _refusal_of_another(stub)) is not None:
            refused.append(error)
        if refused:  # the long one is being gathered: a later page meanwhile, and a wrong first page
            page = evidence_pb.GetUserEvidenceRequest(user_id=LONG, page_token="100", page_size=50)  # noqa: S106
            later.append(stub.GetUserEvidence(page, timeout=30))
            with pytest.raises(grpc.RpcError) as wrong:  # refused as wrong, not shed and asked again
                stub.GetUserEvidence(
                    evidence_pb.GetUserEvidenceRequest(user_id=NONE, page_size=5000), timeout=30
                )
            assert wrong.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        time.sleep(0.02)
    return refused, later


def _first_refusal(
    long: Future[evidence_pb.GetUserEvidenceResponse], stub: evidence_grpc.EvidenceServiceStub
) -> grpc.Call:
    """The first refusal of another user's first page, once `long` is being gathered."""
    while not long.done():
        if (error := _refusal_of_another(stub)) is not None:
            return error
        time.sleep(0.02)
    raise AssertionError("the long first page was answered before another was refused")


def _refusal_of_another(stub: evidence_grpc.EvidenceServiceStub) -> grpc.Call | None:
    """The refusal of a first page of the user without history, or None when it was answered."""
    try:
        stub.GetUserEvidence(evidence_pb.GetUserEvidenceRequest(user_id=NONE), timeout=30)
    except grpc.RpcError as error:
        if not isinstance(error, grpc.Call):
            raise
        return error
    return None


def _ids(start: int, end: int) -> tuple[str, ...]:
    return tuple(f"c{n:06d}" for n in range(start, end))


def _shed(serving: ServeProcess) -> float:
    """GetUserEvidence's shed calls on the server's /metrics, once the count is still for 0.3 s (an aborted
    call's status can reach the client before the worker's interceptor counted it)."""
    seen = -1.0
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{serving.metrics_port}/metrics", timeout=30) as reply:
            text = reply.read().decode()
        found = re.search(rf"^{re.escape(SHED)} (\S+)$", text, re.MULTILINE)
        count = 0.0 if found is None else float(found.group(1))
        if count == seen:
            return count
        seen = count
        time.sleep(0.3)


def test_a_first_page_given_up_on_holds_its_place_until_its_work_ends(serving: ServeProcess) -> None:
    """A caller that gives up (its deadline) stops its first page at its next await, but not the thread it
    waited for (the archive's read of the seals, most of a second here): until it ends, the worker holds its
    memory, and another first page is shed; then another is answered."""
    options = [("grpc.max_receive_message_length", RECEIVE_BYTES)]
    with grpc.insecure_channel(serving.address, options=options) as channel:
        stub = evidence_grpc.EvidenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as given_up:
            stub.GetUserEvidence(evidence_pb.GetUserEvidenceRequest(user_id=LONG), timeout=0.3)
        assert given_up.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        with pytest.raises(grpc.RpcError) as shed:
            stub.GetUserEvidence(evidence_pb.GetUserEvidenceRequest(user_id=NONE), timeout=30)
        assert shed.value.code() is grpc.StatusCode.UNAVAILABLE
        deadline = time.monotonic() + 60
        while True:  # answered once the abandoned page's work ended
            try:
                assert stub.GetUserEvidence(evidence_pb.GetUserEvidenceRequest(user_id=NONE), timeout=30)
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
