"""The Challenges fake: challenges in `Memory` with the semantics of `RedisChallenges` (the contract
suite holds them together); the user's half of a verification and the pending index in the same step, as in
Redis."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from sesame.server.domain import budgets
from sesame.server.domain.budgets import BudgetKind, BudgetSubject, Charge
from sesame.server.domain.destinations import check_destination
from sesame.server.domain.dispatching import UNCONFIRMED, UNSENT, QueuedSms, given_up
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
    UserBlocked,
    UserNotActive,
    UserNotFound,
)
from sesame.server.domain.lifecycle import (
    CLOCK_SKEW,
    Consumption,
    UserNotice,
    Voiding,
    VoidOutcome,
    VoidReason,
)
from sesame.server.domain.model import (
    Challenge,
    ChallengeStatus,
    DeliveryState,
    LockoutPolicy,
    RequestContext,
    User,
    UserStatus,
    VerificationAttempt,
    VerificationOutcome,
    VerifyResult,
)
from sesame.server.domain.opening import Opened, Opening
from sesame.server.domain.operation import ChangePhone, digest, kind
from sesame.server.domain.ports import Challenges
from sesame.server.domain.privacy import mask_phone
from sesame.server.domain.resending import ResendClaim, Resent
from sesame.server.domain.risk import RiskAssessment, RiskDecision, RiskReason
from sesame.server.domain.risk_flow import assess
from sesame.server.domain.risk_signals import (
    IN_FLIGHT_READ,
    InFlight,
    RiskHistory,
    in_flight_field,
    in_flight_of,
)
from sesame.server.domain.sent_text import SentText
from tests.fakes.journal_fields import context_fields, iso, ms, provenance_fields, unix_ms
from tests.fakes.memory import Memory, ResendClaimed
from tests.fakes.outbox import MemoryOutbox
from tests.fakes.risk_memory import RiskDenial, journal_denial, learn
from tests.fakes.users import MemoryUsers

_TERMINAL = {
    ChallengeStatus.VERIFIED: VerifyResult.ALREADY_USED,
    ChallengeStatus.VOIDED: VerifyResult.VOIDED,
    ChallengeStatus.CANCELLED: VerifyResult.VOIDED,
    ChallengeStatus.LOCKED: VerifyResult.LOCKED,
}

# record_verification.lua: the answers that change nothing, journaled the first time of their kind only.
_REFUSED = {*_TERMINAL.values(), VerifyResult.EXPIRED, VerifyResult.USER_BLOCKED}

# consume_challenge.lua: a stale challenge reads as purged.
_CONSUME_REFUSALS: dict[str, type[SesameError]] = {
    "stale": ChallengeNotFound,
    "mismatch": ChallengeMismatch,
    "not_verified": ChallengeNotVerified,
    "used": ChallengeConsumed,
}

# record_delivery.lua: a challenge's messages, and its reports that moved nothing, journaled at most.
_MAX_MESSAGES, _MAX_IGNORED = 32, 8
# record_delivery.lua: each message only moves forward, DELIVERED and FAILED are final.
_RANK = {
    DeliveryState.PENDING: 0,
    DeliveryState.QUEUED: 0,
    DeliveryState.SENT: 1,
    DeliveryState.DELIVERED: 2,
    DeliveryState.FAILED: 2,
    DeliveryState.EXPIRED: 2,
}


def _opened(opening: Opening, user: User) -> Challenge:
    """The challenge an opening opens for the user's current number, client and locale."""
    return Challenge(
        challenge_id=opening.challenge_id,
        user_id=user.user_id,
        client_id=user.client_id,
        operation=opening.operation,
        nonce=opening.nonce,
        key_version=opening.key_version,
        digits=opening.digits,
        phone=user.secure_phone,
        locale=user.locale,
        created_at=opening.created_at,
        expires_at=opening.expires_at,
        max_attempts=opening.max_attempts,
        attempts=0,
        status=ChallengeStatus.OPEN,
        delivery=DeliveryState.QUEUED,
        max_resends=opening.max_resends,
        resend_spacing=opening.resend_spacing,
        resends=0,
        last_sent_at=opening.created_at,
        risk=opening.risk,
        start_factor=opening.context.first_factor,
        payee_verification=opening.payee_verification,
    )


def _best_news(states: Iterable[DeliveryState], none: DeliveryState = DeliveryState.PENDING) -> DeliveryState:
    """The challenge's state over its messages, as record_delivery.lua and record_dispatch.lua: delivered,
    else sent, else expired, else failed (`none`: no message settled yet)."""
    seen = set(states)
    for state in (DeliveryState.DELIVERED, DeliveryState.SENT, DeliveryState.EXPIRED, DeliveryState.FAILED):
        if state in seen:
            return state
    return none


def _kept(risk: RiskAssessment | None) -> RiskAssessment | None:
    """The assessment as the challenge keeps it (redis_records.risk_hash_fields): no descriptions, the
    payee's instant to the millisecond."""
    if risk is None:
        return None
    added = None if risk.payee_added_at is None else ms(risk.payee_added_at)
    reasons = tuple(RiskReason(reason.code, "") for reason in risk.reasons)
    return dataclasses.replace(risk, reasons=reasons, payee_added_at=added)


class _WallClock:
    """The real time: when an outbox entry became pending, for a store given no clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


_WALL = _WallClock()


class MemoryChallenges:
    """Challenges in the shared memory, under its one lock; the SMS they queue in `outbox`."""

    def __init__(self, memory: Memory) -> None:
        self._m = memory
        self.outbox = MemoryOutbox(self, memory._purge_clock or _WALL)  # what Start and Resend queue
        memory.outbox = self.outbox

    async def open_challenge(
        self, challenge: Challenge, context: RequestContext, charges: Sequence[Charge] = ()
    ) -> None:
        async with self._m._lock:
            self._open(challenge, context, charges)

    async def start_challenge(self, opening: Opening) -> Opened:
        async with self._m._lock:
            user = self._m._users.get(opening.user_id)
            if user is None:
                raise UserNotFound(opening.user_id)
            now = ms(opening.created_at)
            if user.status is not UserStatus.ACTIVE:
                raise UserNotActive(user.user_id)
            if user.blocked_until is not None and user.is_blocked(now):
                raise UserBlocked(user.user_id, user.blocked_until - now)
            if opening.cooled and user.cooling_until is not None and user.is_cooling(now):
                raise PhoneCooling(user.user_id, user.cooling_until - now)
            check_destination(user.secure_phone, opening.countries)
            change = opening.operation
            if isinstance(change, ChangePhone) and change.new_phone == user.secure_phone:
                raise PhoneUnchanged(user.user_id)  # as open_challenge.lua: compared in the step
            earlier = self._earlier(opening)
            if earlier is not None:
                return Opened(earlier, queued=False)
            risk = opening.risk
            if opening.question is not None:  # as open_challenge.lua: the rules decide in the step (0045)
                risk = self._decided(opening, user)
            challenge = dataclasses.replace(_opened(opening, user), risk=risk)
            charges, _ = budgets.held_charges(
                budgets.charges(opening.budget, user.user_id, user.secure_phone, opening.context.caller)
            )  # the user's unit: the others are held by SendUnits (decision 0046)
            self._open(challenge, opening.context, charges, opening.witness)
            if opening.request_id:
                self._m._requests[(user.user_id, opening.request_id)] = (
                    challenge.challenge_id,
                    opening.expires_at,
                )
            # The first answer tells the reasons; the kept challenge has their codes only (as in Redis).
            return Opened(self._m._challenges[challenge.challenge_id], queued=True)

    def _decided(self, opening: Opening, user: User) -> RiskAssessment:
        """The rules on the user's memory, as _risk_rules.lua in open_challenge.lua: the Python evaluator.
        SimNumberMoved; a DENY is journaled in the user's journal and raised (RiskDenied)."""
        asked = opening.question
        assert asked is not None
        if asked.sim_number is not None and asked.sim_number != user.secure_phone:
            raise SimNumberMoved(user.secure_phone)
        history = self._m.risk_histories.get(user.user_id, RiskHistory())
        now = ms(opening.created_at)
        operation, context = opening.operation, opening.context
        decided = assess(
            asked=asked,
            user=user,
            history=history,
            operation=operation,
            context=context,
            now=now,
            in_flight=self._in_flight(user.user_id, now),
        )
        kept = _kept(decided)
        assert kept is not None
        if decided.decision is RiskDecision.DENY:
            denial = RiskDenial(
                user.user_id,
                now,
                kind(opening.operation).name.lower(),
                decided.codes,
                decided.rules,
                decided.rules_version,
                opening.context,
                opening.operation,
                user.secure_phone,
            )
            claim = (user.user_id, opening.request_id)
            denied = f"-{digest(opening.operation).hex()}"
            again = bool(opening.request_id) and self._m._requests.get(claim, ("", None))[0] == denied
            # As open_challenge.lua: a request id is denied once, its retries journal nothing more; it is
            # claimed only with a denial journaled, the user's first of the hour (decision 0137).
            if not again and journal_denial(self._m, denial) and opening.request_id:
                self._m._requests[claim] = (denied, opening.expires_at)
            told = asked.rules.described(kept)
            descriptions = tuple(reason.description for reason in told.reasons)
            raise RiskDenied(
                user.user_id, told.codes, descriptions, told.rules_version, told.rules, again=again
            )
        return kept

    def _in_flight(self, user_id: str, now: datetime) -> list[InFlight]:
        """The user's open transfers and new beneficiaries, as the step reads them from its pending index
        (the IN_FLIGHT_READ unexpired that expire last) and their hashes' `risk_open` (_risk_rules.lua)."""
        indexed = self._m._pending.get(user_id, {})
        live = sorted(
            (cid for cid, expires in indexed.items() if ms(now) < expires),
            key=lambda cid: (indexed[cid], cid),
            reverse=True,
        )[:IN_FLIGHT_READ]
        flying = []
        for challenge_id in live:
            challenge = self._m._challenges.get(challenge_id)
            if challenge is None:
                continue
            field = in_flight_field(challenge.operation)
            if field is not None and challenge.status is ChallengeStatus.OPEN:
                flying.append(in_flight_of(field, challenge.op_digest.hex(), challenge.created_at))
        return flying

    def _earlier(self, opening: Opening) -> Challenge | None:
        """The live challenge the opening's request id already opened (as open_challenge.lua)."""
        if not opening.request_id:
            return None
        claim = self._claim(opening.user_id, opening.request_id)
        if claim is None:
            return None
        if claim[0].startswith("-"):  # denied before: for another operation, a conflict (open_challenge.lua)
            if claim[0] != f"-{digest(opening.operation).hex()}":
                raise InvalidRequest([FieldViolation("request_id", "was already used for another operation")])
            return None
        earlier = self._m._live(claim[0])
        if earlier is not None and earlier.op_digest != digest(opening.operation):
            raise InvalidRequest([FieldViolation("request_id", "was already used for another operation")])
        return earlier

    def _open(
        self, challenge: Challenge, context: RequestContext, charges: Sequence[Charge], witness: str = ""
    ) -> None:
        """open_challenge.lua's step for a whole challenge (the caller holds the lock)."""
        cid = challenge.challenge_id
        user = self._m._users.get(challenge.user_id)
        if user is None:
            raise UserNotFound(challenge.user_id)
        if user.status is not UserStatus.ACTIVE:
            raise UserNotActive(user.user_id)
        if user.blocked_until is not None and user.is_blocked(ms(challenge.created_at)):
            raise UserBlocked(user.user_id, user.blocked_until - ms(challenge.created_at))
        if user.secure_phone != challenge.phone:
            raise SecurePhoneChanged(user.user_id)
        if self._m._live(cid) is not None or cid in self._m._challenge_journals:
            raise ChallengeAlreadyExists(cid)
        now = ms(challenge.created_at)
        open_until = sorted(t for t in self._m._pending.get(user.user_id, {}).values() if t > now)
        if len(open_until) >= IN_FLIGHT_READ:  # as open_challenge.lua: wait for the first to expire (0095)
            raise SendBudgetExhausted(BudgetKind.USER.value, open_until[0] - now)
        self._charge(charges, challenge.created_at, cid)
        self._m._track(user.user_id, cid, challenge.expires_at, challenge.created_at - CLOCK_SKEW)
        stored = dataclasses.replace(
            challenge,
            created_at=ms(challenge.created_at),
            expires_at=ms(challenge.expires_at),
            last_sent_at=ms(challenge.last_sent_at),
            risk=_kept(challenge.risk),
        )
        self._m._challenges[cid] = stored
        self._m._opened_changes[cid] = self._m._user_changes.get(
            user.user_id, (0, 0)
        )  # as open_challenge.lua
        self.outbox.queue(cid, ms(challenge.created_at), unit=cid)  # as open_challenge.lua, in the same step
        self._m._append(
            stored,
            "challenge.opened",
            challenge.created_at,
            "opened",
            {
                "phone": mask_phone(stored.phone),
                "expires_at": iso(stored.expires_at),
                "key_version": str(stored.key_version),
                "op": kind(stored.operation).name.lower(),
                **context_fields(context),
                **(challenge.risk.journal_fields() if challenge.risk is not None else {}),
                **({"witness": witness} if witness else {}),
            },
        )

    async def get_challenge(self, challenge_id: str) -> Challenge:
        return self._m._existing(challenge_id)

    async def record_verification(
        self, attempt: VerificationAttempt, lockout: LockoutPolicy
    ) -> VerificationOutcome:
        async with self._m._lock:
            challenge = self._m._existing(attempt.challenge_id)  # a forged tag is another id: not found
            result = _TERMINAL.get(challenge.status)
            if result is None and ms(attempt.at) >= challenge.expires_at:
                result = VerifyResult.EXPIRED
            user = self._m._users.get(challenge.user_id)
            if result is None and user is not None and user.is_blocked(ms(attempt.at)):
                result = VerifyResult.USER_BLOCKED  # as record_verification.lua: code_matches ignored
            if result is None and self._stale(challenge, user):  # as record_verification.lua: voided now
                challenge = dataclasses.replace(challenge, status=ChallengeStatus.VOIDED)
                self._m._challenges[challenge.challenge_id] = challenge
                result = VerifyResult.VOIDED
            if result is None:
                decided = _decide(challenge, attempt)
                challenge, result = decided.challenge, decided.result
                self._m._challenges[challenge.challenge_id] = challenge
            self._m._untrack(challenge)
            if result in _REFUSED and not self._m._refused(
                challenge.challenge_id, "challenge.verification", result.value, attempt.at
            ):
                return VerificationOutcome(result, 0, challenge)
            self._m._append(
                challenge,
                "challenge.verification",
                attempt.at,
                result.value,
                {
                    "op_digest": attempt.op_digest.hex(),
                    **context_fields(attempt.context),
                    **({"witness": attempt.witness} if result is VerifyResult.VERIFIED else {}),
                },
            )
            if result is VerifyResult.VERIFIED and attempt.proof_id is not None:
                # As record_verification.lua: the decision names its proof; the JWS is kept later.
                proof_id = {"jti": attempt.proof_id.jti, "kid": attempt.proof_id.kid}
                self._m._append(challenge, "challenge.proof", attempt.at, "issued", proof_id)
            started = self._m._count_for_user(
                challenge.user_id, challenge.challenge_id, result, attempt.at, lockout
            )
            # As record_verification.lua: the notices are queued in the step (docs/decisions/0033).
            if started is not None:
                self.outbox.queue(challenge.challenge_id, ms(attempt.at), "user_blocked", started)
            if result is VerifyResult.VERIFIED and attempt.notice and user is not None:
                self.outbox.queue(challenge.challenge_id, ms(attempt.at), attempt.notice)
            left = challenge.attempts_left if result is VerifyResult.WRONG_CODE else 0
            # As the reply's HGETALL: the counts the challenge opened under (decision 0056).
            challenge = dataclasses.replace(
                challenge, opened_changes=self._m._opened_changes.get(challenge.challenge_id)
            )
            if result is VerifyResult.VERIFIED and attempt.risk is not None and user is not None:
                # As record_verification.lua: the decision's step feeds the user's memory (decision 0032).
                seen = dataclasses.replace(attempt.risk.seen, user_id=user.user_id)
                learn(self._m.risk_histories, seen, attempt.risk.limits)
            return VerificationOutcome(result, left, challenge, "", started)

    async def cancel_challenge(self, challenge_id: str, at: datetime, context: RequestContext) -> Challenge:
        async with self._m._lock:
            challenge = self._m._existing(challenge_id)
            if challenge.status is not ChallengeStatus.OPEN or ms(at) >= challenge.expires_at:
                if self._m._refused(challenge_id, "challenge.cancel", "refused", at):
                    self._m._append(challenge, "challenge.cancel", at, "refused", context_fields(context))
                raise ChallengeClosed(challenge_id)
            challenge = dataclasses.replace(challenge, status=ChallengeStatus.CANCELLED)
            self._m._challenges[challenge_id] = challenge
            self._m._untrack(challenge)
            self._m._append(challenge, "challenge.cancel", at, "cancelled", context_fields(context))
            return challenge

    async def record_resend(
        self,
        challenge_id: str,
        at: datetime,
        context: RequestContext,
        charges: Sequence[Charge] = (),
        hold: str = "",
    ) -> Challenge:
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
        return await self._resend(challenge_id, at, context, charges, hold, claim=claim)

    async def _resend(  # noqa: PLR0913 (record_resend.lua's arguments)
        self,
        challenge_id: str,
        at: datetime,
        context: RequestContext,
        charges: Sequence[Charge],
        hold: str,
        *,
        claim: ResendClaim | None,
    ) -> Resent:
        async with self._m._lock:
            challenge = self._m._existing(challenge_id)
            refusal: ChallengeClosed | ResendRefused | UserBlocked | None = None
            user = self._m._users.get(challenge.user_id)
            ended = challenge.status is not ChallengeStatus.OPEN or ms(at) >= challenge.expires_at
            closed = ended or self._stale(challenge, user)
            key = None if claim is None else (claim.user_id, claim.request_id)
            claimed = self._claimed_resend(challenge, key, at)
            if claimed is not None and not closed:
                # As record_resend.lua: the request id's resend answered again, nothing taken (decision 0065).
                earlier = dataclasses.replace(challenge, resends=claimed.resends)
                return Resent(earlier, claimed.hold, queued=self.outbox.holds(claimed.entry_id))
            blocked = user is not None and user.blocked_until is not None and user.is_blocked(ms(at))
            if ended or (closed and not blocked):  # as record_resend.lua: the block said first
                refusal, outcome = ChallengeClosed(challenge_id), "closed"
            elif blocked and user is not None and user.blocked_until is not None:
                refusal, outcome = UserBlocked(user.user_id, user.blocked_until - ms(at)), "user_blocked"
            elif challenge.resends_left == 0:
                refusal, outcome = ResendRefused(challenge_id, None), "exhausted"
            elif ms(at) < challenge.next_send_at:
                refusal, outcome = ResendRefused(challenge_id, challenge.next_send_at - ms(at)), "too_soon"
            else:
                self._charge(charges, at, hold)  # a spent budget raises before anything is written
                challenge = dataclasses.replace(challenge, resends=challenge.resends + 1, last_sent_at=ms(at))
                self._m._challenges[challenge_id] = challenge
                entry_id = self.outbox.queue(challenge_id, ms(at), hold=hold, unit=hold)
                if key is not None:
                    self._m._resend_requests[key] = ResendClaimed(
                        challenge_id, challenge.resends, hold, entry_id, challenge.expires_at
                    )
                outcome = "resent"
            if refusal is None or self._m._refused(challenge_id, "challenge.resend", outcome, at):
                self._m._append(
                    challenge,
                    "challenge.resend",
                    at,
                    outcome,
                    {**context_fields(context), "resends": str(challenge.resends)},
                )
            if refusal is not None:
                raise refusal
            return Resent(challenge)

    def _claimed_resend(
        self, challenge: Challenge, key: tuple[str, str] | None, at: datetime
    ) -> ResendClaimed | None:
        """The request id's claim on this challenge (decision 0065); InvalidRequest when another challenge
        claimed it. Expired with its challenge, as the claim's PEXPIREAT."""
        claimed = None if key is None else self._m._resend_requests.get(key)
        if claimed is None or ms(at) >= claimed.until:
            return None
        if claimed.challenge_id != challenge.challenge_id:
            raise InvalidRequest([FieldViolation("request_id", "was already used for another challenge")])
        return claimed

    async def withdraw_resend(
        self, known: Challenge, at: datetime, context: RequestContext, request_id: str = "", hold: str = ""
    ) -> None:
        async with self._m._lock:
            if request_id:
                self._m._resend_requests.pop((known.user_id, request_id), None)
            challenge = self._m._live(known.challenge_id)
            if challenge is None or challenge.last_sent_at != ms(at) or challenge.resends < 1:
                return
            challenge = dataclasses.replace(
                challenge, resends=challenge.resends - 1, last_sent_at=ms(known.last_sent_at)
            )
            self._m._challenges[known.challenge_id] = challenge
            self._m._unit_back(challenge.user_id, hold)  # its exact unit (decision 0101)
            fields = {**context_fields(context), "resends": str(challenge.resends)}
            self._m._append(challenge, "challenge.resend", at, "withdrawn", fields)

    async def record_delivery(
        self, challenge_id: str, state: DeliveryState, provider_ref: str, at: datetime, provider_id: str = ""
    ) -> bool:
        async with self._m._lock:
            existing = self._m._existing(challenge_id)
            messages = self._m._messages.setdefault(challenge_id, {})
            before = messages.get(provider_ref)
            if before is None and len(messages) >= _MAX_MESSAGES:
                return False  # none of the challenge's messages: dropped, as record_delivery.lua does
            moved = before is None or _RANK[state] > _RANK[before]
            if moved:
                messages[provider_ref] = state
            elif (ignored := self._m._ignored_reports.get(challenge_id, 0)) >= _MAX_IGNORED:
                return False  # a report that moves nothing, past the few journaled
            else:
                self._m._ignored_reports[challenge_id] = ignored + 1
            challenge = dataclasses.replace(existing, delivery=_best_news(messages.values()))
            self._m._challenges[challenge_id] = challenge
            extra = {"provider_ref": provider_ref, "delivery": challenge.delivery.value}
            if provider_id:
                extra["provider_id"] = provider_id
            self._m._append(challenge, "challenge.delivery", at, state.value, extra)
            return moved

    async def record_dispatch(  # noqa: PLR0913 (the entry, what became of it, and what is journaled with it)
        self,
        queued: QueuedSms,
        state: DeliveryState,
        provider_ref: str,
        at: datetime,
        text: SentText | None = None,
        *,
        provider_ids: tuple[str, ...] = (),
        unconfirmed: tuple[str, ...] = (),
        held: bool = False,
        unit: str = "",
    ) -> bool:
        """record_dispatch.lua's record (MemoryOutbox.settle): the message's state, from queued; False when
        this attempt's send was recorded already (decision 0056: nothing written). Expired, the user's `unit`
        is given back (the entry's, in its first hand-out: '' none; decision 0101)."""
        async with self._m._lock:
            existing = self._m._live(queued.challenge_id)
            if existing is None:
                return True
            if state is DeliveryState.EXPIRED:
                self._m._unit_back(existing.user_id, unit)
            dispatched = self._m._dispatched.setdefault(queued.challenge_id, {})
            if queued.attempt and dispatched.get(queued.entry_id) == queued.attempt:
                return False
            if queued.attempt:
                dispatched[queued.entry_id] = queued.attempt
            messages = self._m._messages.setdefault(queued.challenge_id, {})
            key = provider_ref or f"{state.value}:{queued.entry_id}"
            before = messages.get(key)
            if before is None or _RANK[state] > _RANK[before]:
                messages[key] = state
            challenge = dataclasses.replace(
                existing, delivery=_best_news(messages.values(), DeliveryState.QUEUED)
            )
            self._m._challenges[queued.challenge_id] = challenge
            extra = {"provider_ref": provider_ref, **({} if text is None else text.journal_fields())}
            if provider_ids:
                extra["provider_id"] = " ".join(provider_ids)
            if unconfirmed:
                extra["unconfirmed_before"] = " ".join(unconfirmed)
            if held:
                extra["provider_queued"] = "true"
            extra["delivery"] = challenge.delivery.value
            self._m._append(challenge, "challenge.delivery", at, state.value, extra)
            return True

    async def start_claimed(self, user_id: str, request_id: str) -> bool:
        return self._claim(user_id, request_id) is not None

    def _claim(self, user_id: str, request_id: str) -> tuple[str, datetime] | None:
        """The request id's claim, unless expired (Redis's key expires with the challenge's lifetime)."""
        now = self._m._purge_clock.now() if self._m._purge_clock is not None else None
        claim = self._m._requests.get((user_id, request_id))
        return None if claim is None or (now is not None and now >= claim[1]) else claim

    async def pending_challenges(self, user_id: str, expiring_after: datetime) -> list[str]:
        async with self._m._lock:
            pending = self._m._forget(user_id, expiring_after)
            return [cid for cid, _ in sorted(pending.items(), key=lambda item: (item[1], item[0]))]

    def peek_challenge(self, challenge_id: str) -> Challenge | None:
        """The challenge as stored now, or None (for the fake outbox's dead letter line)."""
        return self._m._live(challenge_id)

    async def record_failed_try(  # noqa: PLR0913 (record_failed_try.lua's arguments)
        self,
        queued: QueuedSms,
        failure: str,
        tries: int,
        allowed: int,
        at: datetime,
        *,
        text: SentText | None = None,
        unit: str = "",
    ) -> str:
        """record_failed_try.lua's record (MemoryOutbox.fail): '' (another try), the dead letter's reason,
        or `missing`; a dead letter for a failure named before any send gives back the user's `unit` (the
        entry's, in its first hand-out: '' none; decision 0101)."""
        async with self._m._lock:
            existing = self._m._live(queued.challenge_id)
            if existing is None:
                return "missing"
            earlier = queued.challenge_id in self._m._unconfirmed
            reason = given_up(
                failure, expired=at >= existing.expires_at, allowed=allowed, tries=tries, earlier=earlier
            )
            if failure in UNCONFIRMED:
                self._m._unconfirmed.add(queued.challenge_id)
            state = DeliveryState.EXPIRED if reason == "expired" else DeliveryState.FAILED
            extra = {"failure": failure, "tries": str(tries)}
            if text is not None:
                extra |= text.journal_fields()
            if not reason:
                extra["delivery"] = existing.delivery.value
                self._m._append(existing, "challenge.delivery", at, "try_failed", extra)
                return ""
            if failure in UNSENT:
                self._m._unit_back(existing.user_id, unit)
            messages = self._m._messages.setdefault(queued.challenge_id, {})
            messages.setdefault(f"{state.value}:{queued.entry_id}", state)
            delivery = _best_news(messages.values(), DeliveryState.QUEUED)
            challenge = dataclasses.replace(
                existing,
                delivery=delivery,
                delivery_reason=reason if delivery is state else existing.delivery_reason,
            )
            self._m._challenges[queued.challenge_id] = challenge
            extra |= {"reason": reason, "delivery": delivery.value}
            self._m._append(challenge, "challenge.dead_letter", at, state.value, extra)
            return reason

    async def record_notice(self, user_id: str, notice: UserNotice) -> None:
        """record_notice.lua's journal entry (MemoryOutbox.settle_notice): the user's notice, masked."""
        await MemoryUsers(self._m).record_user_notice(user_id, notice)

    def withhold(
        self, queued: QueuedSms, tries: int, at: datetime, unit: str = ""
    ) -> tuple[Challenge, str] | None:
        """As take_outbox.lua for a code SMS whose user changed since its challenge opened (decision 0054):
        the challenge voided if open and dead-lettered, journaled, the user's `unit` given back (the entry's,
        in its first hand-out: '' none; decision 0101); its reason. None: it may go."""
        challenge = self._m._live(queued.challenge_id)
        if challenge is None or queued.notice:
            return None
        counted = self._m._user_changes.get(challenge.user_id, (0, 0))
        moved = self._moved(challenge, self._m._users.get(challenge.user_id), counted)
        reason = _withheld_for(challenge, self._m._users.get(challenge.user_id), moved)
        if not reason:
            return None
        if challenge.status is ChallengeStatus.OPEN:
            challenge = dataclasses.replace(challenge, status=ChallengeStatus.VOIDED)
            self._m._untrack(challenge)
            extra = {"void_reason": reason, "actor": "dispatcher"}
            self._m._append(challenge, "challenge.void", at, "voided", extra)
        self._m._unit_back(challenge.user_id, unit)
        messages = self._m._messages.setdefault(queued.challenge_id, {})
        messages.setdefault(f"failed:{queued.entry_id}", DeliveryState.FAILED)
        delivery = _best_news(messages.values(), DeliveryState.QUEUED)
        challenge = dataclasses.replace(
            challenge,
            delivery=delivery,
            delivery_reason=reason if delivery is DeliveryState.FAILED else challenge.delivery_reason,
        )
        self._m._challenges[queued.challenge_id] = challenge
        extra = {"failure": reason, "tries": str(tries), "reason": reason, "delivery": delivery.value}
        self._m._append(challenge, "challenge.dead_letter", at, "failed", extra)
        return challenge, reason

    def _stale(self, challenge: Challenge, user: User | None) -> bool:
        """The user is no longer active, the challenge's number is no longer the secure one, or either changed
        since the challenge opened, even if undone since (its voiding, a step after the change, may not have
        run yet, nor ever: as record_verification.lua and record_resend.lua)."""
        if user is None:
            return False
        moved = self._moved(challenge, user, self._m._user_changes.get(challenge.user_id, (0, 0)))
        return user.status is not UserStatus.ACTIVE or user.secure_phone != challenge.phone or any(moved)

    def _moved(self, challenge: Challenge, user: User | None, counted: tuple[int, int]) -> tuple[bool, bool]:
        """Whether the user's status, and its number, changed since the challenge opened: by the counts
        (decision 0056), or for a challenge opened without them, by the times (decision 0054)."""
        opened = self._m._opened_changes.get(challenge.challenge_id)
        if opened is not None:
            return counted[0] > opened[0], counted[1] > opened[1]
        if user is None:
            return False, False
        created = challenge.created_at
        return (user.status_changed_at or created) > created, (user.phone_changed_at or created) > created

    async def void_challenge(self, challenge_id: str, voiding: Voiding) -> VoidOutcome:
        async with self._m._lock:
            reason = {"void_reason": voiding.reason.value, **provenance_fields(voiding.provenance)}
            challenge = self._m._live(challenge_id)
            if challenge is None:
                if challenge_id in self._m._challenge_journals:
                    return VoidOutcome.GONE
                head = {"event": "challenge.void", "at": iso(voiding.at), "challenge_id": challenge_id}
                entry = {**head, **reason, "user_id": voiding.user_id, "outcome": "foreclosed"}
                self._m._challenge_journals[challenge_id] = [entry]
                return VoidOutcome.FORECLOSED
            if challenge.status is not ChallengeStatus.OPEN:
                self._m._untrack(challenge)  # as void_challenge.lua
                return VoidOutcome.CLOSED
            if self._opened_after(challenge_id, voiding.opened_before):
                return VoidOutcome.OPENED_AFTER
            challenge = dataclasses.replace(challenge, status=ChallengeStatus.VOIDED)
            self._m._challenges[challenge_id] = challenge
            self._m._untrack(challenge)
            self._m._append(challenge, "challenge.void", voiding.at, "voided", reason)
            if voiding.reason is VoidReason.SEND_BUDGET:
                self._give_back(challenge, voiding)
            return VoidOutcome.VOIDED

    def _opened_after(self, challenge_id: str, change: tuple[int, int] | None) -> bool:
        """As void_challenge.lua: the challenge opened under counts that the change (the user's counts right
        after it) moved past in neither. Never for one opened before the counts, nor for a voiding of
        whatever is open (no change counts)."""
        opened = self._m._opened_changes.get(challenge_id)
        if change is None or opened is None:
            return False
        return change[0] <= opened[0] and change[1] <= opened[1]

    def _give_back(self, challenge: Challenge, voiding: Voiding) -> None:
        """As void_challenge.lua for a Start whose other units were refused (decision 0046): the user's
        unit its step took comes back, and the request id's claim goes (a retry starts afresh)."""
        self._m._unit_back(challenge.user_id, challenge.challenge_id)  # its exact unit (decision 0101)
        claim = (voiding.user_id, voiding.provenance.request_id)
        if self._m._requests.get(claim, ("",))[0] == challenge.challenge_id:
            del self._m._requests[claim]

    async def consume_challenge(self, consumption: Consumption) -> Challenge:
        async with self._m._lock:
            challenge = self._m._existing(consumption.challenge_id)
            outcome = self._consumption(challenge, consumption)
            extra = {
                "op_digest": consumption.op_digest.hex(),
                "purpose": "change_phone",
                "request_id": consumption.request_id,
                **context_fields(consumption.context),
            }
            if outcome == "consumed" or self._m._refused(
                challenge.challenge_id, "challenge.consume", outcome, consumption.at
            ):
                self._m._append(challenge, "challenge.consume", consumption.at, outcome, extra)
            refusal = _CONSUME_REFUSALS.get(outcome)
            if refusal is not None:
                raise refusal(consumption.challenge_id)
            self._m._consumed[challenge.challenge_id] = consumption.request_id
            # As the challenge hash's `user_changes` (decision 0056): absent for one opened before the counts.
            opened = self._m._opened_changes.get(challenge.challenge_id)
            return dataclasses.replace(challenge, opened_changes=opened)

    def _consumption(self, challenge: Challenge, consumption: Consumption) -> str:
        """The outcome consume_challenge.lua decides, in its order."""
        if ms(consumption.at) >= challenge.expires_at + self._m._retention:
            return "stale"
        if (challenge.user_id, challenge.op_digest) != (consumption.user_id, consumption.op_digest):
            return "mismatch"
        if challenge.status is not ChallengeStatus.VERIFIED:
            return "not_verified"
        consumed_by = self._m._consumed.get(challenge.challenge_id)
        if consumed_by is None:
            return "consumed"
        return "replayed" if consumed_by == consumption.request_id else "used"

    def _charge(self, charges: Sequence[Charge], at: datetime, name: str = "") -> None:
        """As _send_budgets.lua: refuse on the first spent charge, writing nothing; else take a unit each,
        named `name` (the SMS's hold name, decision 0101; '' unnamed: the time and a sequence number)."""
        now = ms(at)
        for charge in charges:
            span = timedelta(milliseconds=charge.window // timedelta(milliseconds=1))
            counting = sorted(t for t in self._m._sends.get(charge.subject, {}).values() if t > now - span)
            if len(counting) >= charge.limit:
                # The unit whose expiry brings the count under the limit.
                wait = counting[len(counting) - charge.limit] + span - now
                raise SendBudgetExhausted(charge.subject.kind.value, wait)
        for charge in charges:
            span = timedelta(milliseconds=charge.window // timedelta(milliseconds=1))
            kept = {u: t for u, t in self._m._sends.get(charge.subject, {}).items() if t > now - span}
            member = name or next(m for n in itertools.count() if (m := f"{unix_ms(now)}-{n}") not in kept)
            self._m._sends[charge.subject] = {**kept, member: now}

    def units_taken(self, subject: BudgetSubject) -> int:
        """How many units of the subject's budget are held (as ZCARD of its sorted set)."""
        return len(self._m._sends.get(subject, {}))


def _decide(challenge: Challenge, attempt: VerificationAttempt) -> VerificationOutcome:
    """Count the attempt, then judge it: the same order as record_verification.lua."""
    counted = dataclasses.replace(challenge, attempts=challenge.attempts + 1)
    if attempt.op_digest != challenge.op_digest:
        voided = dataclasses.replace(counted, status=ChallengeStatus.VOIDED)
        return VerificationOutcome(VerifyResult.OPERATION_MISMATCH, 0, voided)
    if not attempt.code_matches:
        status = ChallengeStatus.LOCKED if counted.attempts >= counted.max_attempts else ChallengeStatus.OPEN
        judged = dataclasses.replace(counted, status=status)
        return VerificationOutcome(VerifyResult.WRONG_CODE, judged.attempts_left, judged)
    return VerificationOutcome(
        VerifyResult.VERIFIED, 0, dataclasses.replace(counted, status=ChallengeStatus.VERIFIED)
    )


def _withheld_for(challenge: Challenge, user: User | None, moved: tuple[bool, bool]) -> str:
    """As take_outbox.lua (decisions 0054, 0056): why a code SMS must not go to its challenge's number any
    more; `moved`: whether the user's status, and its number, changed since the challenge opened."""
    if user is None:
        return ""
    if user.status is UserStatus.REVOKED:
        return "user_revoked"
    if user.status is not UserStatus.ACTIVE or moved[0]:
        return "user_suspended"
    if user.secure_phone != challenge.phone or moved[1]:
        return "phone_changed"
    return ""


_: type[Challenges] = MemoryChallenges
