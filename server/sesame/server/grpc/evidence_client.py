"""The client side of `sesame proof` and `sesame evidence`: fetch the JWK set and a challenge's evidence."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import evidence_service_pb2 as evidence_pb
from sesame.api.v1 import evidence_service_pb2_grpc as evidence_grpc
from sesame.server.domain.errors import SesameError
from sesame.server.domain.operation import digest
from sesame.server.evidence import EvidenceRecord
from sesame.server.grpc import evidence_translate, translate
from sesame.server.grpc.probe import ClientTls, client_channel

TIMEOUT_SECONDS = 10.0
PAGE_SIZE = 500  # journal entries per call (at most ~1.5 KB each)
# A page's bounds: a first page carries every leaf of the seals covering what it shows (~110 bytes a leaf):
# 56 MB and 9.6 s for a user's 10,000 challenges each in a block of 51 entries, past gRPC's default 4 MiB and
# the 10 s above (decision 0144).
RECEIVE_BYTES = 1 << 30
PAGE_TIMEOUT_SECONDS = 300.0
# How long a call the server shed is made again: a worker gathers a first page of a user's evidence in up to
# ~20 s at the leaves' bound, and gathers one at a time by default (decision 0146).
SHED_PATIENCE_SECONDS = 120.0


class ServerRefused(SesameError):
    """The server could not be reached, or answered the call with an error status."""


def fetch_jwks(target: str, tls: ClientTls | None = None) -> dict[str, Any]:
    """The JWK set the server publishes (AuthenticationService.GetProofKeys)."""
    with client_channel(target, tls, RECEIVE_BYTES) as channel:
        reply = answer_of(
            lambda: auth_grpc.AuthenticationServiceStub(channel).GetProofKeys(
                auth_pb.GetProofKeysRequest(), timeout=TIMEOUT_SECONDS
            )
        )
    jwks: dict[str, Any] = json.loads(reply.jwks_json)
    return jwks


def fetch_evidence(target: str, challenge_id: str, tls: ClientTls | None = None) -> EvidenceRecord:
    """What the server holds about a challenge (EvidenceService.GetChallengeEvidence), every page, decoded."""
    with client_channel(target, tls, RECEIVE_BYTES) as channel:
        stub = evidence_grpc.EvidenceServiceStub(channel)
        pages = [_page(stub, challenge_id, "")]
        while pages[-1].next_page_token:
            pages.append(_page(stub, challenge_id, pages[-1].next_page_token))
    first = pages[0]
    retained = first.HasField("challenge")
    return EvidenceRecord(
        challenge_id=challenge_id,
        challenge=json_format.MessageToDict(first.challenge, preserving_proto_field_name=True)
        if retained
        else None,
        journal=[_ordered(dict(entry.fields)) for page in pages for entry in page.journal],
        proof=first.proof,
        operation_digest=_operation_digest(first.challenge) if retained else None,
        refusals=evidence_translate.refusal_dicts(first.refusals),
        seals_json=first.seals_json,
    )


def _operation_digest(challenge: auth_pb.Challenge) -> str | None:
    """The hex SHA-256 of the challenge's operation, recomputed; None for a change of number, whose new
    number the server describes masked (decision 0134): its digest cannot be recomputed from it."""
    if challenge.operation.HasField("change_phone"):
        return None
    return digest(translate.operation_of(challenge.operation)).hex()


def _page(
    stub: evidence_grpc.EvidenceServiceStub, challenge_id: str, token: str
) -> evidence_pb.GetChallengeEvidenceResponse:
    """One page of the evidence (the first one with the seals around it)."""
    request = evidence_pb.GetChallengeEvidenceRequest(
        challenge_id=challenge_id, page_size=PAGE_SIZE, page_token=token
    )
    reply: evidence_pb.GetChallengeEvidenceResponse = answer_of(
        lambda: stub.GetChallengeEvidence(request, timeout=PAGE_TIMEOUT_SECONDS)
    )
    return reply


def _ordered(fields: dict[str, str]) -> dict[str, str]:
    """A journal entry for reading: event and time first, then the other fields by name."""
    head: dict[str, str] = {name: fields[name] for name in ("event", "at") if name in fields}
    return {**head, **{name: fields[name] for name in sorted(fields) if name not in head}}


def answer_of(rpc: Any, patience: float = SHED_PATIENCE_SECONDS) -> Any:
    """The answer of `rpc()`, a blocking call; ServerRefused when it failed. A call the server shed (nothing
    done: a worker busy, or gathering another user's evidence, decision 0146) is made again after the wait
    it asks, for `patience` seconds in all."""
    give_up = time.monotonic() + patience
    while True:
        try:
            return rpc()
        except grpc.RpcError as error:
            if not isinstance(error, grpc.Call):
                raise ServerRefused("the server could not be reached") from None
            wait = _shed_wait(error)
            if wait is None or time.monotonic() + wait > give_up:
                raise ServerRefused(f"the server answered {error.code().name}: {error.details()}") from None
            time.sleep(wait * random.uniform(1.0, 1.5))  # noqa: S311 (jitter, not a secret)


def _shed_wait(call: grpc.Call) -> float | None:
    """The seconds a shed call asks to wait (its RetryInfo, within 1 to 30), or None when the call was not
    shed (no ErrorInfo OVERLOADED in its status details, or details that do not parse)."""
    raw = dict(call.trailing_metadata() or ()).get("grpc-status-details-bin")
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    try:
        for detail in status_pb2.Status.FromString(raw or b"").details:
            if detail.Is(info.DESCRIPTOR):
                detail.Unpack(info)
            elif detail.Is(retry.DESCRIPTOR):
                detail.Unpack(retry)
    except DecodeError:
        return None
    if info.reason != "OVERLOADED":
        return None
    asked: float = retry.retry_delay.ToTimedelta().total_seconds()
    return min(max(asked, 1.0), 30.0)
