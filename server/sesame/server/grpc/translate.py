"""Proto messages to domain values and back. Validation errors are collected per field, then raised once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.server.domain import validation
from sesame.server.domain.challenges import StartRequest, VerifyRequest
from sesame.server.domain.enrollment import EnrollRequest
from sesame.server.domain.errors import FieldViolation
from sesame.server.domain.model import (
    Challenge,
    ChallengeStatus,
    DeliveryState,
    RequestContext,
    User,
    UserStatus,
    VerifyResult,
)
from sesame.server.domain.operation import (
    AddBeneficiary,
    ChangePhone,
    CreditTransfer,
    Login,
    Money,
    Operation,
    Payee,
)
from sesame.server.domain.privacy import mask_phone
from sesame.server.grpc import translate_factors, translate_risk
from sesame.server.grpc.callers import current_caller
from sesame.server.grpc.fields import Fields, bounded


def enroll_request(request: enrol_pb.EnrollUserRequest, caller: str | None = None) -> EnrollRequest:
    """Check an EnrollUser call of `caller` (None: unidentified)."""
    fields = Fields()
    result = EnrollRequest(
        user_id=fields.check("user_id", validation.identifier, request.user_id),
        client_id=fields.check("client_id", validation.identifier, request.client_id),
        secure_phone=fields.check("secure_phone", validation.mobile_phone, request.secure_phone),
        locale=fields.check("locale", validation.locale, request.locale),
        caller=caller or "",
        request_id=_request_id(fields, request.request_id),
    )
    fields.raise_if_any()
    return result


def user_id(value: str) -> str:
    """Check a lone user id."""
    fields = Fields()
    checked = fields.check("user_id", validation.identifier, value)
    fields.raise_if_any()
    return checked


def start_request(request: auth_pb.StartChallengeRequest) -> StartRequest:
    """Check a StartChallenge call."""
    fields = Fields()
    checked_user = fields.check("user_id", validation.identifier, request.user_id)
    operation = _operation(fields, "operation", request.operation if request.HasField("operation") else None)
    context = request_context(fields, request.context, request)
    request_id = _request_id(fields, request.request_id)
    forwarded = translate_risk.forwarded(fields, request.context)
    fields.raise_if_any()
    return StartRequest(checked_user, operation, context, request_id, forwarded)


def verify_request(request: auth_pb.VerifyChallengeRequest) -> VerifyRequest:
    """Check a VerifyChallenge call (the code's length is checked against the challenge by the flow)."""
    fields = Fields()
    if not request.challenge_id:
        fields.missing("challenge_id")
    if not request.code:
        fields.missing("code")
    elif len(request.code) > 16 or not request.code.isascii() or not request.code.isdigit():
        fields.violations.append(FieldViolation("code", "must be 6 to 8 digits"))
    operation = _operation(fields, "operation", request.operation if request.HasField("operation") else None)
    context = request_context(fields, request.context, request)
    fields.raise_if_any()
    return VerifyRequest(request.challenge_id, request.code, operation, context)


def operation_of(message: op_pb.Operation) -> Operation:
    """The domain form of an operation message. InvalidRequest."""
    fields = Fields()
    value = _operation(fields, "operation", message)
    fields.raise_if_any()
    return value


def challenge_id(value: str) -> str:
    """Check a lone challenge id's presence (its shape is checked by the flow)."""
    fields = Fields()
    if not value:
        fields.missing("challenge_id")
    fields.raise_if_any()
    return value


@dataclass(frozen=True, slots=True)
class Targeted:
    """A checked call that names one challenge on behalf of an end user (resend, cancel)."""

    challenge_id: str
    context: RequestContext
    request_id: str = ""  # Resend's idempotency key (decision 0065); Cancel has none


def targeted(request: auth_pb.ResendChallengeRequest | auth_pb.CancelChallengeRequest) -> Targeted:
    """Check a call naming a challenge, with the end user's context; every bad field is reported at once."""
    fields = Fields()
    if not request.challenge_id:
        fields.missing("challenge_id")
    checked = request_context(fields, request.context)
    request_id = ""
    if isinstance(request, auth_pb.ResendChallengeRequest):
        request_id = _request_id(fields, request.request_id)
    fields.raise_if_any()
    return Targeted(request.challenge_id, checked, request_id)


def _request_id(fields: Fields, value: str) -> str:
    """An optional idempotency key (Enroll's, Start's, Resend's): at most 128 printable characters."""
    return fields.check("request_id", bounded(validation.MAX_REQUEST_ID), value)


def _operation(fields: Fields, path: str, message: op_pb.Operation | None) -> Operation:
    kind = message.WhichOneof("kind") if message is not None else None
    if message is None or kind is None:
        fields.missing(path)
        return Login()
    match kind:
        case "login":
            return Login()
        case "credit_transfer":
            transfer = message.credit_transfer
            base = f"{path}.credit_transfer"
            if not transfer.HasField("amount"):
                fields.missing(f"{base}.amount")
            return CreditTransfer(
                amount=Money(
                    fields.check(
                        f"{base}.amount.currency", validation.currency_code, transfer.amount.currency
                    ),
                    fields.check(
                        f"{base}.amount.amount_minor", validation.amount_minor, transfer.amount.amount_minor
                    ),
                ),
                payee=_payee(fields, f"{base}.payee", transfer.payee if transfer.HasField("payee") else None),
                transaction_id=fields.check(
                    f"{base}.transaction_id", bounded(validation.MAX_TRANSACTION_ID), transfer.transaction_id
                ),
            )
        case "add_beneficiary":
            beneficiary = message.add_beneficiary
            payee = beneficiary.payee if beneficiary.HasField("payee") else None
            return AddBeneficiary(_payee(fields, f"{path}.add_beneficiary.payee", payee))
        case _:
            new_phone = message.change_phone.new_phone
            return ChangePhone(
                fields.check(f"{path}.change_phone.new_phone", validation.mobile_phone, new_phone)
            )


def _payee(fields: Fields, path: str, message: op_pb.Payee | None) -> Payee:
    if message is None:
        fields.missing(path)
        return Payee("", "")
    return Payee(
        fields.check(f"{path}.name", validation.payee_name, message.name),
        fields.check(f"{path}.iban", validation.iban, message.iban),
    )


def request_context(
    fields: Fields,
    message: op_pb.RequestContext,
    asserting: auth_pb.StartChallengeRequest | auth_pb.VerifyChallengeRequest | None = None,
) -> RequestContext:
    """Check the end user's context; each field bounded; with the first factor `asserting` states, checked
    after them (built at once: no second context per call, decision 0049)."""
    field = bounded(validation.MAX_CONTEXT_FIELD)
    return RequestContext(
        ip=fields.check("context.ip", field, message.ip),
        device_id=fields.check("context.device_id", field, message.device_id),
        session_id=fields.check("context.session_id", field, message.session_id),
        user_agent=fields.check("context.user_agent", field, message.user_agent),
        caller=current_caller() or "",
        first_factor=None if asserting is None else translate_factors.first_factor(fields, asserting),
        payee_verification=translate_risk.payee_verification(fields, message.payee_verification),
    )


# --- domain to proto -----------------------------------------------------------------------------------

_DELIVERY = {
    DeliveryState.PENDING: auth_pb.DELIVERY_STATE_PENDING,
    DeliveryState.SENT: auth_pb.DELIVERY_STATE_SENT,
    DeliveryState.DELIVERED: auth_pb.DELIVERY_STATE_DELIVERED,
    DeliveryState.FAILED: auth_pb.DELIVERY_STATE_FAILED,
    DeliveryState.QUEUED: auth_pb.DELIVERY_STATE_QUEUED,
    DeliveryState.EXPIRED: auth_pb.DELIVERY_STATE_EXPIRED,
}
_STATUS = {
    ChallengeStatus.OPEN: auth_pb.CHALLENGE_STATUS_OPEN,
    ChallengeStatus.VERIFIED: auth_pb.CHALLENGE_STATUS_VERIFIED,
    ChallengeStatus.LOCKED: auth_pb.CHALLENGE_STATUS_LOCKED,
    ChallengeStatus.VOIDED: auth_pb.CHALLENGE_STATUS_VOIDED,
    ChallengeStatus.CANCELLED: auth_pb.CHALLENGE_STATUS_CANCELLED,
}
_RESULT = {
    VerifyResult.VERIFIED: auth_pb.VERIFY_RESULT_VERIFIED,
    VerifyResult.WRONG_CODE: auth_pb.VERIFY_RESULT_WRONG_CODE,
    VerifyResult.EXPIRED: auth_pb.VERIFY_RESULT_EXPIRED,
    VerifyResult.LOCKED: auth_pb.VERIFY_RESULT_LOCKED,
    VerifyResult.ALREADY_USED: auth_pb.VERIFY_RESULT_ALREADY_USED,
    VerifyResult.OPERATION_MISMATCH: auth_pb.VERIFY_RESULT_OPERATION_MISMATCH,
    VerifyResult.VOIDED: auth_pb.VERIFY_RESULT_VOIDED,
    VerifyResult.USER_BLOCKED: auth_pb.VERIFY_RESULT_USER_BLOCKED,
}
_USER_STATUS = {
    UserStatus.ACTIVE: enrol_pb.USER_STATUS_ACTIVE,
    UserStatus.SUSPENDED: enrol_pb.USER_STATUS_SUSPENDED,
    UserStatus.REVOKED: enrol_pb.USER_STATUS_REVOKED,
}


def timestamp(value: datetime) -> Timestamp:
    """A protobuf Timestamp."""
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


# The delivery states a dead letter leaves (docs/decisions/0033): only then is its reason shown.
_GIVEN_UP = frozenset({DeliveryState.FAILED, DeliveryState.EXPIRED})


def delivery_state(value: DeliveryState) -> auth_pb.DeliveryState.ValueType:
    """The proto enum value."""
    return _DELIVERY[value]


def verify_result(value: VerifyResult) -> auth_pb.VerifyResult.ValueType:
    """The proto enum value."""
    return _RESULT[value]


def challenge(value: Challenge, now: datetime) -> auth_pb.Challenge:
    """Describe a challenge, never its code; an open challenge past its expiry reads EXPIRED.

    Only a challenge still open has attempts and resends left: a spent, voided or expired one has none.
    """
    status = _STATUS[value.status]
    if value.status is ChallengeStatus.OPEN and value.is_expired(now):
        status = auth_pb.CHALLENGE_STATUS_EXPIRED
    live = status == auth_pb.CHALLENGE_STATUS_OPEN
    return auth_pb.Challenge(
        challenge_id=value.challenge_id,
        user_id=value.user_id,
        operation=described_operation(value.operation),
        status=status,
        delivery_state=_DELIVERY[value.delivery],
        masked_phone=mask_phone(value.phone),
        created_at=timestamp(value.created_at),
        expires_at=timestamp(value.expires_at),
        attempts_left=value.attempts_left if live else 0,
        resends_left=value.resends_left if live else 0,
        delivery_reason=value.delivery_reason if value.delivery in _GIVEN_UP else "",
    )


def described_operation(value: Operation) -> op_pb.Operation:
    """The operation as a described challenge shows it: a change of number's new number masked, as the
    challenge's `masked_phone` (decision 0134). Whoever reads a challenge (the back office, an evidence
    bundle) gets no whole number that GetUser would mask."""
    if isinstance(value, ChangePhone):
        return op_pb.Operation(change_phone=op_pb.ChangePhone(new_phone=mask_phone(value.new_phone)))
    return operation(value)


def operation(value: Operation) -> op_pb.Operation:
    """The proto form of an operation."""
    match value:
        case Login():
            return op_pb.Operation(login=op_pb.Login())
        case CreditTransfer(amount=amount, payee=payee, transaction_id=transaction_id):
            return op_pb.Operation(
                credit_transfer=op_pb.CreditTransfer(
                    amount=op_pb.Money(currency=amount.currency, amount_minor=amount.amount_minor),
                    payee=op_pb.Payee(name=payee.name, iban=payee.iban),
                    transaction_id=transaction_id,
                )
            )
        case AddBeneficiary(payee=payee):
            return op_pb.Operation(
                add_beneficiary=op_pb.AddBeneficiary(payee=op_pb.Payee(name=payee.name, iban=payee.iban))
            )
        case ChangePhone(new_phone=new_phone):
            return op_pb.Operation(change_phone=op_pb.ChangePhone(new_phone=new_phone))


def user(value: User, now: datetime) -> enrol_pb.User:
    """Describe a user; the number is masked; a block and a cooling period show only while they last."""
    described = enrol_pb.User(
        user_id=value.user_id,
        client_id=value.client_id,
        masked_phone=mask_phone(value.secure_phone),
        locale=value.locale,
        status=_USER_STATUS[value.status],
        enrolled_at=timestamp(value.enrolled_at),
    )
    if value.blocked_until is not None and value.is_blocked(now):
        described.blocked_until.CopyFrom(timestamp(value.blocked_until))
    if value.cooling_until is not None and value.is_cooling(now):
        described.cooling_until.CopyFrom(timestamp(value.cooling_until))
    if value.status_changed_at is not None:
        described.status_changed_at.CopyFrom(timestamp(value.status_changed_at))
    if value.phone_changed_at is not None:
        described.phone_changed_at.CopyFrom(timestamp(value.phone_changed_at))
    return described
