"""One table from domain errors to gRPC status codes, with google.rpc details."""

from __future__ import annotations

import logging
import math
from datetime import timedelta
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from sesame.server.domain import errors
from sesame.server.domain.log_quota import LogQuota
from sesame.server.grpc.callers import CallerNotAllowed

_log = logging.getLogger("sesame.grpc")
# A server fault's ERROR, once a minute per method and reason, the next counting those held back: one call
# repeated by a caller (a journal altered in Redis) wrote an ERROR a call (an outside audit, AV4). Each call
# is counted in the metrics all the same.
_FAULTS: LogQuota[tuple[str, str]] = LogQuota(60.0)

# Most specific first: the first matching class wins.
_TABLE: tuple[tuple[type[errors.SesameError], grpc.StatusCode, str], ...] = (
    (CallerNotAllowed, grpc.StatusCode.PERMISSION_DENIED, "caller not allowed to call this method"),
    (errors.InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT, "invalid request"),
    (errors.UserNotFound, grpc.StatusCode.NOT_FOUND, "user not found"),
    (errors.ChallengeNotFound, grpc.StatusCode.NOT_FOUND, "challenge not found"),
    (errors.ClientNotFound, grpc.StatusCode.NOT_FOUND, "client not found"),
    (errors.UserAlreadyExists, grpc.StatusCode.ALREADY_EXISTS, "user already enrolled differently"),
    (errors.UserNotActive, grpc.StatusCode.FAILED_PRECONDITION, "the user's status does not allow this"),
    (errors.UserBlocked, grpc.StatusCode.FAILED_PRECONDITION, "user blocked after too many wrong codes"),
    (errors.PhoneCooling, grpc.StatusCode.FAILED_PRECONDITION, "secure number changed recently"),
    (errors.PhoneUnchanged, grpc.StatusCode.FAILED_PRECONDITION, "this is the secure number already"),
    (errors.SecurePhoneChanged, grpc.StatusCode.ABORTED, "secure number changed meanwhile; start again"),
    (errors.ClientTerminated, grpc.StatusCode.FAILED_PRECONDITION, "the client terminated the service"),
    (errors.ChallengeNotVerified, grpc.StatusCode.FAILED_PRECONDITION, "challenge is not verified"),
    (errors.ChallengeMismatch, grpc.StatusCode.FAILED_PRECONDITION, "challenge does not authorise this"),
    (errors.ChallengeConsumed, grpc.StatusCode.FAILED_PRECONDITION, "challenge already spent on a change"),
    (errors.ChallengeClosed, grpc.StatusCode.FAILED_PRECONDITION, "challenge is closed"),
    (errors.DestinationNotAllowed, grpc.StatusCode.FAILED_PRECONDITION, "no SMS to this country"),
    (errors.RiskDenied, grpc.StatusCode.FAILED_PRECONDITION, "the risk rules deny this operation"),
    (errors.ResendRefused, grpc.StatusCode.RESOURCE_EXHAUSTED, "resend refused"),
    (errors.SendBudgetExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED, "too many codes sent"),
    (errors.NoopsFull, grpc.StatusCode.RESOURCE_EXHAUSTED, "too many requests that changed nothing"),
    (errors.KeyVersionUnavailable, grpc.StatusCode.UNAVAILABLE, "key version not held here, retry later"),
    (errors.HsmUnavailable, grpc.StatusCode.UNAVAILABLE, "key store unavailable, retry later"),
    (errors.StoreCorrupt, grpc.StatusCode.INTERNAL, "a stored record is damaged"),
    (errors.StoreUnavailable, grpc.StatusCode.UNAVAILABLE, "state store unavailable, retry later"),
    (errors.EvidenceBusy, grpc.StatusCode.UNAVAILABLE, "evidence already being gathered, retry later"),
    (errors.Overloaded, grpc.StatusCode.UNAVAILABLE, "server overloaded, retry later"),
    (errors.ClockOff, grpc.StatusCode.UNAVAILABLE, "server clock out of step, retry later"),
    (errors.DeliveryFailed, grpc.StatusCode.UNAVAILABLE, "SMS gateway unavailable, retry later"),
    (errors.DeadlinePassed, grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed before the work began"),
    (errors.KeyNotFound, grpc.StatusCode.INTERNAL, "a key is missing in the HSM"),
    (errors.JournalDisagrees, grpc.StatusCode.INTERNAL, "journal holds a decision not made here"),
    (errors.ConfigurationError, grpc.StatusCode.INTERNAL, "server misconfigured"),
)
# PreconditionFailure type and description, by error (FAILED_PRECONDITION only).
_PRECONDITIONS: dict[type[errors.SesameError], tuple[str, str]] = {
    errors.UserNotActive: ("USER_STATUS", "the user is suspended or revoked"),
    errors.UserBlocked: ("USER_BLOCKED", "too many wrong codes in a row"),
    errors.PhoneCooling: ("PHONE_COOLING", "no payment or new beneficiary yet after a number change"),
    errors.PhoneUnchanged: ("PHONE_UNCHANGED", "the new number is the secure number"),
    errors.ClientTerminated: ("CLIENT_STATUS", "the client terminated the service"),
    errors.ChallengeNotVerified: ("CHALLENGE_NOT_VERIFIED", "the challenge was not verified"),
    errors.ChallengeMismatch: ("CHALLENGE_MISMATCH", "not this user's, operation's or number's challenge"),
    errors.ChallengeConsumed: ("CHALLENGE_CONSUMED", "the challenge was already spent on a change request"),
    errors.ChallengeClosed: ("CHALLENGE_STATUS", "not open for this"),
    errors.DestinationNotAllowed: ("DESTINATION_COUNTRY", "the secure number is in a country not served"),
}
_RESOURCES: dict[type[errors.SesameError], str] = {
    errors.UserNotFound: "user",
    errors.ChallengeNotFound: "challenge",
    errors.ClientNotFound: "client",
}
_RETRY_DELAY = duration_pb2.Duration(seconds=1)


def to_status(error: errors.SesameError) -> status_pb2.Status:
    """The rich status for a domain error; the message names the class of problem, never a secret."""
    for kind, code, message in _TABLE:
        if isinstance(error, kind):
            return status_pb2.Status(
                code=code.value[0],
                message=_message(message, error),
                details=[*_reason(error), *_details(error, code)],
            )
    return status_pb2.Status(code=code_pb2.INTERNAL, message="internal error")


def _message(summary: str, error: errors.SesameError) -> str:
    """The summary, with the reasons a caller can act on when the details are not read.

    Field reasons, resend limits and block lengths are ours and never echo a value the caller sent, so they
    are safe to show; other errors keep the bare summary.
    """
    if isinstance(error, errors.InvalidRequest):
        return f"{summary}: {error}"
    if isinstance(error, errors.UserBlocked):
        return f"{summary}; no code is sent for {_seconds(error.retry_after)} s"
    if isinstance(error, errors.PhoneCooling):
        return f"{summary}; no code for payments or new beneficiaries for {_seconds(error.retry_after)} s"
    if isinstance(error, errors.ResendRefused | errors.SendBudgetExhausted):
        return _quota_message(summary, error)
    if isinstance(error, errors.NoopsFull):
        wait = _seconds(error.retry_after)
        return f"{summary} for this user lately (it is as asked already); retry in {wait} s"
    return summary


def _quota_message(summary: str, error: errors.ResendRefused | errors.SendBudgetExhausted) -> str:
    """Why a send was refused and how long to wait; a budget names its subject, never the number."""
    if isinstance(error, errors.SendBudgetExhausted):
        return f"{summary} to this {error.subject} lately; retry later, in {_seconds(error.retry_after)} s"
    if error.retry_after is None:
        return f"{summary}: no resend left for this challenge; start a new one"
    return f"{summary}: too soon after the last send; retry in {_seconds(error.retry_after)} s"


def _seconds(delay: timedelta) -> int:
    """Whole seconds, rounded up: waiting the advertised time is always enough."""
    return math.ceil(delay.total_seconds())


def _details(error: errors.SesameError, code: grpc.StatusCode) -> list[any_pb2.Any]:
    detail: Any
    if isinstance(error, CallerNotAllowed):
        return [_packed(_refusal(error))]
    if isinstance(error, errors.InvalidRequest):
        detail = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in error.violations
            ]
        )
    elif isinstance(error, errors.NotFoundError):
        detail = error_details_pb2.ResourceInfo(
            resource_type=_RESOURCES[type(error)], resource_name=str(error)
        )
    elif type(error) in _PRECONDITIONS:
        return _precondition(error)
    elif isinstance(error, errors.ResendRefused):
        return _resend_details(error)
    elif isinstance(error, errors.SendBudgetExhausted | errors.NoopsFull):
        return _budget_details(error)
    elif code is grpc.StatusCode.UNAVAILABLE:
        detail = error_details_pb2.RetryInfo(retry_delay=_RETRY_DELAY)
    else:
        return []
    return [_packed(detail)]


def _precondition(error: errors.SesameError) -> list[any_pb2.Any]:
    """PreconditionFailure, and RetryInfo when waiting helps (a block, a cooling period)."""
    kind, description = _PRECONDITIONS[type(error)]
    violation = error_details_pb2.PreconditionFailure.Violation(
        type=kind, subject=str(error), description=description
    )
    details = [_packed(error_details_pb2.PreconditionFailure(violations=[violation]))]
    if isinstance(error, errors.UserBlocked | errors.PhoneCooling):
        wait = duration_pb2.Duration(seconds=_seconds(error.retry_after))
        details.append(_packed(error_details_pb2.RetryInfo(retry_delay=wait)))
    return details


def _refusal(error: CallerNotAllowed) -> error_details_pb2.ErrorInfo:
    """Which method was refused, and to whom: the caller's own name, from its own certificate."""
    metadata = {"method": error.method}
    if error.caller is not None:
        metadata["caller"] = error.caller
    return error_details_pb2.ErrorInfo(reason="CALLER_NOT_ALLOWED", domain="sesame", metadata=metadata)


def _resend_details(error: errors.ResendRefused) -> list[any_pb2.Any]:
    reason = "no resend left" if error.retry_after is None else "too soon after the last send"
    quota = error_details_pb2.QuotaFailure(
        violations=[
            error_details_pb2.QuotaFailure.Violation(subject=f"challenge:{error}", description=reason)
        ]
    )
    if error.retry_after is None:
        return [_packed(quota)]
    wait = duration_pb2.Duration(seconds=_seconds(error.retry_after))
    return [_packed(quota), _packed(error_details_pb2.RetryInfo(retry_delay=wait))]


def _budget_details(error: errors.SendBudgetExhausted | errors.NoopsFull) -> list[any_pb2.Any]:
    """Whose budget (`user` or `phone`: never the number) and when a unit frees."""
    if isinstance(error, errors.NoopsFull):
        violation = error_details_pb2.QuotaFailure.Violation(
            subject="user", description="requests that changed nothing, remembered for a bounded time"
        )
    else:
        violation = error_details_pb2.QuotaFailure.Violation(
            subject=error.subject, description="SMS send budget spent for the rolling window"
        )
    wait = duration_pb2.Duration(seconds=_seconds(error.retry_after))
    return [
        _packed(error_details_pb2.QuotaFailure(violations=[violation])),
        _packed(error_details_pb2.RetryInfo(retry_delay=wait)),
    ]


def _reason(error: errors.SesameError) -> list[any_pb2.Any]:
    """ErrorInfo for a fault a caller may tell apart: a shed call, which OTP key version is missing here."""
    if isinstance(error, errors.Overloaded):
        return [_packed(error_details_pb2.ErrorInfo(reason="OVERLOADED", domain="sesame"))]
    if isinstance(error, errors.ClockOff):
        return [_packed(error_details_pb2.ErrorInfo(reason="CLOCK_OUT_OF_STEP", domain="sesame"))]
    if isinstance(error, errors.RiskDenied):
        return [_packed(_risk_denied(error))]
    if not isinstance(error, errors.KeyVersionUnavailable):
        return []
    metadata = {"key_version": str(error.key_version)}
    return [
        _packed(
            error_details_pb2.ErrorInfo(reason="KEY_VERSION_UNAVAILABLE", domain="sesame", metadata=metadata)
        )
    ]


def _risk_denied(error: errors.RiskDenied) -> error_details_pb2.ErrorInfo:
    """The reasons of a DENY (docs/risk.md): the codes, each one's description and the rules' version."""
    metadata = {"reasons": ",".join(error.codes), "rules_version": error.rules_version}
    for code, description in zip(error.codes, error.descriptions, strict=True):
        metadata[f"reason.{code}"] = description
    return error_details_pb2.ErrorInfo(reason="RISK_DENIED", domain="sesame", metadata=metadata)


def _packed(detail: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(detail)
    return packed


def _level(code: int, error: errors.SesameError) -> int:
    """ERROR for a broken installation, WARNING for a dependency down or a caller refused, else INFO.

    Wrong input, a missing user, a blocked user, a spent budget are the service working as designed: they
    are logged at INFO with their reason, so that WARNINGs stay few enough to act on.
    """
    if code == code_pb2.INTERNAL:
        return logging.ERROR
    if code == code_pb2.UNAVAILABLE or isinstance(error, CallerNotAllowed):
        return logging.WARNING
    return logging.INFO


async def answer_error(
    error: errors.SesameError, context: grpc.aio.ServicerContext[Any, Any], method: str, caller: str | None
) -> None:
    """Answer `error` from the table (abort_with: raises), with one log line at its level."""
    status = to_status(error)
    reason = type(error).__name__
    level = _level(status.code, error)
    if isinstance(error, errors.Overloaded | errors.ClockOff):
        pass  # counted (sesame_rpc_shed_total, sesame_rpc_clock_refused_total), not logged: a flood
    elif level > logging.INFO:
        held = _FAULTS.admit((method, reason)) if level >= logging.ERROR else 0
        # A store that failed names how (OutOfMemoryError, ResponseError MISCONF, TimeoutError...), an archive
        # what it could not read: texts that hold no key, value or secret (`said_in_log`).
        fault = f" ({error})" if error.said_in_log and str(error) else ""
        if held is not None:
            _log.log(
                level,
                "rpc %s failed: %s%s (caller %s)%s",
                method,
                reason,
                fault,
                caller or "unidentified",
                _FAULTS.held_back(held, "such failures"),
                extra={"reason": reason},
            )
    else:
        _log.info("rpc %s refused: %s", method, reason, extra={"reason": reason})
    await abort_with(context, status)


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], status: status_pb2.Status) -> NoReturn:
    """End the call with `status` (raises AbortError), its details in the trailers beside those the call set
    already: its `x-request-id` (grpc.aio's `abort_with_status` would replace them with the status's)."""
    answer = rpc_status.to_status(status)
    kept = tuple(context.trailing_metadata() or ())
    await context.abort(answer.code, answer.details, kept + tuple(answer.trailing_metadata))


async def answer_crash(context: grpc.aio.ServicerContext[Any, Any], method: str) -> None:
    """Answer an unexpected exception (being handled) INTERNAL, leaking nothing; its traceback is logged."""
    _log.exception("rpc %s failed unexpectedly", method)
    await abort_with(context, status_pb2.Status(code=code_pb2.INTERNAL, message="internal error"))
