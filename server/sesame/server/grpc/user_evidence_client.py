"""The client side of `sesame evidence --user`: a user's evidence (EvidenceService.GetUserEvidence)."""

from __future__ import annotations

from datetime import datetime

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
                (m for page in pages for m in page.challenges),
                key=lambda m: (m.opened_at.ToDatetime(), m.challenge_id),
            )
        ],
        lifecycle=[dict(entry.fields) for entry in first.lifecycle],
        health=[dict(entry.fields) for entry in first.health],
        seals_json=first.seals_json,
        openings=[dict(entry.fields) for entry in first.openings],
    )


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
