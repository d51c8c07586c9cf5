"""The risk signals of one operation, from what Sésame recorded of the user and what the bank forwards.

Sésame's own memory of a user (`RiskHistory`) is written when a challenge is VERIFIED (`RiskObservation`):
payees paid, beneficiaries added and when, the last amounts, IPs and devices, and the times of sensitive
operations. It is bounded (`RiskLimits`), expires, and holds fingerprints, never an IBAN, IP or device id
in clear. `signals()` turns it, the user's open challenges (`InFlight`), the operation and the forwarded
context into the named values the rules compare (`SIGNALS` lists them, with their type, for the rules' check
at boot).
"""

from __future__ import annotations

import enum
import hashlib
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sesame.server.domain.currency import minor_units_per_major
from sesame.server.domain.model import RequestContext, User
from sesame.server.domain.operation import AddBeneficiary, CreditTransfer, Money, Operation, digest, kind
from sesame.server.domain.risk import SignalValue
from sesame.server.domain.scam_words import alarming_name

HOUR = timedelta(hours=1)
MIN_AMOUNTS = 3  # fewer past amounts than this say nothing of the user's usual amounts


class SignalType(enum.Enum):
    """What a signal holds, so that the rules' file is checked at boot (a flag is not compared with 3)."""

    NUMBER = "number"
    FLAG = "flag"
    NAME = "name"


SIGNALS: Mapping[str, SignalType] = {
    "operation": SignalType.NAME,  # login, credit_transfer, add_beneficiary, change_phone
    "amount": SignalType.NUMBER,  # the transfer's amount, major units of its currency (ISO 4217 exponent)
    "currency": SignalType.NAME,  # the transfer's ISO 4217 code (EUR, JPY, ...): per-currency thresholds
    "payee_paid_before": SignalType.FLAG,  # a verified transfer went to this IBAN before
    "payee_added_hours": SignalType.NUMBER,  # since a verified AddBeneficiary of this IBAN
    "payee_first_used_hours": SignalType.NUMBER,  # since the bank first saw the payee used (forwarded)
    "payees_added_24h": SignalType.NUMBER,  # beneficiaries added (or being added) in 24 h, this one included
    "payee_burst": SignalType.NUMBER,  # most beneficiaries added (or being added) in one hour, over 72 h
    "phone_changed_hours": SignalType.NUMBER,  # since the last change of the secure number
    "usual_amount": SignalType.NUMBER,  # median of the user's last amounts in this currency
    "amount_vs_usual": SignalType.NUMBER,  # amount / usual_amount
    "amount_robust_z": SignalType.NUMBER,  # (amount - median) / (1.4826 * MAD), floored spread
    "amount_vs_largest": SignalType.NUMBER,  # amount / the largest of the last amounts in this currency
    "amounts_known": SignalType.NUMBER,  # how many past amounts in this currency
    "new_currency": SignalType.FLAG,  # none of the past amounts in this currency (when some are known)
    "new_device": SignalType.FLAG,  # a device id never seen with a verified code (when some were seen)
    "new_ip": SignalType.FLAG,  # likewise for the IP address
    "wrong_codes_in_a_row": SignalType.NUMBER,
    "blocks_in_a_row": SignalType.NUMBER,
    "transfers_24h": SignalType.NUMBER,  # verified or open transfers in the last 24 h, this one included
    "sensitive_ops_1h": SignalType.NUMBER,  # verified or open transfers and new beneficiaries in the hour
    "payee_name_alert": SignalType.FLAG,  # the payee's name holds a word of the bank's voice (scam_words)
    "payee_verification": SignalType.NAME,  # Verification of Payee: match, close_match, no_match...
    "sim_swap": SignalType.NAME,  # off, unavailable, swapped, not_swapped
    "sim_swapped_hours": SignalType.NUMBER,  # since the operator's last SIM change of the number
    "balance_share": SignalType.NUMBER,  # amount / balance (forwarded account summary)
    "account_age_days": SignalType.NUMBER,  # forwarded account summary
}


def fingerprint(what: str, value: str) -> str:
    """A short, salted-by-kind SHA-256 of an IBAN, IP or device id: compared, never read back."""
    return hashlib.sha256(f"sesame-risk:{what}:{value}".encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class AccountSummary:
    """What the bank says of the account a transfer leaves from."""

    balance: Money | None = None  # before the transfer
    opened_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Forwarded:
    """What the bank forwards for the rules only, beside the end user's context (IP, device, session)."""

    payee_first_used: datetime | None = None  # when the bank first saw the payee used
    account: AccountSummary | None = None


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """How much of a user's history is kept, and for how long (each set keeps its newest entries)."""

    payees: int = 100
    added: int = 50
    amounts: int = 30
    ips: int = 20
    devices: int = 10
    operations: int = 100
    retention: timedelta = timedelta(days=180)


@dataclass(frozen=True, slots=True)
class RiskHistory:
    """What Sésame recorded of a user's verified operations (fingerprints and instants)."""

    payees_paid: Mapping[str, datetime] = field(default_factory=dict)  # payee -> last paid
    payees_added: Mapping[str, datetime] = field(default_factory=dict)  # payee -> added
    amounts: tuple[tuple[str, int], ...] = ()  # (currency, minor units), newest first
    ips: Mapping[str, datetime] = field(default_factory=dict)  # ip -> last seen
    devices: Mapping[str, datetime] = field(default_factory=dict)  # device -> last seen
    operations: Mapping[str, datetime] = field(default_factory=dict)  # "<op>:<challenge id>" -> verified at


@dataclass(frozen=True, slots=True)
class InFlight:
    """A transfer or a new beneficiary whose challenge is open (OPEN, not expired): the velocity and burst
    signals count it as done, so that opening several before verifying any is not a way past them
    (decision 0090). The challenge keeps what this needs in its hash (`risk_open`, `in_flight_field`)."""

    op: str  # credit_transfer or add_beneficiary
    digest: str  # the operation's digest (hex): one operation opened twice counts once
    payee: str  # the new beneficiary's fingerprint ('' for a transfer)
    opened_at: datetime


# The user's open unexpired challenges Start's step reads for them (its pending index: decision 0093), those
# that expire last: enough for any velocity rule, and a caller with a large send budget makes each Start read
# no more. Also the most a user may have open at once (decision 0095), so that the read sees every one.
IN_FLIGHT_READ = 64


def in_flight_field(operation: Operation) -> str | None:
    """The challenge hash's `risk_open` value for an operation the velocity signals count while it is open
    (`<op>` or `add_beneficiary:<payee fingerprint>`), None for the others."""
    if isinstance(operation, CreditTransfer):
        return "credit_transfer"
    if isinstance(operation, AddBeneficiary):
        return f"add_beneficiary:{fingerprint('iban', operation.payee.iban)}"
    return None


def in_flight_of(field: str, op_digest: str, opened_at: datetime) -> InFlight:
    """The open operation a challenge hash's `risk_open` field (`in_flight_field`) tells."""
    op, _, payee = field.partition(":")
    return InFlight(op, op_digest, payee, opened_at)


def counted_in_flight(in_flight: Sequence[InFlight], operation: Operation) -> list[InFlight]:
    """The open operations the signals count beside `operation`: one per digest (the latest opened), none
    with `operation`'s own digest (a new challenge for the same operation is that operation, not another)."""
    if not in_flight:
        return []
    own = digest(operation).hex()
    latest: dict[str, InFlight] = {}
    for op in in_flight:
        if op.digest != own:
            kept = latest.get(op.digest)
            if kept is None or kept.opened_at < op.opened_at:
                latest[op.digest] = op
    return list(latest.values())


@dataclass(frozen=True, slots=True)
class RiskObservation:
    """What a VERIFIED challenge adds to its user's history."""

    user_id: str
    at: datetime
    operation_key: str  # "<op>:<challenge id>": each verified operation once
    payee_paid: str = ""  # fingerprint, for a transfer
    payee_added: str = ""  # fingerprint, for a new beneficiary
    amount: tuple[str, int] | None = None
    ip: str = ""
    device: str = ""


@dataclass(frozen=True, slots=True)
class RiskLesson:
    """What a challenge will teach its user's memory if it is VERIFIED, handed to the decision's own step
    (decision 0032): the store names the user from the challenge, so no user id here."""

    seen: RiskObservation  # its user_id is the empty string: the store knows whose challenge it is
    limits: RiskLimits


def lesson(
    challenge_id: str, operation: Operation, context: RequestContext, at: datetime, limits: RiskLimits
) -> RiskLesson:
    """What a right code for `operation` on that challenge will teach, before anyone knows whose it is."""
    return RiskLesson(observation("", challenge_id, operation, context, at), limits)


def observation(
    user_id: str, challenge_id: str, operation: Operation, context: RequestContext, at: datetime
) -> RiskObservation:
    """What a verified challenge for `operation` teaches about its user."""
    op = kind(operation).name.lower()
    paid, added, amount = "", "", None
    if isinstance(operation, CreditTransfer):
        paid = fingerprint("iban", operation.payee.iban)
        amount = (operation.amount.currency, operation.amount.amount_minor)
    elif isinstance(operation, AddBeneficiary):
        added = fingerprint("iban", operation.payee.iban)
    return RiskObservation(
        user_id=user_id,
        at=at,
        operation_key=f"{op}:{challenge_id}",
        payee_paid=paid,
        payee_added=added,
        amount=amount,
        ip=fingerprint("ip", context.ip) if context.ip else "",
        device=fingerprint("device", context.device_id) if context.device_id else "",
    )


@dataclass(frozen=True, slots=True)
class SimSwapStatus:
    """What the operator said about the secure number's SIM (`sim_swap` and `sim_swapped_hours`).

    `swapped`: a SIM change within the checked window (SESAME_SIM_SWAP_MAX_AGE_HOURS); `not_swapped`: none;
    `unavailable`: the operator did not answer in time or failed; `off`: no operator API is configured.
    `swapped_at` is the latest change when the operator tells it (retrieveSimSwapDate).
    """

    state: str
    swapped_at: datetime | None = None


SIM_SWAP_OFF = SimSwapStatus("off")


def _hours(since: datetime, now: datetime) -> float:
    return max((now - since) / HOUR, 0.0)


def signals(  # noqa: PLR0913 (keyword-only: each source of signals once)
    *,
    operation: Operation,
    user: User,
    history: RiskHistory,
    context: RequestContext,
    sim: SimSwapStatus,
    now: datetime,
    forwarded: Forwarded = Forwarded(),
    in_flight: Sequence[InFlight] = (),
) -> dict[str, SignalValue]:
    """The named signals of `operation` at `now`, with the user's open challenges `in_flight`; a signal with
    nothing to say is left out."""
    out: dict[str, SignalValue] = {
        "operation": kind(operation).name.lower(),
        "wrong_codes_in_a_row": user.failures,
        "blocks_in_a_row": user.blocks,
    }
    if user.phone_changed_at is not None:
        out["phone_changed_hours"] = _hours(user.phone_changed_at, now)
    flying = counted_in_flight(in_flight, operation)
    _payee_signals(out, operation, history, flying, now)
    _usage_signals(out, operation, history, flying, now)
    _known(out, "new_device", history.devices, fingerprint("device", context.device_id), context.device_id)
    _known(out, "new_ip", history.ips, fingerprint("ip", context.ip), context.ip)
    return out | caller_signals(operation, sim, now, forwarded, context.payee_verification)


def caller_signals(
    operation: Operation,
    sim: SimSwapStatus,
    now: datetime,
    forwarded: Forwarded,
    payee_verification: str = "",
) -> dict[str, SignalValue]:
    """The signals Sésame's memory cannot give: the operator's SIM answer, the bank's forwarded summary and
    Verification of Payee answer, and what the operation's payee is called (what Start hands its step,
    decision 0045)."""
    out: dict[str, SignalValue] = {"sim_swap": sim.state}
    if isinstance(operation, CreditTransfer | AddBeneficiary):
        out["payee_name_alert"] = alarming_name(operation.payee.name)
        if payee_verification:
            out["payee_verification"] = payee_verification
    if sim.swapped_at is not None:
        out["sim_swapped_hours"] = _hours(sim.swapped_at, now)
    if forwarded.payee_first_used is not None and isinstance(operation, CreditTransfer):
        out["payee_first_used_hours"] = _hours(forwarded.payee_first_used, now)
    if forwarded.account is not None and forwarded.account.opened_at is not None:
        out["account_age_days"] = _hours(forwarded.account.opened_at, now) / 24
    share = balance_share(forwarded, operation)
    if share is not None:
        out["balance_share"] = share
    return out


def _known(
    out: dict[str, SignalValue], name: str, seen: Mapping[str, datetime], print_: str, raw: str
) -> None:
    """`new_<x>`: only when the caller named one and some were seen before (a first use is not news)."""
    if raw and seen:
        out[name] = print_ not in seen


def _payee_signals(
    out: dict[str, SignalValue],
    operation: Operation,
    history: RiskHistory,
    flying: Sequence[InFlight],
    now: datetime,
) -> None:
    added = dict(history.payees_added)  # and the beneficiaries being added, as if their codes were right
    for op in flying:
        if op.payee:
            added[op.payee] = max(added.get(op.payee, op.opened_at), op.opened_at)
    recent = sorted(at for at in added.values() if now - at < 72 * HOUR)
    if isinstance(operation, AddBeneficiary):
        recent.append(now)
    out["payees_added_24h"] = sum(1 for at in recent if now - at < 24 * HOUR)
    out["payee_burst"] = max((sum(1 for b in recent if a <= b < a + HOUR) for a in recent), default=0)
    if not isinstance(operation, CreditTransfer):
        return
    payee = fingerprint("iban", operation.payee.iban)
    out["payee_paid_before"] = payee in history.payees_paid
    if payee in history.payees_added:
        out["payee_added_hours"] = _hours(history.payees_added[payee], now)


def _usage_signals(
    out: dict[str, SignalValue],
    operation: Operation,
    history: RiskHistory,
    flying: Sequence[InFlight],
    now: datetime,
) -> None:
    transfers = [at for key, at in history.operations.items() if key.startswith("credit_transfer:")]
    transfers += [op.opened_at for op in flying if op.op == "credit_transfer"]
    sensitive = [
        at for key, at in history.operations.items() if not key.startswith(("login:", "change_phone:"))
    ]
    sensitive += [op.opened_at for op in flying]
    is_transfer = isinstance(operation, CreditTransfer)
    out["transfers_24h"] = sum(1 for at in transfers if now - at < 24 * HOUR) + int(is_transfer)
    out["sensitive_ops_1h"] = sum(1 for at in sensitive if now - at < HOUR)
    if not isinstance(operation, CreditTransfer):
        return
    money = operation.amount
    unit = minor_units_per_major(money.currency)  # 125000 JPY is 125,000; 1500 KWD minor units 1.5
    amount = money.amount_minor / unit
    out["currency"] = money.currency
    out["amount"] = amount
    past = [minor / unit for currency, minor in history.amounts if currency == money.currency]
    out["amounts_known"] = len(past)
    if history.amounts:  # a first transfer is not news: a first one in this currency after others is
        out["new_currency"] = not past
    if len(past) < MIN_AMOUNTS:
        return
    median = statistics.median(past)
    mad = statistics.median(abs(x - median) for x in past)
    # A user who always pays the same rent is not infinitely sure: the spread is floored at 10 % of the median
    # and at 100 minor units (1 EUR, 100 JPY, 0.1 KWD), the floor of the z every currency had when amounts
    # were read as minor / 100: z is a ratio, so it is the same as then in every currency (decision 0089).
    spread = max(1.4826 * mad, 0.1 * median, 100 / unit)
    out["usual_amount"] = median
    out["amount_vs_usual"] = amount / median if median > 0 else float(amount > 0) * 1e9
    out["amount_robust_z"] = (amount - median) / spread
    out["amount_vs_largest"] = amount / max(past)


def balance_share(forwarded: Forwarded, operation: Operation) -> float | None:
    """The transfer's share of the forwarded balance, when both are known in one currency."""
    account = forwarded.account
    if not isinstance(operation, CreditTransfer) or account is None or account.balance is None:
        return None
    if account.balance.currency != operation.amount.currency or account.balance.amount_minor <= 0:
        return None
    return operation.amount.amount_minor / account.balance.amount_minor


def remember(history: RiskHistory, seen: RiskObservation, limits: RiskLimits) -> RiskHistory:
    """The history after `seen`, each set cut to its newest entries (what the store's script does)."""

    def newest(entries: Mapping[str, datetime], key: str, cap: int) -> dict[str, datetime]:
        merged = dict(entries)
        if key:
            merged[key] = max(merged.get(key, seen.at), seen.at)
        kept = sorted(merged.items(), key=lambda item: item[1], reverse=True)[:cap]
        return dict(kept)

    amounts = history.amounts if seen.amount is None else (seen.amount, *history.amounts)
    return RiskHistory(
        payees_paid=newest(history.payees_paid, seen.payee_paid, limits.payees),
        payees_added=newest(history.payees_added, seen.payee_added, limits.added),  # the latest
        amounts=amounts[: limits.amounts],
        ips=newest(history.ips, seen.ip, limits.ips),
        devices=newest(history.devices, seen.device, limits.devices),
        operations=newest(history.operations, seen.operation_key, limits.operations),
    )


@dataclass(frozen=True, slots=True)
class UserRisk:
    """A user and Sésame's memory of it, read in one step."""

    user: User
    history: RiskHistory
