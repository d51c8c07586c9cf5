"""The RiskMemory contract: the fake and Redis read, bound and journal alike what right codes taught in their
own step (record_verification, decision 0032; docs/risk.md)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from sesame.clients.redis_store import RedisState
from sesame.server.domain.errors import ChallengeNotFound, RiskDenied, SimNumberMoved, UserNotFound
from sesame.server.domain.model import LockoutPolicy, RequestContext, VerificationAttempt, VerifyResult
from sesame.server.domain.opening import RiskQuestion
from sesame.server.domain.operation import (
    AddBeneficiary,
    CreditTransfer,
    Login,
    Money,
    Operation,
    Payee,
    digest,
)
from sesame.server.domain.ports import RiskMemory, State
from sesame.server.domain.risk import RiskAssessment, RiskDecision, RiskReason
from sesame.server.domain.risk_rules import default_rules
from sesame.server.domain.risk_signals import RiskDenial, RiskLimits, fingerprint, lesson
from tests.contracts.test_start_challenge_contract import USER_ID, an_opening, enrolled, now
from tests.factories import a_challenge, a_user
from tests.fakes.risk_memory import MemoryRiskMemory
from tests.fakes.state import memory_state

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
PAYEE = Payee("Bailleur", "FR7630001007941234567890185")
CONTEXT = RequestContext(ip="90.1.2.3", device_id="phone-1", session_id="s-1")


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def beside(request: pytest.FixtureRequest) -> tuple[State, RiskMemory]:
    """The fake beside a fake store, or Redis beside Redis."""
    if request.param == "memory":
        store = memory_state()
        return store, MemoryRiskMemory(store.users)
    redis_store: RedisState = request.getfixturevalue("redis_store")
    return redis_store, redis_store.risk_memory()


@pytest.fixture
async def memory(beside: tuple[State, RiskMemory]) -> RiskMemory:
    """The memory, `u-1` enrolled in its store."""
    store, memory = beside
    await store.users.register_user(a_user(NOW))
    return memory


@pytest.fixture
def its_store(beside: tuple[State, RiskMemory]) -> State:
    """The store beside the memory (its right codes feed it)."""
    return beside[0]


async def taught(
    store: State, operation: Operation, context: RequestContext, at: datetime, limits: RiskLimits
) -> str:
    """A challenge for `u-1`'s operation opened and its right code recorded with its lesson (learnt `at`):
    the one way a memory is fed. Its challenge id."""
    opening = an_opening(operation)
    await store.challenges.start_challenge(opening)
    learnt = lesson(opening.challenge_id, operation, context, at, limits)
    attempt = VerificationAttempt(opening.challenge_id, digest(operation), True, now(), context, risk=learnt)
    verified = await store.challenges.record_verification(attempt, LockoutPolicy())
    assert verified.result is VerifyResult.VERIFIED
    return opening.challenge_id


async def test_an_unknown_user_is_not_found(memory: RiskMemory) -> None:
    """No user, no memory: UserNotFound."""
    with pytest.raises(UserNotFound):
        await memory.user_and_history("nobody")


async def test_a_user_without_a_past_has_an_empty_history(memory: RiskMemory) -> None:
    """The user is read with an empty history."""
    found = await memory.user_and_history("u-1")
    assert found.user.user_id == "u-1"
    assert (found.history.payees_paid, found.history.amounts, found.history.devices) == ({}, (), {})


async def test_verified_operations_are_remembered_by_fingerprint(
    memory: RiskMemory, its_store: State
) -> None:
    """A new beneficiary, then a transfer to it: added, paid, amount, IP, device, both operations."""
    limits = RiskLimits()
    c1 = await taught(its_store, AddBeneficiary(PAYEE), CONTEXT, NOW, limits)
    paid_at = NOW + timedelta(hours=1, microseconds=1500)
    transfer = CreditTransfer(Money("EUR", 85000), PAYEE, "t-1")
    c2 = await taught(its_store, transfer, CONTEXT, paid_at, limits)
    history = (await memory.user_and_history("u-1")).history
    iban = fingerprint("iban", PAYEE.iban)
    assert history.payees_added == {iban: NOW}
    assert history.payees_paid == {iban: paid_at.replace(microsecond=1000)}
    assert history.amounts == (("EUR", 85000),)
    assert set(history.devices) == {fingerprint("device", "phone-1")}
    assert set(history.ips) == {fingerprint("ip", "90.1.2.3")}
    assert set(history.operations) == {f"add_beneficiary:{c1}", f"credit_transfer:{c2}"}


async def test_each_part_keeps_its_newest_entries(memory: RiskMemory, its_store: State) -> None:
    """Past its cap a set drops its oldest entries, the amounts their oldest amounts."""
    limits = RiskLimits(devices=2, amounts=3, operations=4)
    ids = []
    for i in range(6):
        context = RequestContext(device_id=f"d{i}")
        transfer = CreditTransfer(Money("EUR", 1000 + i), PAYEE, f"t{i}")
        ids.append(await taught(its_store, transfer, context, NOW + timedelta(minutes=i), limits))
    history = (await memory.user_and_history("u-1")).history
    assert set(history.devices) == {fingerprint("device", "d5"), fingerprint("device", "d4")}
    assert history.amounts == (("EUR", 1005), ("EUR", 1004), ("EUR", 1003))
    assert set(history.operations) == {f"credit_transfer:{ids[i]}" for i in range(2, 6)}


async def test_a_login_remembers_no_payee_nor_amount(memory: RiskMemory, its_store: State) -> None:
    """A login only teaches its IP, device and instant."""
    c1 = await taught(its_store, Login(), CONTEXT, NOW, RiskLimits())
    history = (await memory.user_and_history("u-1")).history
    assert (history.payees_paid, history.payees_added, history.amounts) == ({}, {}, ())
    assert set(history.operations) == {f"login:{c1}"}


async def test_denials_are_journaled_in_the_users_journal(beside: tuple[State, RiskMemory]) -> None:
    """Each DENY is an entry of the user's journal, after its enrolment: the operation refused by digest,
    the reasons, the rules' version, the number masked; none is dropped (decision 0042)."""
    store, memory = beside
    await store.users.register_user(a_user(NOW))
    operation = CreditTransfer(Money("EUR", 500_00), PAYEE, "tx-9")
    for i in range(3):
        denial = RiskDenial(
            "u-1",
            NOW + timedelta(seconds=i),
            "credit_transfer",
            ("SIM_SWAP",),
            ("recent-sim-swap",),
            "v+1",
            CONTEXT,
            operation,
            "+33612345678",
        )
        await memory.record_denial(denial)
    entries = await memory.denials("u-1")
    assert len(entries) == 3
    assert (entries[0]["event"], entries[0]["reasons"], entries[0]["rules_version"]) == (
        "risk.denied",
        "SIM_SWAP",
        "v+1",
    )
    assert (entries[0]["op_digest"], entries[0]["phone"]) == (digest(operation).hex(), "+33*******78")
    journal = await store.users.user_journal("u-1")
    assert [e["event"] for e in journal] == ["user.enrolled", *["risk.denied"] * 3]
    assert await memory.denials("u-2") == []


async def test_the_assessment_is_journaled_with_the_opening_and_kept(store: State) -> None:
    """challenge.opened carries the decision, reasons, rules and version; the challenge keeps it (decision
    0032: a retry by request id answers it, the proof states it)."""
    await store.users.register_user(a_user(NOW))
    assessment = RiskAssessment(RiskDecision.HOLD, (RiskReason("NEW_PAYEE", "new"),), "v1+ab", ("new-payee",))
    challenge = replace(a_challenge(NOW), risk=assessment)
    await store.challenges.open_challenge(challenge, CONTEXT)
    (opened,) = await store.journal.challenge_journal(challenge.challenge_id)
    assert {key: opened[key] for key in opened if key.startswith("risk_")} == {
        "risk_decision": "hold",
        "risk_reasons": "NEW_PAYEE",
        "risk_rules": "new-payee",
        "risk_rules_version": "v1+ab",
    }
    kept = (await store.challenges.get_challenge(challenge.challenge_id)).risk
    assert kept is not None
    assert (kept.decision, kept.codes, kept.rules_version, kept.rules) == (
        RiskDecision.HOLD,
        ("NEW_PAYEE",),
        "v1+ab",
        ("new-payee",),
    )


async def test_start_decides_in_its_step_on_the_memory_as_it_is(beside: tuple[State, RiskMemory]) -> None:
    """The step applies the rules to the memory as a verification just left it (no read before it, no
    version, decision 0045): a transfer to the payee added a moment ago opens flagged, the payee named new;
    the decision is kept and journaled with the challenge."""
    store, _ = beside
    await enrolled(store)  # type: ignore[arg-type]
    await taught(store, AddBeneficiary(PAYEE), CONTEXT, NOW, RiskLimits())
    transfer = CreditTransfer(Money("EUR", 250000), PAYEE, "tx-1")
    asked = RiskQuestion(default_rules(), {"sim_swap": "off"})
    opened = await store.challenges.start_challenge(an_opening(transfer, question=asked))
    risk = opened.challenge.risk
    assert risk is not None
    assert (risk.decision, risk.codes, risk.rules_version) == (
        RiskDecision.HOLD,
        ("NEW_PAYEE",),
        default_rules().version,
    )
    assert risk.payee_added_at is not None
    kept = (await store.challenges.get_challenge(opened.challenge.challenge_id)).risk
    assert kept == risk
    entry = (await store.journal.challenge_journal(opened.challenge.challenge_id))[0]
    assert (entry["risk_decision"], entry["risk_reasons"]) == ("hold", "NEW_PAYEE")


async def test_a_deny_in_the_step_journals_the_denial_and_writes_nothing_else(
    beside: tuple[State, RiskMemory],
) -> None:
    """A DENY: RiskDenied with the reasons told, one entry in the user's sealed journal, no challenge. The
    entry is the one record_risk_denial journals for that denial (decision 0042), field for field."""
    store, memory = beside
    await enrolled(store)  # type: ignore[arg-type]
    asked = RiskQuestion(default_rules(), {"sim_swap": "swapped", "sim_swapped_hours": 2.0})
    refused = an_opening(AddBeneficiary(PAYEE), question=asked)
    with pytest.raises(RiskDenied) as denied:
        await store.challenges.start_challenge(refused)
    assert (denied.value.codes, denied.value.rules) == (("SIM_SWAP",), ("recent-sim-swap",))
    assert all(denied.value.descriptions)
    (entry,) = await memory.denials(USER_ID)
    assert (entry["event"], entry["op"], entry["reasons"]) == ("risk.denied", "add_beneficiary", "SIM_SWAP")
    assert (entry["op_digest"], entry["phone"]) == (digest(AddBeneficiary(PAYEE)).hex(), "+33*******78")
    with pytest.raises(ChallengeNotFound):
        await store.challenges.get_challenge(refused.challenge_id)
    recorded = RiskDenial(
        USER_ID,
        refused.created_at,
        "add_beneficiary",
        denied.value.codes,
        denied.value.rules,
        denied.value.rules_version,
        refused.context,
        refused.operation,
        "+33612345678",
    )
    await memory.record_denial(recorded)
    numbering = {"seq", "prev"}  # journal_append's, one per entry
    stepped, written = (
        {k: v for k, v in e.items() if k not in numbering} for e in await memory.denials(USER_ID)
    )
    assert stepped == written


async def test_a_sim_answer_about_another_number_is_refused_with_the_number(
    beside: tuple[State, RiskMemory],
) -> None:
    """The operator was asked about a number that is not the stored one: SimNumberMoved with it."""
    store, _ = beside
    await enrolled(store)  # type: ignore[arg-type]
    asked = RiskQuestion(default_rules(), {"sim_swap": "not_swapped"}, sim_number="+33600000000")
    with pytest.raises(SimNumberMoved) as moved:
        await store.challenges.start_challenge(an_opening(AddBeneficiary(PAYEE), question=asked))
    assert moved.value.number == "+33612345678"
    confirmed = replace(asked, sim_number=moved.value.number)
    assert (
        await store.challenges.start_challenge(an_opening(AddBeneficiary(PAYEE), question=confirmed))
    ).queued


async def test_a_right_code_feeds_the_memory_in_its_step_and_answers_it(
    beside: tuple[State, RiskMemory],
) -> None:
    """A VERIFIED decision given a lesson feeds the memory and answers it; a wrong code feeds nothing."""
    store, memory = beside
    await enrolled(store)  # type: ignore[arg-type]
    operation = CreditTransfer(Money("EUR", 4200), PAYEE, "tx-9")
    opening = an_opening(operation)
    await store.challenges.start_challenge(opening)
    learnt = lesson(opening.challenge_id, operation, CONTEXT, NOW, RiskLimits())
    attempt = VerificationAttempt(opening.challenge_id, digest(operation), False, now(), CONTEXT, risk=learnt)
    await store.challenges.record_verification(attempt, LockoutPolicy())
    assert (await memory.user_and_history(USER_ID)).history.amounts == ()
    right = await store.challenges.record_verification(replace(attempt, code_matches=True), LockoutPolicy())
    assert right.result is VerifyResult.VERIFIED
    fed = await memory.user_and_history(USER_ID)
    assert fed.history.amounts == (("EUR", 4200),)
    assert fingerprint("iban", PAYEE.iban) in fed.history.payees_paid
