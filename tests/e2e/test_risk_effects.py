"""What a WARN or HOLD does through the real server (docs/risk.md, decision 0032): the proof states it, a
retry by request id answers it again; and another worker's verification is seen by the next Start's step
(decision 0045).

A payee added and verified, then 1,250 EUR to it: HOLD `NEW_PAYEE` with the default rules (a transfer of
1,000 or more to a payee added less than 72 hours ago).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from datetime import timedelta

import pytest
import redis.asyncio as aioredis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.clients import redis_records as rec
from sesame.server.grpc.demo import read_code
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, IBAN, counted, enrolled, transfer, verify
from tests.e2e.test_round_trips import store_calls
from tests.e2e.test_sms_text_journaled import TEMPLATES
from tests.support.jws import claims_of
from tests.support.outbox import settled
from tests.support.risk_reads import RedisRiskReads

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def beneficiary(iban: str = IBAN) -> op_pb.Operation:
    return op_pb.Operation(add_beneficiary=op_pb.AddBeneficiary(payee=op_pb.Payee(name="L J H", iban=iban)))


async def start(
    live: Live, user_id: str, operation: op_pb.Operation, request_id: str = ""
) -> auth_pb.StartChallengeResponse:
    return await live.auth.StartChallenge(
        auth_pb.StartChallengeRequest(
            user_id=user_id, operation=operation, context=CONTEXT, request_id=request_id
        )
    )


async def a_new_payee(live: Live) -> str:
    """A user who just added (and approved) a payee."""
    user_id = await enrolled(live)
    await a_payee_added(live, user_id)
    return user_id


async def a_payee_added(live: Live, user_id: str) -> None:
    """The user adds the payee and approves it with the code."""
    added = await start(live, user_id, beneficiary())
    _, code = await read_code(live.sms_file, added.challenge_id)
    reply = await live.auth.VerifyChallenge(
        auth_pb.VerifyChallengeRequest(
            challenge_id=added.challenge_id, code=code, operation=beneficiary(), context=CONTEXT
        )
    )
    assert reply.result == auth_pb.VERIFY_RESULT_VERIFIED


async def test_a_held_transfers_proof_carries_the_risk_claim(live: Live) -> None:
    """The proof of a HOLD transfer states the decision, its reasons and the rules' version, and GetProof
    (signed again from the journal) states the same; a proof of an ALLOW states no risk."""
    user_id = await a_new_payee(live)
    held = await start(live, user_id, transfer())
    assert held.risk.decision == auth_pb.RISK_DECISION_HOLD
    _, code = await read_code(live.sms_file, held.challenge_id)
    reply = await verify(live, held.challenge_id, code)
    assert reply.result == auth_pb.VERIFY_RESULT_VERIFIED
    assert claims_of(reply.proof)["risk"] == {
        "decision": "HOLD",
        "reasons": [reason.code for reason in held.risk.reasons],
        "rules_version": held.risk.rules_version,
    }
    again = (await live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=held.challenge_id))).proof
    assert again.rsplit(".", 1)[0] == reply.proof.rsplit(".", 1)[0]
    login = op_pb.Operation(login=op_pb.Login())
    allowed = await start(live, user_id, login)
    assert allowed.risk.decision == auth_pb.RISK_DECISION_ALLOW
    _, code = await read_code(live.sms_file, allowed.challenge_id)
    reply = await live.auth.VerifyChallenge(
        auth_pb.VerifyChallengeRequest(
            challenge_id=allowed.challenge_id, code=code, operation=login, context=CONTEXT
        )
    )
    assert "risk" not in claims_of(reply.proof)


async def test_a_held_transfer_to_a_new_payee_is_sent_with_the_alert_naming_it_new(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """The console SMS of a HOLD transfer to the payee added minutes before names it as new, with the time it
    was added, in the user's locale (fr); a transfer the rules allow keeps the usual wording.

    The server's clock is moved to the next noon UTC first: `aujourd'hui` is the payee's UTC day, which a
    run across midnight UTC would have left between the payee and the transfer (decision 0058)."""
    now = live.clock.now()
    live.clock.advance((now.replace(hour=12, minute=0, second=0, microsecond=0) - now) % timedelta(days=1))
    user_id = await a_new_payee(live)
    (added_at,) = (await RedisRiskReads(redis_client, live.store).history(user_id)).payees_added.values()
    held = await start(live, user_id, transfer())
    assert held.risk.decision == auth_pb.RISK_DECISION_HOLD
    text, code = await read_code(live.sms_file, held.challenge_id)
    assert text.startswith(f"MaBanque: code {code} pour ENVOYER 1 250,00 EUR à ")
    assert f"NOUVEAU bénéficiaire ajouté aujourd'hui à {added_at:%H:%M} UTC." in text
    assert "ARNAQUE" in text
    usual = await start(live, await enrolled(live, "bob"), transfer(iban="FR1420041010050500013M02606"))
    assert usual.risk.decision == auth_pb.RISK_DECISION_ALLOW
    text, _ = await read_code(live.sms_file, usual.challenge_id)
    assert "NOUVEAU" not in text


async def test_a_payee_named_in_the_banks_voice_is_warned_with_the_alert(live: Live) -> None:
    """A transfer to "ANNULATION VIREMENT FRAUDULEUX" and a payee "Remboursement sécurisé" added: WARN
    `PAYEE_NAME_ALERT` (decision 0098), each SMS with its operation's alert (the transfer's says the code
    cancels nothing); the same transfer to "Jean DUPONT" is allowed with the usual wording."""
    user_id = await enrolled(live)
    warned = await start(live, user_id, transfer(name="ANNULATION VIREMENT FRAUDULEUX"))
    assert warned.risk.decision == auth_pb.RISK_DECISION_WARN
    assert [reason.code for reason in warned.risk.reasons] == ["PAYEE_NAME_ALERT"]
    text, _ = await read_code(live.sms_file, warned.challenge_id)
    assert '"ANNULATION VIREMENT FRAUDULEUX"' in text
    assert "il n'annule rien" in text
    payee = op_pb.Payee(name="Remboursement sécurisé", iban="FR1420041010050500013M02606")
    adding = await start(live, user_id, op_pb.Operation(add_beneficiary=op_pb.AddBeneficiary(payee=payee)))
    assert (adding.risk.decision, [r.code for r in adding.risk.reasons]) == (
        auth_pb.RISK_DECISION_WARN,
        ["PAYEE_NAME_ALERT"],
    )
    text, _ = await read_code(live.sms_file, adding.challenge_id)
    assert "ARNAQUE" in text
    usual = await start(live, await enrolled(live, "bob"), transfer())
    assert usual.risk.decision == auth_pb.RISK_DECISION_ALLOW
    text, _ = await read_code(live.sms_file, usual.challenge_id)
    assert "ARNAQUE" not in text


@pytest.mark.parametrize(
    ("name", "printed"),
    [
        ("ANNU\u0141ATION DU VIREMENT FRAU\u0110ULEUX", '"ANNULATION DU VIREMENT FRAUDULEUX"'),
        ("ANNULATI\u00d8N DU VIREMENT", '"ANNULATI\u00d8N DU VIREMENT"'),  # Ø, a GSM-7 letter, prints as is
        ("ANNULATI0N DU VIREMENT", '"ANNULATI N DU VIREMENT"'),  # a digit prints as a space
        ("REMB'OURSEMENT DU VIREMENT", '"REMB\'OURSEMENT DU VIREMENT"'),  # an apostrophe inside the word
        ("SERVICE ANTIFRAUDE", '"SERVICE ANTIFRAUDE"'),  # a stem after a prefix, inside the word (AR2)
        ("COMPTE TAMPON", '"COMPTE TAMPON"'),  # the fake adviser's "safe" account (AR2)
    ],
)
async def test_a_payee_named_so_in_look_alike_letters_is_warned_too(
    live: Live, name: str, printed: str
) -> None:
    """`ANNUŁATION DU VIREMENT FRAUĐULEUX` (Ł, Đ): the SMS prints it `ANNULATION DU VIREMENT FRAUDULEUX`
    (its GSM-7 letters, decision 0080), so the rules read it so: WARN `PAYEE_NAME_ALERT` and the alert's
    wording; `Ø` or `0` for `O` is read as the `O` it passes for, a word cut by an apostrophe as one. Found
    by outside audits: each name passed with the usual text."""
    user_id = await enrolled(live)
    warned = await start(live, user_id, transfer(name=name))
    assert (warned.risk.decision, [r.code for r in warned.risk.reasons]) == (
        auth_pb.RISK_DECISION_WARN,
        ["PAYEE_NAME_ALERT"],
    )
    text, _ = await read_code(live.sms_file, warned.challenge_id)
    assert printed in text
    assert "il n'annule rien" in text


async def test_the_new_payee_alert_is_journaled_as_its_own_template(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """The send's journal entry names the template that worded the SMS (`fr/credit_transfer_new_payee`,
    which carries its own scam alert, so no warning file's hash) and the hash of that text, code masked."""
    user_id = await a_new_payee(live)
    held = await start(live, user_id, transfer())
    text, code = await read_code(live.sms_file, held.challenge_id)
    await settled(live.store)
    entries = await redis_client.xrange(live.store.keys.challenge_journal(held.challenge_id))
    [sent] = [e for e in map(rec.decoded, (f for _, f in entries)) if e["event"] == "challenge.delivery"]
    assert sent["template"] == "fr/credit_transfer_new_payee"
    assert (
        sent["template_sha256"]
        == hashlib.sha256((TEMPLATES / "fr" / "credit_transfer_new_payee.txt").read_bytes()).hexdigest()
    )
    assert "warning_sha256" not in sent
    assert sent["text_sha256"] == hashlib.sha256(text.replace(code, "#" * len(code)).encode()).hexdigest()


async def test_a_retry_by_request_id_answers_the_same_risk(live: Live) -> None:
    """A retried StartChallenge answers the challenge the first call opened with the decision it was opened
    with: same id, same decision, reasons and rules' version."""
    user_id = await a_new_payee(live)
    first = await start(live, user_id, transfer(), request_id="pay-1")
    again = await start(live, user_id, transfer(), request_id="pay-1")
    assert first.risk.decision == auth_pb.RISK_DECISION_HOLD
    assert again.challenge_id == first.challenge_id
    assert again.risk == first.risk


async def test_another_workers_verification_is_seen_by_the_next_start(live: Live, other_worker: Live) -> None:
    """Worker A decided a transfer before the payee; worker B adds and approves a payee; A's next transfer
    to it is decided on the memory as it is, in A's one step: HOLD NEW_PAYEE, one round trip (0045; the
    step and the take of the send units, sent at once, 0046)."""
    user_id = await enrolled(live)
    before = await start(live, user_id, transfer())
    assert before.risk.decision == auth_pb.RISK_DECISION_ALLOW
    await a_payee_added(other_worker, user_id)
    calls = store_calls(live)
    held = await start(live, user_id, transfer())
    assert (held.risk.decision, [r.code for r in held.risk.reasons][:1]) == (
        auth_pb.RISK_DECISION_HOLD,
        ["NEW_PAYEE"],
    )
    assert store_calls(live) - calls == Counter(open_challenge=1, take_send_units=1)


async def test_starts_racing_a_verification_on_another_worker(live: Live, other_worker: Live) -> None:
    """Two transfers started on A while B approves the payee: each is decided on the memory its own step
    saw (ALLOW before the payee, HOLD after), and every transfer started once B answered is HOLD."""
    for n in range(10):
        user_id = f"racer-{n}"
        await live.enrol.EnrollUser(
            enrol_pb.EnrollUserRequest(user_id=user_id, client_id="acme", secure_phone=f"+336140{n:05d}")
        )
        await start(live, user_id, transfer())  # A keeps a read without the payee
        *raced, _ = await asyncio.gather(
            start(live, user_id, transfer()),
            start(live, user_id, transfer()),
            a_payee_added(other_worker, user_id),
        )
        assert {r.risk.decision for r in raced} <= {auth_pb.RISK_DECISION_ALLOW, auth_pb.RISK_DECISION_HOLD}
        after = await start(live, user_id, transfer())
        assert after.risk.decision == auth_pb.RISK_DECISION_HOLD


async def test_each_start_is_decided_once_and_counted_once_racing_another_worker(
    live: Live, other_worker: Live
) -> None:
    """Starts on A racing B's approvals of the payee: each is decided in its one step (one round trip,
    whatever B did meanwhile), and `sesame_risk_decisions_total` counts each Start's decision once."""
    answered: Counter[str] = Counter()
    steps = 0
    for n in range(10):
        user_id = f"counted-{n}"
        await live.enrol.EnrollUser(
            enrol_pb.EnrollUserRequest(user_id=user_id, client_id="acme", secure_phone=f"+336150{n:05d}")
        )
        await start(live, user_id, transfer())  # A keeps a read without the payee
        calls = store_calls(live)
        *raced, _ = await asyncio.gather(
            start(live, user_id, transfer()),
            start(live, user_id, transfer()),
            a_payee_added(other_worker, user_id),
        )
        after = await start(live, user_id, transfer())  # on A's read from before the payee, at least
        steps += (store_calls(live) - calls)["open_challenge"]
        for response in (*raced, after):
            answered[auth_pb.RiskDecision.Name(response.risk.decision)] += 1
    assert steps == 30  # one step per Start, never a second
    for name in ("RISK_DECISION_ALLOW", "RISK_DECISION_HOLD"):
        labels = {"operation": "credit_transfer", "decision": name.removeprefix("RISK_DECISION_").lower()}
        first_starts = 10 if name == "RISK_DECISION_ALLOW" else 0
        counted_now = await counted(live.metrics.registry, "sesame_risk_decisions_total", labels) or 0
        assert counted_now == answered[name] + first_starts
