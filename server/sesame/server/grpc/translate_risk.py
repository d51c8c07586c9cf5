"""The risk contract: the forwarded risk signals in, the assessment out (docs/risk.md)."""

from __future__ import annotations

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.server.domain import validation
from sesame.server.domain.model import PAYEE_VERIFICATIONS
from sesame.server.domain.operation import Money
from sesame.server.domain.risk import RiskAssessment, RiskDecision
from sesame.server.domain.risk_signals import AccountSummary, Forwarded
from sesame.server.grpc.fields import Fields, instant

_DECISION = {
    RiskDecision.ALLOW: auth_pb.RISK_DECISION_ALLOW,
    RiskDecision.WARN: auth_pb.RISK_DECISION_WARN,
    RiskDecision.HOLD: auth_pb.RISK_DECISION_HOLD,
    RiskDecision.DENY: auth_pb.RISK_DECISION_DENY,
}


def forwarded(fields: Fields, message: op_pb.RequestContext) -> Forwarded:
    """The risk signals the bank forwards in the context; an unset field is unknown."""
    first_used = None
    if message.HasField("payee_first_used"):
        first_used = fields.check("context.payee_first_used", instant, message.payee_first_used)
    if not message.HasField("account"):
        return Forwarded(payee_first_used=first_used)
    account = message.account
    balance = None
    if account.HasField("balance"):
        balance = Money(
            fields.check(
                "context.account.balance.currency", validation.currency_code, account.balance.currency
            ),
            fields.check("context.account.balance.amount_minor", _signed_minor, account.balance.amount_minor),
        )
    opened = None
    if account.HasField("opened_at"):
        opened = fields.check("context.account.opened_at", instant, account.opened_at)
    return Forwarded(payee_first_used=first_used, account=AccountSummary(balance, opened))


_PAYEE_VERIFICATION: dict[int, str] = {
    op_pb.PAYEE_VERIFICATION_UNSPECIFIED: "",
    **{
        op_pb.PayeeVerification.Value(f"PAYEE_VERIFICATION_{name.upper()}"): name
        for name in PAYEE_VERIFICATIONS
    },
}


def payee_verification(fields: Fields, value: int) -> str:
    """The Verification of Payee answer the bank forwards ('' when not told, decision 0099)."""
    return fields.check("context.payee_verification", _payee_verification, value)


def _payee_verification(value: int) -> str:
    """A number past the enum (a newer or a wrong caller) is refused, naming what this server knows."""
    known = _PAYEE_VERIFICATION.get(value)
    if known is None:
        names = ", ".join(op_pb.PayeeVerification.keys())
        raise ValueError(f"{value} is not one of {names}")
    return known


def _signed_minor(value: int) -> int:
    """A balance may be zero or negative (an overdraft); it is bounded as any amount."""
    if abs(value) > validation.MAX_AMOUNT_MINOR:
        raise ValueError("is too large")
    return value


def assessment(value: RiskAssessment | None) -> auth_pb.RiskAssessment | None:
    """The proto form of an assessment (None: no assessment, the field stays unset)."""
    if value is None:
        return None
    return auth_pb.RiskAssessment(
        decision=_DECISION[value.decision],
        reasons=[auth_pb.RiskReason(code=r.code, description=r.description) for r in value.reasons],
        rules_version=value.rules_version,
    )
