"""Proof keys and evidence to proto: the answers of GetProofKeys and GetChallengeEvidence."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from google.protobuf import json_format

from sesame.api.v1 import evidence_service_pb2 as evidence_pb
from sesame.server.domain import proof
from sesame.server.domain.model import PublicKey
from sesame.server.domain.proofs import Evidence
from sesame.server.grpc.translate import challenge, timestamp


def jwks_json(keys: list[PublicKey]) -> str:
    """The JWK set of the proof keys, as JSON."""
    return json.dumps(proof.jwk_set(keys), separators=(",", ":"))


def evidence(value: Evidence, now: datetime) -> evidence_pb.GetChallengeEvidenceResponse:
    """What Sésame holds about a challenge; the journal as written, entry by entry."""
    answer = evidence_pb.GetChallengeEvidenceResponse(
        journal=[evidence_pb.JournalEntry(fields=entry) for entry in value.journal],
        proof=value.proof,
        next_page_token=value.next_page_token,
        refusals=[
            evidence_pb.RefusalCount(
                event=count.event, outcome=count.outcome, count=count.count, last_at=timestamp(count.last_at)
            )
            for count in value.refusals
        ],
    )
    if value.challenge is not None:
        answer.challenge.CopyFrom(challenge(value.challenge, now))
    return answer


def refusal_dicts(counts: Iterable[evidence_pb.RefusalCount]) -> list[dict[str, Any]]:
    """The refusal counts as a bundle holds them (`refusals`), and as the answer's signed extent states them
    (decision 0102): one conversion on both sides, so that they compare equal."""
    return [json_format.MessageToDict(count, preserving_proto_field_name=True) for count in counts]
