"""The pure risk evaluator over the default rules, and the judgment's fraud replayed on Sésame's memory.

Tribunal judiciaire de Paris, 30 January 2024 (RG 22/09134, ../shared/seeds/003): on 28 August 2019 a
caller posing as the bank got beneficiaries added; transfers of 5,928, 5,918 and 5,600 EUR followed on
the 29th, 30th and 31st. The customer paid ordinary amounts from the same phone before.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from sesame.server.domain.model import RequestContext, User
from sesame.server.domain.operation import AddBeneficiary, CreditTransfer, Login, Money, Operation, Payee
from sesame.server.domain.risk import Clause, RiskAssessment, RiskDecision, Rule, RuleSet
from sesame.server.domain.risk_rules import default_rules
from sesame.server.domain.risk_signals import (
    SIM_SWAP_OFF,
    AccountSummary,
    Forwarded,
    RiskHistory,
    RiskLimits,
    SimSwapStatus,
    observation,
    remember,
    signals,
)
from tests.factories import a_user

RULES = default_rules()
PHONE_CTX = RequestContext(ip="90.1.2.3", device_id="iphone-of-mrs-u", session_id="s-1")
FRAUD_A = Payee("L J H", "FR7630006000011234567890189")
FRAUD_B = Payee("M K", "DE89370400440532013000")
GROCER = Payee("Epicerie", "FR1420041010050500013M02606")
LANDLORD = Payee("Bailleur", "FR7630001007941234567890185")


def transfer(payee: Payee, euros: int, tx: str = "t") -> CreditTransfer:
    return CreditTransfer(Money("EUR", euros * 100), payee, tx)


@dataclass
class Customer:
    """A customer's memory in Sésame, fed as the store would feed it (each operation verified)."""

    user: User
    now: datetime
    history: RiskHistory = field(default_factory=RiskHistory)
    context: RequestContext = PHONE_CTX
    sim: SimSwapStatus = SIM_SWAP_OFF
    count: int = 0

    def ask(self, operation: Operation, at: datetime | None = None) -> RiskAssessment:
        """The assessment at Start; the operation is then verified and remembered."""
        self.now = at or self.now
        found = signals(
            operation=operation,
            user=self.user,
            history=self.history,
            context=self.context,
            sim=self.sim,
            now=self.now,
        )
        assessment = RULES.assess(found)
        self.count += 1
        seen = observation(self.user.user_id, f"ch-{self.count}", operation, self.context, self.now)
        self.history = remember(self.history, seen, RiskLimits())
        return assessment


def a_customer_with_a_past() -> Customer:
    """Three months of ordinary life: rent, groceries, from the same phone."""
    start = datetime(2019, 5, 1, 9, 0, tzinfo=UTC)
    customer = Customer(a_user(start), start)
    customer.ask(AddBeneficiary(LANDLORD))
    customer.ask(AddBeneficiary(GROCER), start + timedelta(days=2))
    for month in range(3):
        day = start + timedelta(days=10 + 30 * month)
        customer.ask(transfer(LANDLORD, 850), day)
        customer.ask(transfer(GROCER, 120), day + timedelta(days=3))
        customer.ask(transfer(GROCER, 95), day + timedelta(days=12))
    return customer


class TestTheJudgment:
    def test_the_fraud_is_held_at_the_first_transfer_and_each_next_one(self) -> None:
        """Two payees added 13:07-13:10, then 5,928/5,918/5,600 EUR on the next three days: HOLD each time."""
        customer = a_customer_with_a_past()
        call = datetime(2019, 8, 28, 13, 7, tzinfo=UTC)
        first = customer.ask(AddBeneficiary(FRAUD_A), call)
        second = customer.ask(AddBeneficiary(FRAUD_B), call + timedelta(minutes=3))
        transfers = [
            customer.ask(transfer(FRAUD_A, 5928), datetime(2019, 8, 29, 10, 0, tzinfo=UTC)),
            customer.ask(transfer(FRAUD_A, 5918), datetime(2019, 8, 30, 10, 0, tzinfo=UTC)),
            customer.ask(transfer(FRAUD_A, 5600), datetime(2019, 8, 31, 10, 0, tzinfo=UTC)),
        ]
        assert first.decision is RiskDecision.ALLOW
        assert (second.decision, second.codes) == (RiskDecision.WARN, ("PAYEES_BURST",))
        assert [t.decision for t in transfers] == [RiskDecision.HOLD] * 3
        assert set(transfers[0].codes) == {"NEW_PAYEE", "PAYEES_BURST", "UNUSUAL_AMOUNT"}
        assert all(t.rules_version == RULES.version for t in transfers)

    def test_the_same_first_transfer_a_week_later_to_a_lone_payee_is_allowed(self) -> None:
        """A new payee added alone and first paid a week later, for a usual amount, is ordinary."""
        customer = a_customer_with_a_past()
        added = datetime(2019, 8, 28, 13, 7, tzinfo=UTC)
        customer.ask(AddBeneficiary(FRAUD_A), added)
        assert customer.ask(transfer(FRAUD_A, 300), added + timedelta(days=7)).decision is RiskDecision.ALLOW


class TestPatterns:
    def test_rent_and_groceries_stay_allowed(self) -> None:
        """An ordinary month gives ALLOW with no reason."""
        customer = a_customer_with_a_past()
        assessment = customer.ask(transfer(LANDLORD, 850), customer.now + timedelta(days=20))
        assert (assessment.decision, assessment.reasons) == (RiskDecision.ALLOW, ())

    def test_a_new_device_adding_a_payee_is_warned(self) -> None:
        """A payee added from a device never used before: WARN NEW_DEVICE."""
        customer = a_customer_with_a_past()
        customer.context = replace(PHONE_CTX, device_id="unknown-android")
        assessment = customer.ask(AddBeneficiary(FRAUD_A), customer.now + timedelta(days=20))
        assert assessment.codes == ("NEW_DEVICE",)

    def test_a_holiday_abroad_from_the_known_device_is_allowed(self) -> None:
        """A new IP with the usual device and a known payee: nothing to say."""
        customer = a_customer_with_a_past()
        customer.context = replace(PHONE_CTX, ip="203.0.113.9")
        assert (
            customer.ask(transfer(GROCER, 110), customer.now + timedelta(days=20)).decision
            is RiskDecision.ALLOW
        )

    def test_a_recent_sim_swap_denies_a_transfer(self) -> None:
        """The operator says the SIM changed 5 hours ago: DENY SIM_SWAP."""
        customer = a_customer_with_a_past()
        customer.now += timedelta(days=20)
        customer.sim = SimSwapStatus("swapped", customer.now - timedelta(hours=5))
        assessment = customer.ask(transfer(GROCER, 110))
        assert (assessment.decision, assessment.codes) == (RiskDecision.DENY, ("SIM_SWAP",))

    def test_an_operator_that_does_not_answer_is_a_warning_not_a_silent_allow(self) -> None:
        """sim_swap unavailable: WARN SIM_SWAP_UNKNOWN."""
        customer = a_customer_with_a_past()
        customer.sim = SimSwapStatus("unavailable")
        assessment = customer.ask(transfer(GROCER, 110), customer.now + timedelta(days=20))
        assert (assessment.decision, assessment.codes) == (RiskDecision.WARN, ("SIM_SWAP_UNKNOWN",))

    def test_a_transfer_days_after_a_number_change_is_held(self) -> None:
        """Four days after the number changed (cooling is over): HOLD RECENT_PHONE_CHANGE."""
        customer = a_customer_with_a_past()
        customer.now += timedelta(days=20)
        customer.user = replace(customer.user, phone_changed_at=customer.now - timedelta(days=4))
        assert customer.ask(transfer(GROCER, 110)).codes == ("RECENT_PHONE_CHANGE",)

    def test_five_transfers_in_a_day_are_held(self) -> None:
        """The fifth transfer within 24 hours: HOLD VELOCITY."""
        customer = a_customer_with_a_past()
        day = customer.now + timedelta(days=20)
        decisions = [
            customer.ask(transfer(GROCER, 50), day + timedelta(hours=2 * i)).decision for i in range(5)
        ]
        assert decisions[:4] == [RiskDecision.ALLOW] * 4
        assert decisions[4] is RiskDecision.HOLD

    def test_wrong_codes_before_a_payment_are_warned(self) -> None:
        """Three wrong codes in a row, then a payment: WARN FAILURE_BURST."""
        customer = a_customer_with_a_past()
        customer.user = replace(customer.user, failures=3)
        assert customer.ask(transfer(GROCER, 50), customer.now + timedelta(days=20)).codes == (
            "FAILURE_BURST",
        )

    def test_a_login_is_never_about_payees(self) -> None:
        """A login right after a burst of payees: ALLOW (the rules name the operations they are about)."""
        customer = a_customer_with_a_past()
        customer.ask(AddBeneficiary(FRAUD_A), customer.now + timedelta(days=20))
        customer.ask(AddBeneficiary(FRAUD_B), customer.now + timedelta(minutes=1))
        assert customer.ask(Login(), customer.now + timedelta(minutes=1)).decision is RiskDecision.ALLOW


class TestSignals:
    def test_a_first_customer_has_no_usual_amount_and_no_new_device(self) -> None:
        """Without a past, the signals that compare with it are absent rather than alarming."""
        now = datetime(2026, 1, 1, tzinfo=UTC)
        found = signals(
            operation=transfer(GROCER, 50),
            user=a_user(now),
            history=RiskHistory(),
            context=PHONE_CTX,
            sim=SIM_SWAP_OFF,
            now=now,
        )
        assert "usual_amount" not in found
        assert "new_device" not in found
        assert "new_currency" not in found
        assert found["amounts_known"] == 0

    def test_a_transfer_in_a_currency_none_of_the_past_amounts_used_is_a_new_currency(self) -> None:
        """After amounts in EUR only, a USD transfer is a new currency with no known amount; EUR is not."""
        history = RiskHistory(amounts=(("EUR", 85000), ("EUR", 12000), ("EUR", 9500)))
        dollars = _transfer_signals(Money("USD", 50000), history)
        euros = _transfer_signals(Money("EUR", 50000), history)
        assert (dollars["currency"], dollars["new_currency"], dollars["amounts_known"]) == ("USD", True, 0)
        assert (euros["currency"], euros["new_currency"], euros["amounts_known"]) == ("EUR", False, 3)

    def test_only_a_transfer_has_a_currency(self) -> None:
        """A new beneficiary has neither a currency nor a new one, whatever the past amounts."""
        history = RiskHistory(amounts=(("EUR", 85000),))
        now = datetime(2026, 1, 1, tzinfo=UTC)
        found = signals(
            operation=AddBeneficiary(GROCER),
            user=a_user(now),
            history=history,
            context=PHONE_CTX,
            sim=SIM_SWAP_OFF,
            now=now,
        )
        assert "currency" not in found
        assert "new_currency" not in found

    def test_the_forwarded_account_summary_gives_the_share_of_the_balance(self) -> None:
        """amount / balance when both are in one currency."""
        now = datetime(2026, 1, 1, tzinfo=UTC)
        forwarded = Forwarded(account=AccountSummary(Money("EUR", 100000), now - timedelta(days=365)))
        found = signals(
            operation=transfer(GROCER, 500),
            user=a_user(now),
            history=RiskHistory(),
            context=PHONE_CTX,
            sim=SIM_SWAP_OFF,
            now=now,
            forwarded=forwarded,
        )
        assert found["balance_share"] == 0.5
        assert found["account_age_days"] == 365

    def test_the_history_is_bounded(self) -> None:
        """Each set keeps only its newest entries."""
        now = datetime(2026, 1, 1, tzinfo=UTC)
        history = RiskHistory()
        limits = RiskLimits(devices=2, amounts=3)
        for i in range(6):
            context = replace(PHONE_CTX, device_id=f"d{i}")
            seen = observation("u-1", f"c{i}", transfer(GROCER, 10 + i), context, now + timedelta(minutes=i))
            history = remember(history, seen, limits)
        assert len(history.devices) == 2
        assert [minor for _, minor in history.amounts] == [1500, 1400, 1300]


def _transfer_signals(money: Money, history: RiskHistory) -> dict[str, object]:
    """The signals of a transfer of `money` to the grocer, on `history`."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return signals(
        operation=CreditTransfer(money, GROCER, "t"),
        user=a_user(now),
        history=history,
        context=PHONE_CTX,
        sim=SIM_SWAP_OFF,
        now=now,
    )


class TestEvaluator:
    def test_the_strongest_decision_wins_and_every_reason_is_kept(self) -> None:
        """WARN and HOLD match: HOLD, with both reasons in rule order."""
        rules = RuleSet(
            "v",
            (
                Rule("a", "A", (Clause("amount", ">", 10),), RiskDecision.WARN, "A"),
                Rule("b", "B", (Clause("amount", ">", 100),), RiskDecision.HOLD, "B"),
                Rule("c", "C", (Clause("amount", ">", 1000),), RiskDecision.DENY, "C"),
            ),
        )
        assessment = rules.assess({"amount": 500})
        assert (assessment.decision, assessment.codes, assessment.rules) == (
            RiskDecision.HOLD,
            ("A", "B"),
            ("a", "b"),
        )

    def test_an_unknown_signal_never_matches(self) -> None:
        """A clause over a signal the operation lacks does not hold, whatever the operator."""
        rules = RuleSet("v", (Rule("a", "A", (Clause("amount", "!=", 1),), RiskDecision.DENY, "A"),))
        assert rules.assess({}).decision is RiskDecision.ALLOW
