"""The user lifecycle requests of EnrollmentService to domain values; every bad field reported at once."""

from __future__ import annotations

from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.server.domain import validation
from sesame.server.domain.challenges import ChallengeRef
from sesame.server.domain.enrollment import PhoneRequest, StatusRequest, TerminateRequest
from sesame.server.domain.errors import FieldViolation
from sesame.server.domain.lifecycle import Authority, ByChallenge, ByOverride, Provenance
from sesame.server.grpc.fields import Fields, bounded, required
from sesame.server.grpc.translate import request_context

StatusCall = enrol_pb.SuspendUserRequest | enrol_pb.ReinstateUserRequest | enrol_pb.RevokeUserRequest


def status_request(request: StatusCall, caller: str | None) -> StatusRequest:
    """Check a SuspendUser, ReinstateUser or RevokeUser call."""
    fields = Fields()
    user_id = fields.check("user_id", validation.identifier, request.user_id)
    reason = fields.check("reason", bounded(validation.MAX_REASON), request.reason)
    provenance = _provenance(fields, request.request_id, request.actor, reason, caller)
    fields.raise_if_any()
    return StatusRequest(user_id, provenance)


def phone_request(request: enrol_pb.ChangeSecurePhoneRequest, caller: str | None) -> PhoneRequest:
    """Check a ChangeSecurePhone call: the new number, one authority, who asked, the end user's context."""
    fields = Fields()
    user_id = fields.check("user_id", validation.identifier, request.user_id)
    new_phone = fields.check("new_phone", validation.mobile_phone, request.new_phone)
    authority: Authority = ByOverride("")
    reason = ""
    match request.WhichOneof("authorization"):
        case "verified_challenge_id":
            authority = ByChallenge(
                fields.check("verified_challenge_id", _challenge_id, request.verified_challenge_id)
            )
        case "override":
            override = request.override
            authority = ByOverride(
                fields.check("override.operator", required(validation.MAX_ACTOR), override.operator)
            )
            reason = fields.check("override.reason", required(validation.MAX_REASON), override.reason)
        case _:
            fields.violations.append(
                FieldViolation("authorization", "is required: verified_challenge_id or override")
            )
    provenance = _provenance(fields, request.request_id, request.actor, reason, caller)
    context = request_context(fields, request.context)
    fields.raise_if_any()
    return PhoneRequest(user_id, new_phone, authority, provenance, context)


def terminate_request(request: enrol_pb.TerminateClientRequest, caller: str | None) -> TerminateRequest:
    """Check a TerminateClient call."""
    fields = Fields()
    client_id = fields.check("client_id", validation.identifier, request.client_id)
    reason = fields.check("reason", bounded(validation.MAX_REASON), request.reason)
    provenance = _provenance(fields, request.request_id, request.actor, reason, caller)
    fields.raise_if_any()
    return TerminateRequest(client_id, provenance)


def _provenance(fields: Fields, request_id: str, actor: str, reason: str, caller: str | None) -> Provenance:
    """Who asked, and the request id, required: a retried reinstatement must not undo a later suspension."""
    return Provenance(
        actor=fields.check("actor", required(validation.MAX_ACTOR), actor),
        reason=reason,
        request_id=fields.check("request_id", required(validation.MAX_REQUEST_ID), request_id),
        caller=caller or "",
    )


def _challenge_id(value: str) -> str:
    ChallengeRef.parse(value)  # ValueError: "is not a challenge id"
    return value
