"""The challenge flows: start, verify, resend, cancel, get. Pure logic over the ports."""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sesame.server.domain import budgets, codes, sms_text, validation
from sesame.server.domain.beneficiary_notice import notify_if_added
from sesame.server.domain.blocking import Block, after_block
from sesame.server.domain.budgets import SendBudget
from sesame.server.domain.destinations import DEFAULT_COUNTRIES, check_destination
from sesame.server.domain.errors import (
    ChallengeAlreadyExists,
    ChallengeClosed,
    ChallengeNotFound,
    DeliveryFailed,
    FieldViolation,
    InvalidRequest,
    KeyNotFound,
    KeyVersionUnavailable,
    PhoneCooling,
    SendBudgetExhausted,
    SesameError,
    UserBlocked,
    UserNotActive,
)
from sesame.server.domain.log_context import about_user
from sesame.server.domain.model import (
    Challenge,
    ChallengeStatus,
    DeliveryState,
    LockoutPolicy,
    RequestContext,
    SmsMessage,
    User,
    UserStatus,
    VerificationAttempt,
    VerificationOutcome,
    VerifyResult,
)
from sesame.server.domain.operation import Operation, OperationType, digest, kind
from sesame.server.domain.sms_templates import SmsTemplates, default_templates
from sesame.server.domain.tally import UNTALLIED, Tally, resend_refusal

_log = logging.getLogger("sesame.challenges")

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from sesame.server.domain.ports import Clock, KeyStore, SmsGateway, StateStore
    from sesame.server.domain.proofs import ProofFlows

_COOLED = frozenset({OperationType.CREDIT_TRANSFER, OperationType.ADD_BENEFICIARY})
NONCE_BYTES = 16  # 128 bits: RFC 6287 challenges and NIST's floor for a random secret's entropy
_CHALLENGE_ID = re.compile(r"^([0-9a-f]{32})\.k([1-9][0-9]{0,5})\.d([6-8])\.u([0-9a-f]{16})$")
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


@dataclass(frozen=True, slots=True)
class VerifyRequest:
    """A validated VerifyChallenge call (the code's format is checked against the challenge here)."""

    challenge_id: str
    code: str
    operation: Operation
    context: RequestContext


class ChallengeFlows:
    """Everything that happens to a challenge, in the security order."""

    def __init__(  # noqa: PLR0913 (keyword-only: one argument per port, the proofs and the policy)
        self,
        *,
        keys: KeyStore,
        store: StateStore,
        sms: SmsGateway,
        clock: Clock,
        policy: ChallengePolicy,
        proofs: ProofFlows,
        tally: Tally = UNTALLIED,
    ) -> None:
        self._keys = keys
        self._store = store
        self._sms = sms
        self._clock = clock
        self._policy = policy
        self._proofs = proofs
        self._tally = tally

    async def start(self, request: StartRequest) -> Challenge:
        """Open a challenge for the user's operation and send its code to the user's secure phone.

        Everything that may refuse or fail comes before the one step that charges the send budgets: that
        step opens the challenge, and its code goes to the gateway right after (docs/decisions/0014).
        """
        user = await self._store.get_user(request.user_id)
        now = self._clock.now()
        _admit(user, request.operation, now)
        check_destination(user.secure_phone, self._policy.countries)
        key = await self._keys.current_otp_key()
        # The nonce is public (RFC 6287 sends it in the clear; the key is the secret): the OS CSPRNG draws
        # it, so Start costs one HSM call, the MAC (docs/decisions/0020).
        nonce = secrets.token_bytes(NONCE_BYTES)
        ref = ChallengeRef(nonce, key.otp_version, self._policy.digits, user_tag(user.user_id))
        if request.request_id:
            owner = await self._store.claim_request(
                user.user_id, request.request_id, ref.challenge_id, now + self._policy.lifetime
            )
            if owner != ref.challenge_id:
                earlier = await self._earlier(owner, request)
                if earlier is not None:
                    return earlier  # a retry: the same challenge, and no second SMS
                ref = ChallengeRef.parse(owner)  # claimed, then the opener died: open it now
        challenge = self._new_challenge(user, request.operation, ref, now)
        code = await self._code(challenge)  # before anything is charged: an HSM failure costs no unit
        # One atomic step admits, indexes, charges and opens: a suspension or a number change either comes
        # first (and this refuses, writing nothing) or finds the id and voids it (docs/decisions/0014).
        try:
            await self._store.open_challenge(
                challenge, request.context, self._charges(challenge, request.context)
            )
        except ChallengeAlreadyExists:
            if not request.request_id:
                raise
            # Two retries raced to open the claimed challenge: the other one opened it and sends it.
            return await self._store.get_challenge(challenge.challenge_id)
        except SendBudgetExhausted as refused:
            self._tally.budget_refused(refused.subject)
            raise
        self._tally.opened(request.operation)
        return await self._deliver(challenge, code)

    def _new_challenge(self, user: User, operation: Operation, ref: ChallengeRef, now: datetime) -> Challenge:
        """The OPEN challenge `ref` names, for the user's operation, under the policy's limits."""
        return Challenge(
            challenge_id=ref.challenge_id,
            user_id=user.user_id,
            client_id=user.client_id,
            operation=operation,
            nonce=ref.nonce,
            key_version=ref.key_version,
            digits=ref.digits,
            phone=user.secure_phone,  # ChangePhone too: the code goes to the old number (RTS Art. 24)
            locale=user.locale,
            created_at=now,
            expires_at=now + self._policy.lifetime,
            max_attempts=self._policy.max_attempts,
            attempts=0,
            status=ChallengeStatus.OPEN,
            delivery=DeliveryState.PENDING,
            max_resends=self._policy.max_resends,
            resend_spacing=self._policy.resend_spacing,
            resends=0,
            last_sent_at=now,
        )

    def _charges(self, challenge: Challenge, context: RequestContext) -> tuple[budgets.Charge, ...]:
        """A unit of the user's, the number's, the caller's and the global budget (docs/decisions/0011)."""
        return budgets.charges(self._policy.send_budget, challenge.user_id, challenge.phone, context.caller)

    async def _earlier(self, challenge_id: str, request: StartRequest) -> Challenge | None:
        """The challenge a retried request opened, or None if it was claimed but never opened."""
        try:
            earlier = await self._store.get_challenge(challenge_id)
        except ChallengeNotFound:
            return None
        if earlier.op_digest != digest(request.operation):
            raise InvalidRequest([FieldViolation("request_id", "was already used for another operation")])
        return earlier

    async def verify(self, request: VerifyRequest) -> VerificationOutcome:
        """Decide one submitted code; every call counts, a success is single use and carries a proof."""
        ref = checked_ref(request.challenge_id)
        try:
            submitted = validation.code(request.code, ref.digits)
        except ValueError as exc:
            raise InvalidRequest([FieldViolation("code", str(exc))]) from exc
        op_digest = digest(request.operation)
        try:
            expected = await codes.derive(
                self._keys,
                key_version=ref.key_version,
                digits=ref.digits,
                nonce=ref.nonce,
                op_digest=op_digest,
            )
        except KeyNotFound:
            # Not "unknown": a replica without a key version its peers hold (or a token that lost it) would
            # deny valid challenges. A server fault the caller may retry; no attempt was counted.
            raise KeyVersionUnavailable(ref.key_version) from None
        matches = codes.same_code(expected, submitted)
        # A right code's proof is named before the decision, which journals the name with a VERIFIED outcome
        # only: the proof is signed after it, and no second round trip records it (decision 0026).
        plan = await self._proofs.plan() if matches else None
        attempt = VerificationAttempt(
            challenge_id=request.challenge_id,
            op_digest=op_digest,
            code_matches=matches,
            at=self._clock.now(),
            context=request.context,
            proof_id=None if plan is None else plan.proof_id,
        )
        # One atomic step in the user's place, which the id names (docs/decisions/0013, 0019): the store reads
        # the challenge and its user's block, decides and counts the attempt for both; while the user is
        # blocked it ignores `code_matches`: the answer, the counts and the journal do not depend on the
        # code. That decision is the answer: what follows (voiding and alert after a block, the proof) may
        # fail, and must not change it.
        outcome = await self._store.record_verification(attempt, self._policy.lockout)
        self._tally.verified(outcome)
        about_user(outcome.challenge.user_id)
        if outcome.blocked_until is not None:
            owner = outcome.challenge.user_id
            block = Block(owner, outcome.blocked_until, attempt.at, request.context.caller)
            await after_block(self._store, self._sms, self._clock, self._policy, block, tally=self._tally)
        if outcome.result is not VerifyResult.VERIFIED:
            return outcome
        await notify_if_added(self._store, self._sms, self._policy, outcome.challenge, attempt.at)
        return replace(outcome, proof=await self._proofs.after_verification(outcome, attempt, plan))

    async def resend(self, challenge_id: str, context: RequestContext) -> Challenge:
        """Send the same code again, within the challenge's resend count and spacing; no counter is reset.

        The resend and the send budgets' units are taken in one atomic, journaled step before the SMS goes,
        after the code was computed: a failed send still spends them, so that nobody can pump SMS through
        a failing gateway, and a refusal spends neither (docs/decisions/0011, 0014).
        """
        checked_ref(challenge_id)
        now = self._clock.now()
        known = await self._store.get_challenge(challenge_id)
        about_user(known.user_id)
        if known.status is not ChallengeStatus.OPEN:
            # Closed: nothing is sent or charged; record_resend refuses it and journals the refusal.
            await self._resend_taken(self._store.record_resend(challenge_id, now, context))
            raise ChallengeClosed(challenge_id)  # not reached: a closed challenge never opens again
        check_destination(known.phone, self._policy.countries)
        code = await self._code(known)
        challenge = await self._resend_taken(
            self._store.record_resend(challenge_id, now, context, self._charges(known, context))
        )
        return await self._deliver(challenge, code)

    async def _resend_taken(self, taking: Awaitable[Challenge]) -> Challenge:
        """The challenge after its resend was taken; a resend taken or refused is counted by outcome."""
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
        self._tally.resend("resent")
        return taken

    async def cancel(self, challenge_id: str, context: RequestContext) -> Challenge:
        """Void an open challenge."""
        checked_ref(challenge_id)
        return await self._store.cancel_challenge(challenge_id, self._clock.now(), context)

    async def get(self, challenge_id: str) -> Challenge:
        """The challenge as stored."""
        checked_ref(challenge_id)
        return await self._store.get_challenge(challenge_id)

    async def _code(self, challenge: Challenge) -> str:
        """The challenge's code, computed in the HSM from its nonce, key version and operation."""
        return await codes.derive(
            self._keys,
            key_version=challenge.key_version,
            digits=challenge.digits,
            nonce=challenge.nonce,
            op_digest=challenge.op_digest,
        )

    async def _deliver(self, challenge: Challenge, code: str) -> Challenge:
        """Hand the code's SMS to the gateway (its units are spent already) and note what it said."""
        remaining = challenge.expires_at - self._clock.now()
        text = sms_text.render(
            challenge.operation,
            sms_text.SmsContext(
                bank_name=self._policy.bank_name,
                code=code,
                validity_minutes=max(1, round(remaining.total_seconds() / 60)),
                locale=challenge.locale,
                templates=self._policy.sms_templates,
            ),
        )
        try:
            sent = await self._sms.send(SmsMessage(challenge.phone, text, challenge.challenge_id))
        except DeliveryFailed:
            await self._store.record_delivery(
                challenge.challenge_id, DeliveryState.FAILED, "", self._clock.now()
            )
            return replace(challenge, delivery=DeliveryState.FAILED)
        await self._store.record_delivery(
            challenge.challenge_id, DeliveryState.SENT, sent.provider_ref, sent.sent_at
        )
        return replace(challenge, delivery=DeliveryState.SENT)


def _admit(user: User, operation: Operation, now: datetime) -> None:
    """Refuse, before any HSM call or SMS, a user who may not be sent a code for this operation now."""
    if user.status is not UserStatus.ACTIVE:
        raise UserNotActive(user.user_id)
    if user.blocked_until is not None and user.is_blocked(now):
        raise UserBlocked(user.user_id, user.blocked_until - now)
    # After a change of the secure number, money cannot leave before the old number's holder had time
    # to react to the notice; logging in (and changing the number back) still works.
    if user.cooling_until is not None and user.is_cooling(now) and kind(operation) in _COOLED:
        raise PhoneCooling(user.user_id, user.cooling_until - now)


def checked_ref(challenge_id: str) -> ChallengeRef:
    """What a caller's challenge id says. InvalidRequest when it is not one of ours."""
    try:
        return ChallengeRef.parse(challenge_id)
    except ValueError as exc:
        raise InvalidRequest([FieldViolation("challenge_id", str(exc))]) from exc
