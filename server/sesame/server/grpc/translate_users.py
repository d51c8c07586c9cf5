"""The user lifecycle requests of EnrollmentService to domain values; every bad field reported at once."""

from __future__ import annotations

from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.server.domain import validation
from sesame.server.domain.challenges import ChallengeRef
from sesame.server.domain.enrollment import PhoneRequest, StatusRequest, TerminateRequest
from sesame.server.domain.lifecycle import ByChallenge, ByOverride, Provenance
from sesame.server.domain.model import RequestContext
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
    """Check a ChangeSecurePhone call: the new number, the verified challenge, who asked, the context."""
    fields = Fields()
    user_id = fields.check("user_id", validation.identifier, request.user_id)
    new_phone = fields.check("new_phone", validation.mobile_phone, request.new_phone)
    challenge_id = fields.check("verified_challenge_id", _challenge_id, request.verified_challenge_id)
    provenance = _provenance(fields, request.request_id, request.actor, "", caller)
    context = request_context(fields, request.context)
    fields.raise_if_any()
    return PhoneRequest(user_id, new_phone, ByChallenge(challenge_id), provenance, context)


def override_request(request: enrol_pb.OverrideSecurePhoneRequest, caller: str | None) -> PhoneRequest:
    """Check an OverrideSecurePhone call: the new number, the operator and the reason, who asked."""
    fields = Fields()
    user_id = fields.check("user_id", validation.identifier, request.user_id)
    new_phone = fields.check("new_phone", validation.mobile_phone, request.new_phone)
    operator = fields.check("operator", required(validation.MAX_ACTOR), request.operator)
    reason = fields.check("reason", required(validation.MAX_REASON), request.reason)
    provenance = _provenance(fields, request.request_id, request.actor, reason, caller)
    fields.raise_if_any()
    return PhoneRequest(
        user_id, new_phone, ByOverride(operator), provenance, RequestContext(caller=caller or "")
    )


def unblock_request(request: enrol_pb.UnblockUserRequest, caller: str | None) -> StatusRequest:
    """Check an UnblockUser call; the reason is required: lifting a security block is a decision."""
    fields = Fields()
    user_id = fields.check("user_id", validation.identifier, request.user_id)
    reason = fields.check("reason", required(validation.MAX_REASON), request.reason)
    provenance = _provenance(fields, request.request_id, request.actor, reason, caller)
    fields.raise_if_any()
    return StatusRequest(user_id, provenance)


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
