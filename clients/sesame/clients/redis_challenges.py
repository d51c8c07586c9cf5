"""`RedisChallenges`: the Challenges port on Redis, one Lua script per transition (docs/decisions/0002, 0038).

Every transition checks, changes and appends its journal entry in one script, so it is atomic and costs
one round trip. A challenge lives in its user's `{s:<n>}` slot with its journal stream, so a verification
runs on one slot found from the challenge id and reads or counts for the user there; opening a challenge
and taking a resend also take the user's send unit (the number's, caller's and global ones are held in their
own slot by `redis_send_units`, concurrently: decision 0046), and queue the SMS in the outbox (0025).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Final, cast

from opentelemetry import propagate

from sesame.clients import redis_records as rec
from sesame.clients.redis_place import RedisPlace
from sesame.clients.redis_risk import NO_LESSON, lesson_args, memory_parts
from sesame.clients.redis_scripts import stored_challenge
from sesame.clients.risk_program import Denial, compiled, question
from sesame.server.domain import budgets
from sesame.server.domain.budgets import BudgetKind, Charge, SendBudget
from sesame.server.domain.destinations import check_destination, whole_calling_codes
from sesame.server.domain.errors import (
    ChallengeAlreadyExists,
    ChallengeClosed,
    ChallengeConsumed,
    ChallengeMismatch,
    ChallengeNotFound,
    ChallengeNotVerified,
    FieldViolation,
    InvalidRequest,
    PhoneCooling,
    PhoneUnchanged,
    ResendRefused,
    RiskDenied,
    SecurePhoneChanged,
    SendBudgetExhausted,
    SesameError,
    SimNumberMoved,
    StoreUnavailable,
    UserBlocked,
    UserNotActive,
    UserNotFound,
)
from sesame.server.domain.lifecycle import CLOCK_SKEW, Consumption, Voiding, VoidOutcome, VoidReason
from sesame.server.domain.model import (
    Challenge,
    DeliveryState,
    LockoutPolicy,
    RequestContext,
    VerificationAttempt,
    VerificationOutcome,
    VerifyResult,
)
from sesame.server.domain.opening import Opened, Opening
from sesame.server.domain.operation import ChangePhone, digest
from sesame.server.domain.ports import Challenges
from sesame.server.domain.resending import ResendClaim, Resent
from sesame.server.tracing import recording


class RedisChallenges(RedisPlace):
    """Challenges in Redis; each method is one atomic, journaled transition."""

    async def open_challenge(
        self, challenge: Challenge, context: RequestContext, charges: Sequence[Charge] = ()
    ) -> None:
        """Admit, index, charge and store a new challenge in one step (see the port). UserNotFound,
        UserNotActive, SecurePhoneChanged, ChallengeAlreadyExists, SendBudgetExhausted."""
        opening = _opening_of(challenge, context)
        budget_keys, budget_args = self._budgets(charges)
        fields = rec.challenge_fields(challenge)
        args = self._opening_args(opening, challenge.phone, budget_args, _NO_NUMBER_BUDGET, "*")
        args += ["", len(fields), *fields, *rec.opened_entry(challenge, context)]  # no change to refuse
        keys = self._opening_keys(opening, budget_keys)
        reply = await self._run("open_challenge", keys, args, program=self._program(opening))
        if reply[0] != b"opened":
            raise _refused(opening, reply, charges)
        self._nudge.queued(self.keys.shard_of_challenge(challenge.challenge_id))

    async def start_challenge(self, opening: Opening) -> Opened:
        """Start's one step (see the port): one script, one round trip, unless the stored number's calling
        code is shared with a region outside the allow-list: its region is then checked here, and the
        script runs again for that number (docs/decisions/0025)."""
        # The user's unit only: the number's, caller's and global units are held in their own slot by a
        # script sent concurrently with this one (decision 0046).
        charges, _ = budgets.held_charges(
            budgets.charges(opening.budget, opening.user_id, "", opening.context.caller)
        )
        budget_keys, budget_args = self._budgets(charges)
        number_budget = _NO_NUMBER_BUDGET
        codes = ",".join(["", *sorted(whole_calling_codes(opening.countries)), ""])
        keys = self._opening_keys(opening, budget_keys)
        draft = rec.opened_challenge(opening, "", "", "")  # built once for the hash and the entry (0049)
        fields = rec.opening_fields(opening, draft)
        # A change_phone's new number, refused in the step when it is the stored one (PhoneUnchanged).
        change_to = opening.operation.new_phone if isinstance(opening.operation, ChangePhone) else ""
        tail = [change_to, len(fields), *fields, *rec.opening_entry(opening, draft)]
        args = self._opening_args(opening, "", budget_args, number_budget, codes)
        program = self._program(opening)
        reply = await self._run("open_challenge", keys, [*args, *tail], program=program)
        if reply[0] == b"destination":
            number = reply[1].decode()
            check_destination(number, opening.countries)
            # Allowed, under a calling code shared with a region that is not: open for that number only.
            args = self._opening_args(opening, number, budget_args, number_budget, "*")
            reply = await self._run("open_challenge", keys, [*args, *tail], program=program)
        match reply[0]:
            case b"opened":
                self._nudge.queued(self.keys.shard_of_challenge(opening.challenge_id))  # its SMS (0060)
                client_id, phone, locale = (value.decode() for value in reply[1:4])
                # The rules decided in the step when it answers a 5th element (decision 0045).
                risk = rec.risk_from_hash({b"risk": reply[4]}) if len(reply) > 4 else opening.risk
                return Opened(rec.opened_challenge(opening, client_id, phone, locale, risk), queued=True)
            case b"earlier":
                return Opened(_challenge(rec.pairs(reply[1])), queued=False)
            case b"other_operation":
                raise InvalidRequest([FieldViolation("request_id", "was already used for another operation")])
            case b"risk_denied" if opening.question is not None:
                said = rec.risk_from_hash({b"risk": reply[1]})
                assert said is not None
                told = opening.question.rules.described(said)
                descriptions = tuple(reason.description for reason in told.reasons)
                again = len(reply) > 2 and reply[2] == b"1"  # a retry of a denied request id
                raise RiskDenied(
                    opening.user_id, told.codes, descriptions, told.rules_version, told.rules, again=again
                )
            case b"sim_number":
                raise SimNumberMoved(reply[1].decode())
        raise _refused(opening, reply, charges)

    def _opening_keys(self, opening: Opening, budget_keys: Sequence[str]) -> list[str]:
        user_id = opening.user_id
        return [
            *self._challenge_keys(opening.challenge_id),
            self.keys.user(user_id),
            self.keys.user_pending(user_id),
            self.keys.start_request(user_id, opening.request_id),
            *budget_keys,
            self.keys.outbox_of(opening.challenge_id),
            # The memory the rules read in the step, and the user's journal a DENY goes to (0042, 0045).
            *(
                ()
                if opening.question is None
                else (*memory_parts(self.keys, user_id), self.keys.user_journal(user_id))
            ),
        ]

    def _opening_args(
        self,
        opening: Opening,
        number: str,
        budget_args: Sequence[rec.Field],
        number_budget: Sequence[rec.Field],
        codes: str,
    ) -> list[rec.Field]:
        """open_challenge.lua's arguments up to the hash fields (see its header)."""
        # Absolute, from the challenge's own expiry: the purge time does not depend on Redis's clock
        # reading at the moment of the call, nor on how long the call took.
        return [
            rec.to_ms(opening.expires_at + self._retention),
            rec.to_ms(opening.created_at),
            rec.to_ms(opening.created_at - CLOCK_SKEW),
            number,
            opening.challenge_id,
            rec.to_ms(opening.expires_at),
            *budget_args,
            *number_budget,
            _trace_context(),
            "1" if opening.cooled else "0",
            codes,
            "1" if opening.request_id else "0",
            self.keys.challenge(opening.challenge_id).removesuffix(opening.challenge_id),
            digest(opening.operation).hex(),
            *self._risk_args(opening),
        ]

    def _risk_args(self, opening: Opening) -> list[rec.Field]:
        """Whether the rules decide in the step ('+': their program is in the script's text, `_program`) and
        the question Start's step asks them."""
        asked = opening.question
        if asked is None:
            return ["-", "-"]
        step = Denial(opening.user_id, asked.sim_number)
        return ["+", question(opening.operation, opening.context, opening.created_at, asked.given, step)]

    @staticmethod
    def _program(opening: Opening) -> str:
        """The rules' program (compiled once per rule set), in the text of the script Start runs for them
        (decision 0076); none when the rules decide nothing in the step."""
        asked = opening.question
        return "" if asked is None else compiled(asked.rules)

    async def get_challenge(self, challenge_id: str) -> Challenge:
        """The challenge as stored. ChallengeNotFound."""
        raw = await self._scripts.call(
            "get_challenge", self._client.hgetall(self.keys.challenge(challenge_id))
        )
        if not raw:
            raise ChallengeNotFound(challenge_id)
        return _challenge(cast("dict[bytes, bytes]", raw))

    async def record_verification(
        self, attempt: VerificationAttempt, lockout: LockoutPolicy
    ) -> VerificationOutcome:
        """Decide one attempt and count it for the user, atomically (see the port). ChallengeNotFound."""
        head = rec.challenge_event("challenge.verification", attempt.challenge_id, attempt.at)
        args = [
            rec.to_ms(attempt.at),
            attempt.op_digest.hex(),
            "1" if attempt.code_matches else "0",
            *self.keys.user_keys_beside(attempt.challenge_id),
            lockout.max_failures,
            lockout.first_block // rec.MS,
            lockout.longest_block // rec.MS,
            rec.iso(attempt.at),
            *rec.proof_id_fields(attempt.proof_id),
            attempt.notice,
            *self._lesson(attempt),
            self.keys.pending_beside(attempt.challenge_id),
            attempt.witness,
            *head,
            "op_digest", attempt.op_digest.hex(),
            *rec.context_fields(attempt.context),
        ]  # fmt: skip
        # One round trip on one slot: the challenge and its user share the place the id names (decision 0019).
        keys = [
            *self._refusal_keys(attempt.challenge_id),
            self.keys.outbox_of(attempt.challenge_id),
        ]  # a notice
        reply = await self._run("record_verification", keys, args)
        if reply[0] == b"not_found":
            raise ChallengeNotFound(attempt.challenge_id)
        result = VerifyResult(reply[0].decode())
        challenge = _challenge(rec.pairs(reply[1]))
        blocked_until = rec.from_ms(int(reply[2])) if int(reply[2]) else None
        if blocked_until is not None or (result is VerifyResult.VERIFIED and attempt.notice):
            # A block's notice, or the operation's (an unknown user's gets none: one take finds nothing).
            self._nudge.queued(self.keys.shard_of_challenge(attempt.challenge_id))
        left = attempts_left(result, challenge)
        return VerificationOutcome(result, left, challenge, "", blocked_until)

    def _lesson(self, attempt: VerificationAttempt) -> list[rec.Field]:
        """record_verification.lua's risk arguments: where the user's memory is and what a VERIFIED decision
        teaches it (decision 0032), or nothing to learn."""
        if attempt.risk is None:
            return NO_LESSON
        prefix = self.keys.user_risk_beside(attempt.challenge_id)
        return [prefix, *lesson_args(attempt.risk.seen, attempt.risk.limits)]

    async def cancel_challenge(self, challenge_id: str, at: datetime, context: RequestContext) -> Challenge:
        """Void an OPEN challenge. ChallengeNotFound, ChallengeClosed."""
        head = rec.challenge_event("challenge.cancel", challenge_id, at)
        args = [rec.to_ms(at), self.keys.pending_beside(challenge_id), *head, *rec.context_fields(context)]
        reply = await self._run("cancel_challenge", self._refusal_keys(challenge_id), args)
        if reply[0] == b"not_found":
            raise ChallengeNotFound(challenge_id)
        if reply[0] == b"closed":
            raise ChallengeClosed(challenge_id)
        return _challenge(rec.pairs(reply[1]))

    async def record_resend(
        self,
        challenge_id: str,
        at: datetime,
        context: RequestContext,
        charges: Sequence[Charge] = (),
        hold: str = "",
    ) -> Challenge:
        """Take one resend and its send units atomically (see the port). ChallengeNotFound, ChallengeClosed,
        ResendRefused, SendBudgetExhausted."""
        return (await self._resend(challenge_id, at, context, charges, hold, claim=None)).challenge

    async def record_resend_once(  # noqa: PLR0913 (record_resend's, and the claim)
        self,
        challenge_id: str,
        at: datetime,
        context: RequestContext,
        charges: Sequence[Charge],
        hold: str,
        *,
        claim: ResendClaim,
    ) -> Resent:
        """As record_resend, claiming the request id in the same step (see the port). InvalidRequest."""
        return await self._resend(challenge_id, at, context, charges, hold, claim=claim)

    async def _resend(  # noqa: PLR0913 (one script's arguments)
        self,
        challenge_id: str,
        at: datetime,
        context: RequestContext,
        charges: Sequence[Charge],
        hold: str,
        *,
        claim: ResendClaim | None,
    ) -> Resent:
        head = rec.challenge_event("challenge.resend", challenge_id, at)
        budget_keys, budget_args = self._budgets(charges)
        keys = [*self._refusal_keys(challenge_id), *budget_keys, self.keys.outbox_of(challenge_id)]
        if claim is not None:
            keys.append(self.keys.resend_request(claim.user_id, claim.request_id))
        user_key = self.keys.user_keys_beside(challenge_id)[0]
        args = [rec.to_ms(at), user_key, *budget_args, hold, *head, *rec.context_fields(context)]
        reply = await self._run("record_resend", keys, args)
        match reply[0]:
            case b"earlier":
                earlier = _challenge(rec.pairs(reply[1]))
                earlier = replace(earlier, resends=int(reply[2]))
                return Resent(earlier, reply[3].decode(), queued=reply[4] == 1)
            case b"other_challenge":
                raise InvalidRequest([FieldViolation("request_id", "was already used for another challenge")])
            case b"not_found":
                raise ChallengeNotFound(challenge_id)
            case b"closed":
                raise ChallengeClosed(challenge_id)
            case b"exhausted":
                raise ResendRefused(challenge_id, None)
            case b"too_soon":
                raise ResendRefused(challenge_id, timedelta(milliseconds=int(reply[1])))
            case b"user_blocked":
                raise UserBlocked(reply[2].decode(), timedelta(milliseconds=int(reply[1])))
            case b"budget":
                raise _exhausted(charges, reply)
        self._nudge.queued(self.keys.shard_of_challenge(challenge_id))  # the resend's SMS (decision 0060)
        return Resent(_challenge(rec.pairs(reply[1])))

    async def withdraw_resend(
        self, known: Challenge, at: datetime, context: RequestContext, request_id: str = "", hold: str = ""
    ) -> None:
        """Undo a resend whose other units were refused (see the port)."""
        challenge_id = known.challenge_id
        head = rec.challenge_event("challenge.resend", challenge_id, at)
        keys = [*self._challenge_keys(challenge_id), self.keys.send_budget("user", known.user_id)]
        if request_id:
            keys.append(self.keys.resend_request(known.user_id, request_id))
        args = [rec.to_ms(at), rec.to_ms(known.last_sent_at), hold, *head, *rec.context_fields(context)]
        await self._run("withdraw_resend", keys, args)

    async def record_delivery(
        self, challenge_id: str, state: DeliveryState, provider_ref: str, at: datetime, provider_id: str = ""
    ) -> bool:
        """Note what the SMS gateway said, with the provider's own message id if any; whether it moved the
        message forward. ChallengeNotFound."""
        head = rec.challenge_event("challenge.delivery", challenge_id, at)
        args = [state.value, provider_ref, *head, "provider_ref", provider_ref]
        if provider_id:
            args += ["provider_id", provider_id]
        recorded = await self._run("record_delivery", self._challenge_keys(challenge_id), args)
        if recorded == 0:
            raise ChallengeNotFound(challenge_id)
        return bool(recorded == 1)

    async def start_claimed(self, user_id: str, request_id: str) -> bool:
        """Whether the request id's claim is held (see the port): it expires with the challenge's lifetime."""
        key = self.keys.start_request(user_id, request_id)
        return bool(await self._scripts.call("start_claimed", self._client.exists(key)))

    async def pending_challenges(self, user_id: str, expiring_after: datetime) -> list[str]:
        """The indexed ids expiring after `expiring_after`; older entries are dropped in the same round trip.

        Not a MULTI: out of memory Redis refuses every command queued in one, and the voiding after a block
        started by a Verify, which runs out of memory, read nothing (decision 0111). The trim only frees, and
        the read leaves out what it drops: the two need not be one step."""
        key, cutoff = self.keys.user_pending(user_id), rec.to_ms(expiring_after)

        async def trimmed() -> list[bytes]:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.zremrangebyscore(key, "-inf", cutoff)
                pipe.zrangebyscore(key, f"({cutoff}", "+inf")
                _, ids = await pipe.execute()
            return cast("list[bytes]", ids)

        ids = await self._scripts.call("pending_challenges", trimmed())
        return [challenge_id.decode() for challenge_id in ids]

    async def void_challenge(self, challenge_id: str, voiding: Voiding) -> VoidOutcome:
        """Cancel an OPEN challenge, or spend an id never opened (see the port)."""
        head = rec.challenge_event("challenge.void", challenge_id, voiding.at)
        reason = ["void_reason", voiding.reason.value, *rec.provenance_fields(voiding.provenance)]
        args = [voiding.user_id, rec.counts_field(voiding.opened_before), *head, *reason]
        keys = [*self._challenge_keys(challenge_id), self.keys.user_pending(voiding.user_id)]
        if voiding.reason is VoidReason.SEND_BUDGET:
            # The user's unit its step took comes back, and its request id's claim goes: a retry starts
            # afresh (decision 0046).
            keys.append(self.keys.send_budget("user", voiding.user_id))
            if voiding.provenance.request_id:
                keys.append(self.keys.start_request(voiding.user_id, voiding.provenance.request_id))
        answer = await self._run("void_challenge", keys, args)
        return VoidOutcome(answer.decode())

    async def consume_challenge(self, consumption: Consumption) -> Challenge:
        """Spend a VERIFIED challenge once for a number change (see the port)."""
        challenge_id = consumption.challenge_id
        args = [
            rec.to_ms(consumption.at),
            consumption.user_id,
            consumption.op_digest.hex(),
            consumption.request_id,
            self._retention // rec.MS,
            *rec.challenge_event("challenge.consume", challenge_id, consumption.at),
            "op_digest", consumption.op_digest.hex(),
            "purpose", "change_phone",
            "request_id", consumption.request_id,
            *rec.context_fields(consumption.context),
        ]  # fmt: skip
        reply = await self._run("consume_challenge", self._refusal_keys(challenge_id), args)
        match reply[0]:
            case b"not_found" | b"stale":
                raise ChallengeNotFound(challenge_id)
            case b"mismatch":
                raise ChallengeMismatch(challenge_id)
            case b"not_verified":
                raise ChallengeNotVerified(challenge_id)
            case b"used":
                raise ChallengeConsumed(challenge_id)
        return _challenge(rec.pairs(reply[1]))

    # SMS send budgets (docs/decisions/0011, 0014): opening and resending take their units.
    def _budgets(self, charges: Sequence[Charge]) -> tuple[list[str], list[rec.Field]]:
        """The budgets' keys, and the script arguments: their count, then each one's limit and window."""
        keys = [self.keys.send_budget(c.subject.kind.value, c.subject.key) for c in charges]
        args: list[rec.Field] = [len(charges)]
        for charge in charges:
            args += [charge.limit, charge.window // rec.MS]
        return keys, args

    def _challenge_keys(self, challenge_id: str) -> list[str]:
        return [self.keys.challenge(challenge_id), self.keys.challenge_journal(challenge_id)]

    def _refusal_keys(self, challenge_id: str) -> list[str]:
        """The challenge's keys and its refusal counts, for the scripts that count repeated refusals."""
        return [*self._challenge_keys(challenge_id), self.keys.challenge_refusals(challenge_id)]


_challenge = stored_challenge


def _refused(opening: Opening, reply: list[Any], charges: Sequence[Charge]) -> SesameError:
    """The typed refusal open_challenge.lua answered (nothing was written)."""
    user_id, now = opening.user_id, rec.to_ms(opening.created_at)
    match reply[0]:
        case b"blocked":
            return UserBlocked(user_id, (int(reply[1]) - now) * rec.MS)
        case b"cooling":
            return PhoneCooling(user_id, (int(reply[1]) - now) * rec.MS)
        case b"exists":
            return ChallengeAlreadyExists(opening.challenge_id)
        case b"exhausted":
            return _exhausted(charges, reply)
        case b"open_full":  # as many open as the step reads in flight: the user's budget (decision 0095)
            return SendBudgetExhausted(BudgetKind.USER.value, timedelta(milliseconds=int(reply[1])))
    refusal = _USER_REFUSALS.get(reply[0])
    return refusal(user_id) if refusal else StoreUnavailable(f"open_challenge answered {reply[0]!r}")


_USER_REFUSALS: Final[dict[bytes, type[SesameError]]] = {
    b"not_found": UserNotFound,
    b"not_active": UserNotActive,
    b"phone_changed": SecurePhoneChanged,
    b"phone_unchanged": PhoneUnchanged,
}


def _opening_of(challenge: Challenge, context: RequestContext) -> Opening:
    """The opening a whole challenge stands for (open_challenge: no request id, no cooling, any country)."""
    return Opening(
        challenge_id=challenge.challenge_id,
        user_id=challenge.user_id,
        operation=challenge.operation,
        nonce=challenge.nonce,
        key_version=challenge.key_version,
        digits=challenge.digits,
        created_at=challenge.created_at,
        expires_at=challenge.expires_at,
        max_attempts=challenge.max_attempts,
        max_resends=challenge.max_resends,
        resend_spacing=challenge.resend_spacing,
        cooled=False,
        countries=frozenset(),
        budget=SendBudget(),
        context=context,
    )


_NO_NUMBER_BUDGET: Final[list[rec.Field]] = [-1, 0, 0, "", ""]


def _exhausted(charges: Sequence[Charge], reply: list[Any]) -> SendBudgetExhausted:
    """The refusal a script answered as (outcome, index of the spent budget, wait in ms)."""
    subject = charges[int(reply[1])].subject
    return SendBudgetExhausted(subject.kind.value, timedelta(milliseconds=int(reply[2])))


def attempts_left(result: VerifyResult, challenge: Challenge) -> int:
    """What the caller may still submit: only a wrong code on a live challenge leaves attempts."""
    return challenge.attempts_left if result is VerifyResult.WRONG_CODE else 0


_: type[Challenges] = RedisChallenges


def _trace_context() -> str:
    """The current span's W3C traceparent ('' when nothing is traced): the outbox entry carries it, so that
    the SMS's dispatch joins the Start's trace (decision 0040). Nothing is asked while tracing is off: no span
    is then current, and asking cost ~1 % of a worker (decision 0049)."""
    if not recording():
        return ""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent", "")
