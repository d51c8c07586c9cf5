"""Transfers in yen and in Kuwaiti dinars through the real server (decision 0089): the step in Redis reads
each amount in its currency's major units (JPY has no decimals, KWD three), and the default rules, whose
thresholds are euros, hold a transfer in another currency to a new payee whatever its amount.

Before, every amount was read as minor units / 100: 125,000 JPY as 1,250 and 1.500 KWD as 15.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.clients.redis_store import RedisState
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.server.app import RiskWiring
from sesame.server.domain.risk_rules import parse
from sesame.server.risk_settings import RiskSettings
from tests.e2e.conftest import Live, live_on
from tests.e2e.helpers import enrolled
from tests.e2e.test_risk import authorised, beneficiary, codes
from tests.fakes.clock import ShiftedClock
from tests.support.wired_server import ServerOptions

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
YEN_PAYEE = "DE89370400440532013000"
DINAR_PAYEE = "FR7630006000011234567890189"
HOLD, ALLOW = auth_pb.RISK_DECISION_HOLD, auth_pb.RISK_DECISION_ALLOW

# A bank's own thresholds, one per currency, in each currency's major units.
BANK_RULES = """
version = "bank-currencies"

[[rules]]
id = "large-yen"
description = "A transfer of 150,000 JPY or more"
when = [["operation", "==", "credit_transfer"], ["currency", "==", "JPY"], ["amount", ">=", 150000]]
decision = "HOLD"
reason = "LARGE_AMOUNT"

[[rules]]
id = "large-dinar"
description = "A transfer of 300 KWD or more"
when = [["operation", "==", "credit_transfer"], ["currency", "==", "KWD"], ["amount", ">=", 300]]
decision = "HOLD"
reason = "LARGE_AMOUNT"
"""


def transfer_in(currency: str, amount_minor: int, iban: str) -> op_pb.Operation:
    """A credit transfer of `amount_minor` minor units of `currency` to `iban`."""
    return op_pb.Operation(
        credit_transfer=op_pb.CreditTransfer(
            amount=op_pb.Money(currency=currency, amount_minor=amount_minor),
            payee=op_pb.Payee(name="L J H", iban=iban),
            transaction_id="tx-1",
        )
    )


async def test_a_yen_and_a_dinar_transfer_to_new_payees_are_held(live: Live) -> None:
    """Under the default rules, 125,000 JPY and then 1.500 KWD (about 5 EUR) to payees added the day before
    are HOLD NEW_PAYEE; the dinars, a currency none of the user's amounts was in, also NEW_CURRENCY."""
    user_id = await enrolled(live)
    await authorised(live, user_id, beneficiary(YEN_PAYEE))
    live.clock.advance(timedelta(hours=2))  # not a burst of payees
    await authorised(live, user_id, beneficiary(DINAR_PAYEE))
    live.clock.advance(timedelta(days=1))
    yen = await authorised(live, user_id, transfer_in("JPY", 125000, YEN_PAYEE))
    live.clock.advance(timedelta(hours=2))
    dinars = await authorised(live, user_id, transfer_in("KWD", 1500, DINAR_PAYEE))
    assert (yen.risk.decision, codes(yen)) == (HOLD, {"NEW_PAYEE"})
    assert (dinars.risk.decision, codes(dinars)) == (HOLD, {"NEW_PAYEE", "NEW_CURRENCY"})
    assert all(reason.description for reason in dinars.risk.reasons)


@pytest.fixture(name="banks")
async def _banks(redis_store: RedisState, keystore: Pkcs11KeyStore, tmp_path: Path) -> AsyncIterator[Live]:
    """A real server on the bank's rules file with thresholds per currency."""
    clock = ShiftedClock()
    risk = RiskWiring(settings=RiskSettings(rules=parse(BANK_RULES)))
    options = ServerOptions(clock=clock, risk=risk)
    async with live_on(keystore, redis_store, tmp_path / "sms.jsonl", clock, options) as live:
        yield live


@pytest.mark.parametrize(
    ("currency", "amount_minor", "decision"),
    [
        ("JPY", 200_000, HOLD),  # 200,000 yen (read 2,000 before: allowed)
        ("JPY", 125_000, ALLOW),
        ("KWD", 100_000, ALLOW),  # 100.000 dinars (read 1,000 before: held)
        ("KWD", 350_000, HOLD),
    ],
)
async def test_a_banks_threshold_per_currency_is_in_that_currencys_units(
    banks: Live, currency: str, amount_minor: int, decision: auth_pb.RiskDecision.ValueType
) -> None:
    """A bank's file holds 150,000 JPY and 300 KWD: the step compares each transfer in its own units."""
    user_id = await enrolled(banks)
    response = await authorised(banks, user_id, transfer_in(currency, amount_minor, YEN_PAYEE))
    assert response.risk.decision == decision
    assert codes(response) == ({"LARGE_AMOUNT"} if decision == HOLD else set())
