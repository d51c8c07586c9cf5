"""Amounts by currency (decision 0089): the risk signals read an amount in its currency's major units (ISO
4217 exponent), and the default rules, whose thresholds are euros, judge other currencies no weaker than
before, when every amount was read as minor units / 100 (125000 JPY as 1,250, 1.500 KWD as 15).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sesame.server.domain.model import RequestContext
from sesame.server.domain.operation import AddBeneficiary, CreditTransfer, Money, Payee
from sesame.server.domain.risk import RiskAssessment, RiskDecision, RuleSet, SignalValue
from sesame.server.domain.risk_rules import default_rules, parse
from sesame.server.domain.risk_signals import SIM_SWAP_OFF, RiskHistory, fingerprint, signals
from tests.factories import a_user

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
PAYEE = Payee("L J H", "DE89370400440532013000")
ADDED_YESTERDAY = RiskHistory(payees_added={fingerprint("iban", PAYEE.iban): NOW - timedelta(days=1)})
RULES = default_rules()
NOTHING = RiskHistory()  # a first transfer
# The defaults before decision 0089, and a 2-decimal currency no test draws: a transfer in it is read as every
# currency was then (minor units / 100, the spread floored at 1).
BEFORE = parse(
    (Path(__file__).parent.parent / "vectors" / "risk_rules_2026-11-30.1.toml").read_text(encoding="utf-8")
)
AS_BEFORE = "XCD"


def _signals(money: Money, history: RiskHistory = NOTHING) -> dict[str, SignalValue]:
    return signals(
        operation=CreditTransfer(money, PAYEE, "t"),
        user=a_user(NOW - timedelta(days=400)),
        history=history,
        context=RequestContext(),
        sim=SIM_SWAP_OFF,
        now=NOW,
    )


def _past(currency: str, *minor: int) -> RiskHistory:
    return RiskHistory(amounts=tuple((currency, m) for m in minor))


class TestAmountsInMajorUnits:
    @pytest.mark.parametrize(
        ("money", "amount"),
        [(Money("JPY", 125000), 125000.0), (Money("KWD", 1500), 1.5), (Money("EUR", 125000), 1250.0)],
    )
    def test_an_amount_is_read_with_its_currencys_decimals(self, money: Money, amount: float) -> None:
        """125000 JPY is 125,000 yen, 1500 KWD minor units are 1.500 dinars, 125000 EUR cents 1,250 euros."""
        found = _signals(money)
        assert (found["amount"], found["currency"]) == (amount, money.currency)

    @pytest.mark.parametrize(("currency", "usual"), [("JPY", 9500.0), ("KWD", 9.5), ("EUR", 95.0)])
    def test_the_usual_amount_is_in_the_same_units(self, currency: str, usual: float) -> None:
        """The median of the past amounts in that currency, in its major units."""
        found = _signals(Money(currency, 9500), _past(currency, 8000, 9500, 12000))
        assert found["usual_amount"] == usual
        assert found["amount_vs_usual"] == 1.0

    @pytest.mark.parametrize("currency", ["JPY", "KWD", "USD"])
    def test_the_ratios_are_those_of_the_same_minor_units_in_euros(self, currency: str) -> None:
        """Ratios do not depend on the unit, and the spread's floor is 100 minor units in every currency (1
        EUR, 100 JPY, 0.100 KWD): the same minor units give the same z as in euros, as before the fix."""
        minor = (500, 500, 520, 480, 500)  # a spread under the floor: the floor decides z
        there = _signals(Money(currency, 2600), _past(currency, *minor))
        euros = _signals(Money("EUR", 2600), _past("EUR", *minor))
        for name in ("amount_robust_z", "amount_vs_largest", "amount_vs_usual"):
            assert there[name] == pytest.approx(euros[name], rel=1e-12)
        assert euros["amount_robust_z"] == pytest.approx(21.0)

    def test_an_unknown_currency_is_refused_not_read_as_cents(self) -> None:
        """A code outside ISO 4217 has no exponent: KeyError, never a guess (the API validates the code)."""
        with pytest.raises(KeyError):
            _signals(Money("ZZZ", 100))


def _decide(money: Money, history: RiskHistory = NOTHING) -> RiskAssessment:
    return RULES.assess(_signals(money, history))


class TestTheDefaultsByCurrency:
    @pytest.mark.parametrize("money", [Money("JPY", 125000), Money("KWD", 1500), Money("USD", 100)])
    def test_another_currency_to_a_payee_added_yesterday_is_held_whatever_the_amount(
        self, money: Money
    ) -> None:
        """1.500 KWD (about 5 EUR) or 1 USD to a payee added yesterday: HOLD NEW_PAYEE (the euro thresholds
        say nothing of other currencies; before, 1.500 KWD read 15 and was only warned)."""
        assessment = _decide(money, ADDED_YESTERDAY)
        assert (assessment.decision, assessment.codes) == (RiskDecision.HOLD, ("NEW_PAYEE",))

    @pytest.mark.parametrize(
        ("cents", "decision"), [(99_999, RiskDecision.WARN), (100_000, RiskDecision.HOLD)]
    )
    def test_euros_to_a_payee_added_yesterday_keep_their_threshold(
        self, cents: int, decision: RiskDecision
    ) -> None:
        """999.99 EUR is warned (a first transfer to a new payee), 1,000.00 EUR held: as before."""
        assessment = _decide(Money("EUR", cents), ADDED_YESTERDAY)
        assert (assessment.decision, assessment.codes) == (decision, ("NEW_PAYEE",))

    def test_a_dinar_amount_far_above_the_usual_is_held(self) -> None:
        """Five transfers of 0.500 KWD, then 1.500 KWD: HOLD UNUSUAL_AMOUNT (the euro rule's 500 says nothing
        of dinars; before, it read 15 and was allowed)."""
        assessment = _decide(Money("KWD", 1500), _past("KWD", 500, 500, 500, 500, 500))
        assert (assessment.decision, assessment.codes) == (RiskDecision.HOLD, ("UNUSUAL_AMOUNT",))

    def test_a_usual_yen_amount_is_allowed(self) -> None:
        """Five transfers of about 12,000 JPY, then 13,000 JPY: nothing to say."""
        history = _past("JPY", 12000, 11500, 12500, 12000, 12800)
        assert _decide(Money("JPY", 13000), history).decision is RiskDecision.ALLOW

    def test_a_euro_amount_under_500_is_not_unusual(self) -> None:
        """5 EUR five times, then 400 EUR: far above, but under the euro rule's 500: ALLOW as before."""
        assert _decide(Money("EUR", 40000), _past("EUR", *[500] * 5)).decision is RiskDecision.ALLOW

    def test_a_first_transfer_in_a_new_currency_is_warned(self) -> None:
        """Three EUR transfers known, then a first one in USD: WARN NEW_CURRENCY, told to the customer."""
        assessment = _decide(Money("USD", 50000), _past("EUR", 85000, 12000, 9500))
        assert (assessment.decision, assessment.codes) == (RiskDecision.WARN, ("NEW_CURRENCY",))
        assert assessment.reasons[0].description

    def test_a_first_transfer_ever_is_no_new_currency(self) -> None:
        """Nothing known: a first transfer, in whatever currency, is not news."""
        assert _decide(Money("USD", 50000)).decision is RiskDecision.ALLOW


_CURRENCIES = ("EUR", "USD", "GBP", "JPY", "KRW", "KWD", "BHD")


@st.composite
def _cases(draw: st.DrawFn) -> tuple[CreditTransfer, RiskHistory]:
    """A transfer and a memory of amounts (mostly in the user's own currency), and maybe of the payee."""
    own = draw(st.sampled_from(_CURRENCIES))
    # Amounts often alike (a memory with a usual amount), some near the thresholds read either way.
    minor = st.one_of(st.integers(1, 10**8), st.sampled_from([100, 500, 5_000, 50_000, 100_000, 10**6]))
    alike = st.sampled_from([500, 1_000, 5_000, 20_000])
    amounts = draw(
        st.lists(
            st.tuples(st.sampled_from([own, own, own, "EUR", "JPY"]), st.one_of(alike, minor)), max_size=12
        )
    )
    added = draw(st.one_of(st.none(), st.integers(0, 100)))
    payee = fingerprint("iban", PAYEE.iban)
    history = RiskHistory(
        amounts=tuple(amounts),
        payees_added={} if added is None else {payee: NOW - timedelta(hours=added)},
        payees_paid={payee: NOW - timedelta(days=30)} if draw(st.booleans()) else {},
    )
    money = Money(draw(st.sampled_from([own, own, *_CURRENCIES])), draw(minor))
    return CreditTransfer(money, PAYEE, "t"), history


def _as_before(transfer: CreditTransfer, history: RiskHistory) -> tuple[CreditTransfer, RiskHistory]:
    """The transfer's currency renamed a 2-decimal one: its amounts read as minor units / 100."""
    currency = transfer.amount.currency
    amounts = tuple((AS_BEFORE if c == currency else c, m) for c, m in history.amounts)
    return replace(transfer, amount=Money(AS_BEFORE, transfer.amount.amount_minor)), replace(
        history, amounts=amounts
    )


def _assess(rules: RuleSet, transfer: CreditTransfer, history: RiskHistory) -> RiskAssessment:
    return rules.assess(_signals(transfer.amount, history))


@settings(max_examples=1000, deadline=None)
@given(case=_cases())
def test_no_currency_is_judged_weaker_than_before(case: tuple[CreditTransfer, RiskHistory]) -> None:
    """On any memory of amounts and payee, a transfer in any currency is decided at least as strongly as the
    2026-11-30.1 defaults decided it when amounts were minor units / 100; a euro transfer exactly as they did,
    but for a first transfer in euros after other currencies (NEW_CURRENCY)."""
    transfer, history = case
    now = _assess(RULES, transfer, history)
    before = _assess(BEFORE, *_as_before(transfer, history))
    assert now.decision >= before.decision
    if transfer.amount.currency == "EUR" and "NEW_CURRENCY" not in now.codes:
        assert (now.decision, now.codes) == (before.decision, before.codes)


def test_the_rules_before_judged_a_dinar_weaker() -> None:
    """The check above can fail: 1.500 KWD to a payee added yesterday was only warned before (read 15)."""
    transfer = CreditTransfer(Money("KWD", 1500), PAYEE, "t")
    before = _assess(BEFORE, *_as_before(transfer, ADDED_YESTERDAY))
    assert before.decision is RiskDecision.WARN
    assert _assess(RULES, transfer, ADDED_YESTERDAY).decision is RiskDecision.HOLD


def test_a_new_beneficiary_has_no_amount() -> None:
    """Only a transfer is read in a currency: adding a beneficiary gives no amount and no currency."""
    found = signals(
        operation=AddBeneficiary(PAYEE),
        user=a_user(NOW),
        history=_past("JPY", 100),
        context=RequestContext(),
        sim=SIM_SWAP_OFF,
        now=NOW,
    )
    assert {"amount", "currency", "new_currency"}.isdisjoint(found)
