"""The risk memory's contract: the fake store and Redis bound alike what right codes teach in their own step
(record_verification, decision 0032), and Start's step decides on it and journals a DENY alike (decision 0045;
docs/risk.md). The memory and the denials are read for the assertions by tests/support/risk_reads.py."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import datetime, timedelta

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
from sesame.server.domain.ports import State
from sesame.server.domain.risk import RiskAssessment, RiskDecision, RiskReason
from sesame.server.domain.risk_rules import default_rules
from sesame.server.domain.risk_signals import RiskHistory, RiskLimits, fingerprint, lesson
from tests.contracts.test_start_challenge_contract import USER_ID, an_opening, enrolled, now
from tests.factories import a_challenge, a_user
from tests.fakes.journal_fields import context_fields, iso
from tests.fakes.risk_memory import MemoryRiskMemory
from tests.fakes.state import memory_state
from tests.support.risk_reads import RedisRiskReads, RiskReads

NOW = now().replace(microsecond=0)  # the present: Redis and the fake purge a challenge by the wall clock
PAYEE = Payee("Bailleur", "FR7630001007941234567890185")
CONTEXT = RequestContext(ip="90.1.2.3", device_id="phone-1", session_id="s-1")


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def beside(request: pytest.FixtureRequest) -> tuple[State, RiskReads]:
    """A fake store and the reads of its memory, or Redis and the reads of Redis."""
    if request.param == "memory":
        store = memory_state()
        return store, MemoryRiskMemory(store.users)
    redis_store: RedisState = request.getfixturevalue("redis_store")
    return redis_store, RedisRiskReads(request.getfixturevalue("redis_client"), redis_store)


@pytest.fixture
async def memory(beside: tuple[State, RiskReads]) -> RiskReads:
    """The reads of the memory, `u-1` enrolled in its store."""
    store, memory = beside
    await store.users.register_user(a_user(NOW))
    return memory


@pytest.fixture
def its_store(beside: tuple[State, RiskReads]) -> State:
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


async def test_a_start_for_an_unknown_user_is_not_found(its_store: State) -> None:
    """No user, no memory: Start's step asked the rules refuses UserNotFound, nothing written."""
    asked = RiskQuestion(default_rules(), {"sim_swap": "off"})
    with pytest.raises(UserNotFound):
        await its_store.challenges.start_challenge(an_opening(AddBeneficiary(PAYEE), question=asked))


async def test_a_user_without_a_past_has_an_empty_history(memory: RiskReads, its_store: State) -> None:
    """An enrolled user has no memory until a right code teaches it; its Start is decided on nothing
    remembered: a payee it never added is no new payee."""
    assert await memory.history("u-1") == RiskHistory()
    transfer = CreditTransfer(Money("EUR", 250000), PAYEE, "tx-0")
    asked = RiskQuestion(default_rules(), {"sim_swap": "off"})
    opened = await its_store.challenges.start_challenge(an_opening(transfer, question=asked))
    assert opened.challenge.risk is not None
    assert "NEW_PAYEE" not in opened.challenge.risk.codes
    assert await memory.history("u-1") == RiskHistory()


async def test_verified_operations_are_remembered_by_fingerprint(memory: RiskReads, its_store: State) -> None:
    """A new beneficiary, then a transfer to it: added, paid, amount, IP, device, both operations."""
    limits = RiskLimits()
    c1 = await taught(its_store, AddBeneficiary(PAYEE), CONTEXT, NOW, limits)
    paid_at = NOW + timedelta(hours=1, microseconds=1500)
    transfer = CreditTransfer(Money("EUR", 85000), PAYEE, "t-1")
    c2 = await taught(its_store, transfer, CONTEXT, paid_at, limits)
    history = await memory.history("u-1")
    iban = fingerprint("iban", PAYEE.iban)
    assert history.payees_added == {iban: NOW}
    assert history.payees_paid == {iban: paid_at.replace(microsecond=1000)}
    assert history.amounts == (("EUR", 85000),)
    assert set(history.devices) == {fingerprint("device", "phone-1")}
    assert set(history.ips) == {fingerprint("ip", "90.1.2.3")}
    assert set(history.operations) == {f"add_beneficiary:{c1}", f"credit_transfer:{c2}"}


async def test_each_part_keeps_its_newest_entries(memory: RiskReads, its_store: State) -> None:
    """Past its cap a set drops its oldest entries, the amounts their oldest amounts."""
    limits = RiskLimits(devices=2, amounts=3, operations=4)
    ids = []
    for i in range(6):
        context = RequestContext(device_id=f"d{i}")
        transfer = CreditTransfer(Money("EUR", 1000 + i), PAYEE, f"t{i}")
        ids.append(await taught(its_store, transfer, context, NOW + timedelta(minutes=i), limits))
    history = await memory.history("u-1")
    assert set(history.devices) == {fingerprint("device", "d5"), fingerprint("device", "d4")}
    assert history.amounts == (("EUR", 1005), ("EUR", 1004), ("EUR", 1003))
    assert set(history.operations) == {f"credit_transfer:{ids[i]}" for i in range(2, 6)}


async def test_a_login_remembers_no_payee_nor_amount(memory: RiskReads, its_store: State) -> None:
    """A login only teaches its IP, device and instant."""
    c1 = await taught(its_store, Login(), CONTEXT, NOW, RiskLimits())
    history = await memory.history("u-1")
    assert (history.payees_paid, history.payees_added, history.amounts) == ({}, {}, ())
    assert set(history.operations) == {f"login:{c1}"}


async def test_denials_are_journaled_in_the_users_journal(beside: tuple[State, RiskReads]) -> None:
    """Each DENY of Start's step is an entry of the user's journal, after its enrolment: the operation refused
    by digest, the reasons, the rules' version, the number masked; none is dropped (decision 0042)."""
    store, memory = beside
    await enrolled(store)  # type: ignore[arg-type]
    operation = CreditTransfer(Money("EUR", 500_00), PAYEE, "tx-9")
    asked = RiskQuestion(default_rules(), {"sim_swap": "swapped", "sim_swapped_hours": 2.0})
    for _ in range(3):
        with pytest.raises(RiskDenied):
            await store.challenges.start_challenge(an_opening(operation, question=asked))
    entries = await memory.denials(USER_ID)
    assert len(entries) == 3
    assert (entries[0]["event"], entries[0]["reasons"], entries[0]["rules_version"]) == (
        "risk.denied",
        "SIM_SWAP",
        default_rules().version,
    )
    assert (entries[0]["op_digest"], entries[0]["phone"]) == (digest(operation).hex(), "+33*******78")
    journal = await store.users.user_journal(USER_ID)
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


async def test_start_decides_in_its_step_on_the_memory_as_it_is(beside: tuple[State, RiskReads]) -> None:
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
    beside: tuple[State, RiskReads],
) -> None:
    """A DENY: RiskDenied with the reasons told, one entry in the user's sealed journal, no challenge. The
    entry is the denial's, field for field (decision 0042): the operation refused, the number masked, the
    reasons, rules and version, the request's context, at the opening's instant."""
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
    expected = {
        "event": "risk.denied",
        "at": iso(refused.created_at),
        "user_id": USER_ID,
        "op": "add_beneficiary",
        "op_digest": digest(AddBeneficiary(PAYEE)).hex(),
        "phone": "+33*******78",
        "decision": "deny",
        "reasons": "SIM_SWAP",
        "rules": "recent-sim-swap",
        "rules_version": default_rules().version,
        **context_fields(refused.context),
    }
    # Redis also keeps the operation's encoding, as its openings do (the fake journals no encoding).
    encoded = base64.urlsafe_b64encode(AddBeneficiary(PAYEE).encode()).decode().rstrip("=")
    assert entry.pop("operation", encoded) == encoded
    assert entry == expected


async def test_a_sim_answer_about_another_number_is_refused_with_the_number(
    beside: tuple[State, RiskReads],
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
    beside: tuple[State, RiskReads],
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
    assert (await memory.history(USER_ID)).amounts == ()
    right = await store.challenges.record_verification(replace(attempt, code_matches=True), LockoutPolicy())
    assert right.result is VerifyResult.VERIFIED
    fed = await memory.history(USER_ID)
    assert fed.amounts == (("EUR", 4200),)
    assert fingerprint("iban", PAYEE.iban) in fed.payees_paid


async def test_open_transfers_count_for_velocity_and_once_per_operation(
    memory: RiskReads, its_store: State
) -> None:
    """Decision 0090, alike on both stores: four transfers opened and none verified make the fifth HOLD
    VELOCITY; a new challenge for one of them (the same operation) adds nothing, a cancelled one stops
    counting."""
    asked = RiskQuestion(default_rules(), {"sim_swap": "off"})

    async def started(transaction: str) -> RiskAssessment:
        transfer = CreditTransfer(Money("EUR", 5000), PAYEE, transaction)
        opened = await its_store.challenges.start_challenge(an_opening(transfer, question=asked))
        assert opened.challenge.risk is not None
        return opened.challenge.risk

    for k in range(3):
        assert "VELOCITY" not in (await started(f"t{k}")).codes
    assert "VELOCITY" not in (await started("t0")).codes  # t0 again: three operations open, and this one
    cancelled = an_opening(CreditTransfer(Money("EUR", 5000), PAYEE, "t3"), question=asked)
    await its_store.challenges.start_challenge(cancelled)
    await its_store.challenges.cancel_challenge(cancelled.challenge_id, now(), CONTEXT)
    assert "VELOCITY" not in (await started("t4")).codes  # t0, t1, t2 open, t3 cancelled: four in all
    held = await started("t5")  # t0, t1, t2, t4 open: the fifth
    assert (held.decision, "VELOCITY" in held.codes) == (RiskDecision.HOLD, True)
