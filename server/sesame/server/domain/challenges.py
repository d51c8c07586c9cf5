"""The challenge flows: start, verify, resend, cancel, get. Pure logic over the ports."""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import secrets
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sesame.server.domain import budgets, codes, factors, validation
from sesame.server.domain.blocking import Block, after_block
from sesame.server.domain.budgets import SendBudget
from sesame.server.domain.destinations import DEFAULT_COUNTRIES, check_destination, check_enrolled_phone
from sesame.server.domain.dispatching import RecentCodes
from sesame.server.domain.errors import (
    ChallengeClosed,
    DeadlinePassed,
    FieldViolation,
    InvalidRequest,
    KeyNotFound,
    KeyVersionUnavailable,
    RiskDenied,
    SendBudgetExhausted,
    SesameError,
    SimNumberMoved,
)
from sesame.server.domain.log_context import about_user
from sesame.server.domain.model import (
    Challenge,
    ChallengeStatus,
    DeliveryState,
    LockoutPolicy,
    RequestContext,
    VerificationAttempt,
    VerificationOutcome,
    VerifyResult,
)
from sesame.server.domain.notices import notice_on_verified
from sesame.server.domain.opening import Opened, Opening, RiskQuestion
from sesame.server.domain.operation import ChangePhone, Operation, OperationType, digest, kind
from sesame.server.domain.proof import decided, opening_stated
from sesame.server.domain.resending import ResendClaim, Resent
from sesame.server.domain.risk import RiskAssessment
from sesame.server.domain.risk_signals import Forwarded
from sesame.server.domain.send_holds import SendHolds
from sesame.server.domain.sms_templates import SmsTemplates, default_templates
from sesame.server.domain.tally import UNTALLIED, Tally, resend_refusal
from sesame.server.domain.to_the_end import to_the_end

_log = logging.getLogger("sesame.challenges")

if TYPE_CHECKING:
    from collections.abc import Awaitable, Sequence

    from sesame.server.domain.ports import Clock, KeyStore, SmsGateway, State
    from sesame.server.domain.proofs import ProofFlows
    from sesame.server.domain.risk_flow import RiskFlows

_COOLED = frozenset({OperationType.CREDIT_TRANSFER, OperationType.ADD_BENEFICIARY})
NONCE_BYTES = 16  # 128 bits: RFC 6287 challenges and NIST's floor for a random secret's entropy
_CHALLENGE_ID = re.compile(r"^([0-9a-f]{32})\.k([1-9][0-9]{0,5})\.d([6-8])\.u([0-9a-f]{16})\Z")
_RISK_TRIES = 3  # steps of one Start whose secure number keeps moving; then UNAVAILABLE (retry by request id)
USER_TAG_HEX = 16  # 64 bits of SHA-256(user id): where the user's state lives, not who the user is


@dataclass(frozen=True, slots=True)
class ChallengePolicy:
    """Limits of every challenge, validated at boot (see `sesame.server.config`)."""

    digits: int = 6
    lifetime: timedelta = timedelta(minutes=5)
    max_attempts: int = 3
    max_resends: int = 3
    resend_spacing: timedelta = timedelta(seconds=30)
    lockout: LockoutPolicy = field(default_factory=LockoutPolicy)
    bank_name: str = "MaBanque"
    send_budget: SendBudget = field(default_factory=SendBudget)  # SMS per user and per number (anti-pumping)
    countries: frozenset[str] = DEFAULT_COUNTRIES  # destination countries codes may be sent to
    sms_templates: SmsTemplates = field(default_factory=default_templates)  # checked at boot (docs/sms.md)
    first_factor_max_age: timedelta = factors.DEFAULT_MAX_AGE  # older: INVALID_ARGUMENT (decision 0035)


def user_tag(user_id: str) -> str:
    """The tag of the user's state: the first 16 hex digits of SHA-256(user id) (docs/decisions/0019).

    Every key of the user's aggregate, its challenges included, is under it, and each challenge id carries
    it. Two users may share a tag (64 bits): they then share a place, never a key, since every key also
    names the user or the challenge, and the scripts check the user id the challenge stores.
    """
    return hashlib.sha256(user_id.encode()).hexdigest()[:USER_TAG_HEX]


@dataclass(frozen=True, slots=True)
class ChallengeRef:
    """What a challenge id says: the nonce, the key version, the code length and where its user's state is.

    The id carries them so that a verification costs one HSM call and one store round trip: the code
    is recomputed before the store is asked, and the store decides atomically in the user's place, found
    from the id alone (docs/decisions/0003, 0019). The nonce is not a secret (RFC 6287 challenges are
    public); the key in the HSM is. A forged tag names a place where no such challenge is: NOT_FOUND.
    """

    nonce: bytes
    key_version: int
    digits: int
    user_tag: str

    @property
    def challenge_id(self) -> str:
        """The id as the caller sees it: `<nonce hex>.k<key version>.d<digits>.u<user tag>`."""
        return f"{self.nonce.hex()}.k{self.key_version}.d{self.digits}.u{self.user_tag}"

    @classmethod
    def parse(cls, challenge_id: str) -> ChallengeRef:
        """Read an id; ValueError when it is not one of ours."""
        match = _CHALLENGE_ID.match(challenge_id)
        if match is None:
            raise ValueError("is not a challenge id")
        nonce, version, digits, tag = match.groups()
        return cls(bytes.fromhex(nonce), int(version), int(digits), tag)


@dataclass(frozen=True, slots=True)
class StartRequest:
    """A validated StartChallenge call."""

    user_id: str
    operation: Operation
    context: RequestContext
    request_id: str = ""  # the caller's idempotency key; empty: every call opens a new challenge
    forwarded: Forwarded = field(default_factory=Forwarded)  # the bank's risk signals (docs/risk.md)


@dataclass(frozen=True, slots=True)
class VerifyRequest:
    """A validated VerifyChallenge call (the code's format is checked against the challenge here)."""

    challenge_id: str
    code: str
    operation: Operation
    context: RequestContext


class ChallengeFlows:
    """Everything that happens to a challenge, in the security order."""

    def __init__(  # noqa: PLR0913 (keyword-only: one argument per port, the proofs, the policy, the codes)
        self,
        *,
        keys: KeyStore,
        store: State,
        sms: SmsGateway,
        clock: Clock,
        policy: ChallengePolicy,
        proofs: ProofFlows,
        tally: Tally = UNTALLIED,
        risk: RiskFlows | None = None,
        recent: RecentCodes | None = None,
    ) -> None:
        self._keys = keys
        self._recent = recent
        self._store = store
        self._sms = sms
        self._clock = clock
        self._policy = policy
        self._proofs = proofs
        self._tally = tally
        self._risk = risk  # None: no risk rules (Start reads nothing before its step)
        self._holds = SendHolds(store, policy.send_budget, tally)

    async def start(self, request: StartRequest) -> Challenge:
        """Open a challenge for the user's operation and queue its code's SMS to the user's secure phone.

        One atomic step in the store reads the user, refuses or claims the request id, charges the send
        budgets, opens the challenge and queues its SMS in the outbox (docs/decisions/0014, 0025); a
        dispatcher sends it. The code is computed once before that step, though the dispatcher computes it
        again: an HSM that cannot compute it fails the call here, before any unit is spent.
        """
        now = self._clock.now()
        factors.check_age(request.context.first_factor, now, self._policy.first_factor_max_age)
        if isinstance(request.operation, ChangePhone):
            # A number ChangeSecurePhone would refuse: no code for a change that cannot be made. The number
            # already held (PhoneUnchanged) is refused by the step, against the number stored as it opens.
            path = "operation.change_phone.new_phone"
            check_enrolled_phone(path, request.operation.new_phone, self._policy.countries)
        risk, asked = await self._ask(request)
        key = await self._keys.current_otp_key()
        # The nonce is public (RFC 6287 sends it in the clear; the key is the secret): the OS CSPRNG draws
        # it, so Start costs one HSM call, the MAC (docs/decisions/0020).
        ref = self._ref(key.otp_version, request)
        op_digest = digest(request.operation)
        code, witness_key = await codes.witnessed(
            self._keys, key_version=ref.key_version, digits=ref.digits, nonce=ref.nonce, op_digest=op_digest
        )
        # The opening's witness: what a proof states of it, from the same HMAC (decision 0167).
        op = kind(request.operation).name.lower()
        factor = request.context.first_factor
        witness = codes.witness(
            witness_key, opening_stated(ref.challenge_id, request.user_id, op, op_digest.hex(), factor)
        )
        # Counted with the step, to its end: a caller that gave up left its challenge opened and its SMS sent
        # uncounted (an outside audit).
        return await to_the_end(
            self._opened(request, ref, code, now=now, risk=risk, asked=asked, witness=witness)
        )

    async def _opened(  # noqa: PLR0913 (start's own values, passed on)
        self,
        request: StartRequest,
        ref: ChallengeRef,
        code: str,
        *,
        now: datetime,
        risk: RiskAssessment | None,
        asked: RiskQuestion | None,
        witness: str,
    ) -> Challenge:
        """Start's step and its counts: the challenge opened, or the one its request id opened before."""
        # Noted before the step: this process's dispatcher may take the SMS before the step's answer is read.
        self._note(ref.challenge_id, code)
        opened = None
        try:
            # The step and the take of the number's, caller's and global units, sent at once (decision 0046).
            opening = self._opening(request, ref, now, risk=risk, asked=asked, witness=witness)
            step = functools.partial(self._step, request, opening)
            opened = await self._holds.opened(
                step, request, ref.challenge_id, now, now + self._policy.lifetime
            )
        except SendBudgetExhausted as refused:
            self._tally.budget_refused(refused.subject)
            raise
        finally:
            if opened is None or not opened.queued:
                self._forget(ref.challenge_id)
        if opened.queued:
            self._tally.opened(request.operation)
        if self._risk is None:
            return opened.challenge
        # The decision the challenge keeps, its reasons told: a retry by request id answers its first
        # call's (no second unit, no second SMS, no second decision); a new challenge's is counted, once.
        decided = self._risk.described(opened.challenge.risk)
        if opened.queued and decided is not None:
            self._risk.count(request.operation, decided)
        return replace(opened.challenge, risk=decided)

    async def _step(self, request: StartRequest, opening: Opening) -> Opened:
        """Start's one step, the rules deciding in it on the user's memory as it is (decision 0045). When
        the operator's SIM answer is about another number than the stored one (a number changed, or none
        seen yet by this worker), the step answers the number, the operator is asked again and the step
        runs again. A DENY is journaled by the step and counted here (RiskDenied)."""
        for tries_left in reversed(range(_RISK_TRIES)):
            try:
                opened = await self._store.challenges.start_challenge(opening)
            except SimNumberMoved as moved:
                if not tries_left or self._risk is None or opening.question is None:
                    raise
                self._risk.saw(request.user_id, moved.number)
                opening = replace(opening, question=await self._risk.question(request, moved.number))
                continue
            except RiskDenied as denied:
                if self._risk is not None and not denied.again:  # a retried request id: one attempt
                    self._risk.denied(request.operation, denied)
                raise
            if self._risk is not None:
                self._risk.saw(request.user_id, opened.challenge.phone)
            return opened
        raise AssertionError("not reached: the last try raises or returns")

    def _ref(self, key_version: int, request: StartRequest) -> ChallengeRef:
        # The nonce is public (RFC 6287 sends it in the clear; the key is the secret): the OS CSPRNG draws
        # it, so Start costs one HSM call, the MAC (docs/decisions/0020).
        nonce = secrets.token_bytes(NONCE_BYTES)
        return ChallengeRef(nonce, key_version, self._policy.digits, user_tag(request.user_id))

    async def _ask(self, request: StartRequest) -> tuple[RiskAssessment | None, RiskQuestion | None]:
        """The rules' part of Start's step: nothing (no rules); ALLOW decided here when no rule can match the
        operation's kind (nothing read); else the question the step answers on the user's memory, read in
        the step itself: no round trip before it (decision 0045)."""
        if self._risk is None:
            return None, None
        if not self._risk.reads(request.operation):
            return self._risk.unread(), None
        return None, await self._risk.question(request)

    def _opening(  # noqa: PLR0913 (start's own values, passed on)
        self,
        request: StartRequest,
        ref: ChallengeRef,
        now: datetime,
        *,
        risk: RiskAssessment | None,
        asked: RiskQuestion | None,
        witness: str,
    ) -> Opening:
        """What the store's one step needs: the challenge `ref` names, under the policy's limits, and the
        witness of what a proof states of its opening (decision 0167)."""
        policy = self._policy
        return Opening(
            challenge_id=ref.challenge_id,
            user_id=request.user_id,
            operation=request.operation,
            nonce=ref.nonce,
            key_version=ref.key_version,
            digits=ref.digits,
            created_at=now,
            expires_at=now + policy.lifetime,
            max_attempts=policy.max_attempts,
            max_resends=policy.max_resends,
            resend_spacing=policy.resend_spacing,
            # After a change of the secure number, money cannot leave before the old number's holder had
            # time to react to the notice; logging in (and changing the number back) still works.
            cooled=kind(request.operation) in _COOLED,
            countries=policy.countries,
            budget=policy.send_budget,
            context=request.context,
            request_id=request.request_id,
            risk=risk,
            question=asked,
            witness=witness,
        )

    async def verify(self, request: VerifyRequest) -> VerificationOutcome:
        """Decide one submitted code; every call counts, a success is single use and carries a proof."""
        ref = checked_ref(request.challenge_id)
        try:
            submitted = validation.code(request.code, ref.digits)
        except ValueError as exc:
            raise InvalidRequest([FieldViolation("code", str(exc))]) from exc
        # A stale or future first factor is bad input: refused before the attempt is counted.
        factors.check_age(request.context.first_factor, self._clock.now(), self._policy.first_factor_max_age)
        op_digest = digest(request.operation)
        try:
            expected, witness_key = await codes.witnessed(
                self._keys,
                key_version=ref.key_version,
                digits=ref.digits,
                nonce=ref.nonce,
                op_digest=op_digest,
            )
        except KeyNotFound:
            # Not "unknown": a replica without a key version its peers hold (or a token that lost it) would
            # deny valid challenges. A server fault the caller may retry; no attempt was counted. But only for
            # a challenge that exists: an id altered to name another version is an unknown id (NOT_FOUND,
            # ChallengeNotFound from the read), not an UNAVAILABLE its caller would retry for ever.
            known = await self._store.challenges.get_challenge(request.challenge_id)
            if known.status is ChallengeStatus.OPEN and self._clock.now() < known.expires_at:
                raise KeyVersionUnavailable(ref.key_version) from None
            # Closed, or expired by now: the step answers that before any code is compared, and counts
            # nothing. "Retry later" answered it for the challenge's whole retention (an outside audit).
            expected = witness_key = ""
        matches = codes.same_code(expected, submitted)
        # A right code's proof is named before the decision, which journals the name with a VERIFIED outcome
        # only: the proof is signed after it, and no second round trip records it (decision 0026).
        plan = await self._proofs.plan() if matches else None
        at = self._clock.now()
        named_jti = "" if plan is None else plan.jti  # bound by the witness: its entry cannot go (AV2)
        attempt = VerificationAttempt(
            challenge_id=request.challenge_id,
            op_digest=op_digest,
            code_matches=matches,
            at=at,
            context=request.context,
            proof_id=None if plan is None else plan.proof_id,
            notice=notice_on_verified(request.operation),
            # A right code feeds the user's risk memory in the decision's own step (decision 0032).
            risk=None if self._risk is None else self._risk.lesson(request, self._clock.now()),
            # What only the HSM's key makes, of the decision as it is made (decision 0167).
            witness=codes.witness(witness_key, decided(request.challenge_id, at, request.context, named_jti))
            if matches
            else "",
        )
        # One atomic step in the user's place, which the id names (docs/decisions/0013, 0019): the store reads
        # the challenge and its user's block, decides and counts the attempt for both; while the user is
        # blocked it ignores `code_matches`: the answer, the counts and the journal do not depend on the
        # code. That decision is the answer: what follows (voiding and alert after a block, the proof) may
        # fail, and must not change it.
        outcome = await to_the_end(self._decided(attempt, request.context.caller))
        about_user(outcome.challenge.user_id)
        if outcome.blocked_until is not None:
            # The wrong code that blocked the user leaves no attempt on this challenge, void with the others:
            # it answered the attempts its challenge had left, and a caller let the user try again, into
            # VOIDED, then a Start refused USER_BLOCKED (an outside audit).
            return replace(outcome, attempts_left=0)
        if outcome.result is not VerifyResult.VERIFIED:
            return outcome
        return replace(outcome, proof=await self._proofs.after_verification(outcome, attempt, plan))

    async def _decided(self, attempt: VerificationAttempt, caller: str) -> VerificationOutcome:
        """Verify's step, counted, and the voiding of the user's other challenges after a block: to its end
        (a caller that gave up on the wrong code that blocked left the user's other challenges open, and a
        code of one of them verified after the block: an outside audit)."""
        outcome = await self._store.challenges.record_verification(attempt, self._policy.lockout)
        self._tally.verified(outcome)
        if outcome.blocked_until is not None:
            block = Block.started_by(outcome.challenge, outcome.blocked_until, attempt.at, caller)
            await after_block(self._store, block, tally=self._tally)
        return outcome

    async def resend(self, challenge_id: str, context: RequestContext, request_id: str = "") -> Challenge:
        """Queue the same code's SMS again, within the challenge's resend count and spacing; no counter is
        reset.

        The resend, the send budgets' units and the SMS's place in the outbox are taken in one atomic,
        journaled step, after the code was computed (an HSM failure spends nothing): a send that then fails
        still spent them, so that nobody can pump SMS through a failing gateway, and a refusal spends
        neither (docs/decisions/0011, 0014, 0025). With a `request_id`, the step claims it: a retry whose
        first call's answer was lost is answered by that call's resend, no second one (decision 0065).
        """
        checked_ref(challenge_id)
        now = self._clock.now()
        known = await self._store.challenges.get_challenge(challenge_id)
        about_user(known.user_id)
        if known.status is not ChallengeStatus.OPEN:
            # Closed: nothing is sent or charged; record_resend refuses it, journals and counts the refusal.
            async def refused() -> Resent:
                return await self._resend_taken(
                    _resent(self._store.challenges.record_resend(challenge_id, now, context))
                )

            await to_the_end(refused())
            raise ChallengeClosed(challenge_id)  # not reached: a closed challenge never opens again
        check_destination(known.phone, self._policy.countries)
        if self._risk is not None and known.resends_left and now >= known.next_send_at:
            # The SIM changed since the code was sent: not again. Asked only of a resend the step may take:
            # one too soon, past the count, or a retry of an accepted resend costs no operator call.
            await self._risk.check_resend(known)
        self._note(challenge_id, await self._code(known))
        claim = ResendClaim(known.user_id, request_id) if request_id else None

        def taking(own: Sequence[budgets.Charge], hold: str) -> Awaitable[Resent]:
            if claim is None:
                return _resent(self._store.challenges.record_resend(challenge_id, now, context, own, hold))
            return self._store.challenges.record_resend_once(
                challenge_id, now, context, own, hold, claim=claim
            )

        async def taken() -> Resent:
            # The resend's step and the take of its number's, caller's and global units, at once (0046).
            return await self._resend_taken(self._holds.resent(taking, known, context, now, request_id))

        try:
            # Made and counted to its end; its coroutines made only once it begins (made before, those of a
            # call refused at its deadline were never awaited: a RuntimeWarning on stderr, an audit).
            resent = await to_the_end(taken())
        except DeadlinePassed:
            self._forget(challenge_id)
            raise
        if resent.queued:
            return replace(resent.challenge, delivery=DeliveryState.QUEUED)
        return resent.challenge  # an earlier call's resend whose SMS left: its delivery as it is now

    def _note(self, challenge_id: str, code: str) -> None:
        if self._recent is not None:
            self._recent.note(challenge_id, code)

    def _forget(self, challenge_id: str) -> None:
        if self._recent is not None:
            self._recent.forget(challenge_id)

    async def _resend_taken(self, taking: Awaitable[Resent]) -> Resent:
        """The challenge after its resend was taken; a resend taken or refused is counted by outcome (an
        earlier call's resend answered again is not counted again)."""
        try:
            taken = await taking
        except SendBudgetExhausted as refused:
            self._tally.budget_refused(refused.subject)
            raise
        except SesameError as refused:
            outcome = resend_refusal(refused)
            if outcome is not None:
                self._tally.resend(outcome)
            raise
        if not taken.earlier:
            self._tally.resend("resent")
        return taken

    async def cancel(self, challenge_id: str, context: RequestContext) -> Challenge:
        """Void an open challenge."""
        checked_ref(challenge_id)
        return await self._store.challenges.cancel_challenge(challenge_id, self._clock.now(), context)

    async def get(self, challenge_id: str) -> Challenge:
        """The challenge as stored."""
        checked_ref(challenge_id)
        return await self._store.challenges.get_challenge(challenge_id)

    async def _code(self, challenge: Challenge) -> str:
        """The challenge's code, computed in the HSM from its nonce, key version and operation."""
        return await codes.derive(
            self._keys,
            key_version=challenge.key_version,
            digits=challenge.digits,
            nonce=challenge.nonce,
            op_digest=challenge.op_digest,
        )


async def _resent(taking: Awaitable[Challenge]) -> Resent:
    """A resend's step without a request id: the challenge after it."""
    return Resent(await taking)


def checked_ref(challenge_id: str) -> ChallengeRef:
    """What a caller's challenge id says. InvalidRequest when it is not one of ours."""
    try:
        return ChallengeRef.parse(challenge_id)
    except ValueError as exc:
        raise InvalidRequest([FieldViolation("challenge_id", str(exc))]) from exc
