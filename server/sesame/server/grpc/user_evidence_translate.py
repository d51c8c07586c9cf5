"""GetUserEvidence's request and answer (decision 0036)."""

from __future__ import annotations

from datetime import UTC

from sesame.api.v1 import evidence_service_pb2 as evidence_pb
from sesame.server.grpc.translate import timestamp, user_id
from sesame.server.user_evidence import UserEvidence, UserQuery


def query(request: evidence_pb.GetUserEvidenceRequest) -> UserQuery:
    """The query a request asks (InvalidRequest for a malformed user id)."""
    return UserQuery(
        user_id=user_id(request.user_id),
        since=request.since.ToDatetime(UTC) if request.HasField("since") else None,
        until=request.until.ToDatetime(UTC) if request.HasField("until") else None,
        transaction_id=request.transaction_id,
        page_token=request.page_token,
        page_size=request.page_size,
    )


def answer(value: UserEvidence) -> evidence_pb.GetUserEvidenceResponse:
    """The evidence found, entries as written."""
    return evidence_pb.GetUserEvidenceResponse(
        challenges=[
            evidence_pb.EvidenceMatch(
                challenge_id=m.challenge_id,
                opened_at=timestamp(m.opened_at),
                transaction_id=m.transaction_id,
                missing_from_index=not m.indexed,
            )
            for m in value.challenges
        ],
        next_page_token=value.next_page_token,
        lifecycle=[evidence_pb.JournalEntry(fields=entry) for entry in value.lifecycle],
        health=[evidence_pb.JournalEntry(fields=entry) for entry in value.health],
        seals_json=value.seals_json,
        openings=[evidence_pb.JournalEntry(fields=entry) for entry in value.openings],
    )
