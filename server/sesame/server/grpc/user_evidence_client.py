"""The client side of `sesame evidence --user`: a user's evidence (EvidenceService.GetUserEvidence)."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from sesame.api.v1 import evidence_service_pb2 as evidence_pb
from sesame.api.v1 import evidence_service_pb2_grpc as evidence_grpc
from sesame.server.evidence_bundle import UserRecord
from sesame.server.grpc.evidence_client import PAGE_SIZE, PAGE_TIMEOUT_SECONDS, RECEIVE_BYTES, answer_of
from sesame.server.grpc.probe import ClientTls, client_channel


def fetch_user_evidence(  # noqa: PLR0913 (the selector's parts, keyword-only)
    target: str,
    user_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    transaction_id: str = "",
    tls: ClientTls | None = None,
) -> UserRecord:
    """Every page of the user's evidence: the challenges found, the lifecycle and health notes, decoded."""
    request = evidence_pb.GetUserEvidenceRequest(
        user_id=user_id, transaction_id=transaction_id, page_size=PAGE_SIZE
    )
    if since is not None:
        request.since.CopyFrom(_timestamp(since))
    if until is not None:
        request.until.CopyFrom(_timestamp(until))
    pages = [answer_of(lambda: _first_page(target, tls, request))]
    with client_channel(target, tls, RECEIVE_BYTES) as channel:
        stub = evidence_grpc.EvidenceServiceStub(channel)
        while pages[-1].next_page_token:
            request.page_token = pages[-1].next_page_token
            pages.append(_page(stub, request))
    first = pages[0]
    late = _opened_while_read(pages)
    return UserRecord(
        user_id=user_id,
        challenges=[
            {
                "challenge_id": m.challenge_id,
                "opened_at": m.opened_at.ToDatetime().isoformat() + "Z",
                "transaction_id": m.transaction_id,
                **({"missing_from_index": True} if m.missing_from_index else {}),
            }
            # Oldest first, as the bundle's check wants them: a first page puts the challenges the index lost
            # among its own slice, a later page holds the next slice only.
            for m in sorted(
                (m for page in pages for m in page.challenges if m.challenge_id not in late),
                key=lambda m: (m.opened_at.ToDatetime(), m.challenge_id),
            )
        ],
        opened_while_read=sorted(late),
        lifecycle=[dict(entry.fields) for entry in first.lifecycle],
        health=[dict(entry.fields) for entry in first.health],
        seals_json=first.seals_json,
        openings=[dict(entry.fields) for entry in first.openings],
    )


def _opened_while_read(pages: list[evidence_pb.GetUserEvidenceResponse]) -> set[str]:
    """The challenges a later page lists that the first page's openings journal does not name and that were
    opened after its newest entry: opened while the pages were read.

    The first page is the selection's snapshot (its openings journal and statement of extent); a later page
    reads the index as it is then. A user who opened a challenge meanwhile had the whole selection read as
    broken ("found, not in the openings journal"), again at each retry while active (an outside audit). Such
    a challenge is left out, as if the selection had been read at once; one opened before the snapshot and
    not in the journal is still broken.
    """
    entries = [entry.fields for entry in pages[0].openings]
    named = {fields.get("challenge_id", "") for fields in entries if fields.get("event") == "user.challenge"}
    instants = [at for fields in entries if (at := _instant(fields.get("at", ""))) is not None]
    if not instants:
        return set()
    newest = max(instants)
    return {
        m.challenge_id
        for page in pages[1:]
        for m in page.challenges
        if m.challenge_id not in named and m.opened_at.ToDatetime(tzinfo=UTC) > newest
    }


def _instant(text: str) -> datetime | None:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return at if at.tzinfo is not None else None


def _timestamp(at: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp


def _first_page(
    target: str, tls: ClientTls | None, request: evidence_pb.GetUserEvidenceRequest
) -> evidence_pb.GetUserEvidenceResponse:
    """One try at the first page, on a connection of its own: a try the server shed (its worker was already
    gathering another user's evidence) is made again on a new connection, which may reach another worker."""
    with client_channel(target, tls, RECEIVE_BYTES, own_connection=True) as channel:
        stub = evidence_grpc.EvidenceServiceStub(channel)
        reply: evidence_pb.GetUserEvidenceResponse = stub.GetUserEvidence(
            request, timeout=PAGE_TIMEOUT_SECONDS
        )
        return reply


def _page(
    stub: evidence_grpc.EvidenceServiceStub, request: evidence_pb.GetUserEvidenceRequest
) -> evidence_pb.GetUserEvidenceResponse:
    reply: evidence_pb.GetUserEvidenceResponse = answer_of(
        lambda: stub.GetUserEvidence(request, timeout=PAGE_TIMEOUT_SECONDS)
    )
    return reply
