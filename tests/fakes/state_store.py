"""An in-memory StateStore with the semantics of `RedisStateStore` (the contract suite holds them together).

Like Redis it keeps times to the millisecond and keeps one journal per user and per challenge that
outlives the challenge. Given a clock, it also purges a challenge `retention` after its expiry, as Redis
does by its own wall clock; without one it keeps challenges forever, so that tests on a fixed clock
(in the past or the future of the real one) stay deterministic.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sesame.server.domain.errors import (
    ChallengeAlreadyExists,
    ChallengeClosed,
    ChallengeNotFound,
    ChallengeNotVerified,
    ResendRefused,
    UserAlreadyExists,
    UserNotFound,
)
from sesame.server.domain.model import (
    Challenge,
    ChallengeStatus,
    DeliveryState,
    LockoutPolicy,
    RequestContext,
    User,
    VerificationAttempt,
    VerificationOutcome,
    VerifyResult,
)
from sesame.server.domain.operation import kind
from sesame.server.domain.ports import Clock, StateStore
from sesame.server.domain.privacy import mask_phone
from sesame.server.domain.proof import IssuedProof

_TERMINAL = {
    ChallengeStatus.VERIFIED: VerifyResult.ALREADY_USED,
    ChallengeStatus.VOIDED: VerifyResult.VOIDED,
    ChallengeStatus.CANCELLED: VerifyResult.VOIDED,
    ChallengeStatus.LOCKED: VerifyResult.LOCKED,
}

# record_delivery.lua: each message only moves forward, DELIVERED and FAILED are final.
_RANK = {DeliveryState.PENDING: 0, DeliveryState.SENT: 1, DeliveryState.DELIVERED: 2, DeliveryState.FAILED: 2}


def _best_news(states: Iterable[DeliveryState]) -> DeliveryState:
    """The challenge's state over its messages, as record_delivery.lua: delivered, else sent, else failed."""
    seen = set(states)
    for state in (DeliveryState.DELIVERED, DeliveryState.SENT, DeliveryState.FAILED):
        if state in seen:
            return state
    return DeliveryState.PENDING


def _ms(at: datetime) -> datetime:
    """The instant as Redis keeps it: UTC, floored to the millisecond."""
    at = at.astimezone(UTC)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds")


def _context(context: RequestContext) -> dict[str, str]:
    return {
        "ip": context.ip,
        "device_id": context.device_id,
        "session_id": context.session_id,
        "user_agent": context.user_agent,
    }


class MemoryStateStore:
    """Dicts and lists behind one lock; every method is one atomic, journaled transition."""

    def __init__(self, retention: timedelta = timedelta(hours=24), purge_clock: Clock | None = None) -> None:
        self._retention = retention
        self._purge_clock = purge_clock
        self._lock = asyncio.Lock()
        self._users: dict[str, User] = {}
        self._challenges: dict[str, Challenge] = {}
        self._requests: dict[tuple[str, str], tuple[str, datetime]] = {}
        self._user_journals: dict[str, list[dict[str, str]]] = {}
        self._challenge_journals: dict[str, list[dict[str, str]]] = {}
        self._messages: dict[str, dict[str, DeliveryState]] = {}  # per challenge: provider ref -> state

    async def register_user(self, user: User) -> User:
        async with self._lock:
            stored = self._users.get(user.user_id)
            if stored is not None:
                if (stored.client_id, stored.secure_phone) != (user.client_id, user.secure_phone):
                    raise UserAlreadyExists(user.user_id)
                return stored
            stored = dataclasses.replace(user, enrolled_at=_ms(user.enrolled_at))
            self._users[user.user_id] = stored
            self._user_journals.setdefault(user.user_id, []).append(
                {
                    "event": "user.enrolled",
                    "at": _iso(user.enrolled_at),
                    "user_id": user.user_id,
                    "client_id": user.client_id,
                    "phone": mask_phone(user.secure_phone),
                    "locale": user.locale,
                    "status": user.status.value,
                }
            )
            return stored

    async def get_user(self, user_id: str) -> User:
        try:
            return self._users[user_id]
        except KeyError:
            raise UserNotFound(user_id) from None

    async def record_failed_attempt(self, user_id: str, at: datetime, lockout: LockoutPolicy) -> User:
        async with self._lock:
            user = await self.get_user(user_id)
            failures, outcome = user.failures + 1, "counted"
            if failures >= lockout.max_failures:
                outcome, failures = "blocked", 0
                user = dataclasses.replace(
                    user,
                    blocks=user.blocks + 1,
                    blocked_until=_ms(at) + lockout.block_length(user.blocks + 1),
                )
            user = dataclasses.replace(user, failures=failures)
            self._users[user_id] = user
            self._user_event(user, "user.failed_attempt", at, outcome)
            return user

    async def record_successful_attempt(self, user_id: str, at: datetime) -> None:
        async with self._lock:
            user = await self.get_user(user_id)
            if (user.failures, user.blocks, user.blocked_until) == (0, 0, None):
                return
            user = dataclasses.replace(user, failures=0, blocks=0, blocked_until=None)
            self._users[user_id] = user
            self._user_event(user, "user.successful_attempt", at, "reset")

    def _user_event(self, user: User, event: str, at: datetime, outcome: str) -> None:
        blocked_until = "0" if user.blocked_until is None else str(int(user.blocked_until.timestamp() * 1000))
        self._user_journals.setdefault(user.user_id, []).append(
            {
                "event": event,
                "at": _iso(at),
                "user_id": user.user_id,
                "outcome": outcome,
                "failures": str(user.failures),
                "blocks": str(user.blocks),
                "blocked_until": blocked_until,
            }
        )

    async def open_challenge(self, challenge: Challenge, context: RequestContext) -> None:
        async with self._lock:
            cid = challenge.challenge_id
            if self._live(cid) is not None or cid in self._challenge_journals:
                raise ChallengeAlreadyExists(cid)
            stored = dataclasses.replace(
                challenge,
                created_at=_ms(challenge.created_at),
                expires_at=_ms(challenge.expires_at),
                last_sent_at=_ms(challenge.last_sent_at),
            )
            self._challenges[cid] = stored
            self._append(
                stored,
                "challenge.opened",
                challenge.created_at,
                "opened",
                {
                    "phone": mask_phone(stored.phone),
                    "expires_at": _iso(stored.expires_at),
                    "key_version": str(stored.key_version),
                    "op": kind(stored.operation).name.lower(),
                    **_context(context),
                },
            )

    async def claim_request(self, user_id: str, request_id: str, challenge_id: str, until: datetime) -> str:
        async with self._lock:
            now = self._purge_clock.now() if self._purge_clock is not None else None
            earlier = self._requests.get((user_id, request_id))
            if earlier is not None and (now is None or now < earlier[1]):
                return earlier[0]
            self._requests[(user_id, request_id)] = (challenge_id, until)
            return challenge_id

    async def get_challenge(self, challenge_id: str) -> Challenge:
        return self._existing(challenge_id)

    async def record_verification(self, attempt: VerificationAttempt) -> VerificationOutcome:
        async with self._lock:
            challenge = self._existing(attempt.challenge_id)
            result = _TERMINAL.get(challenge.status)
            if result is None and _ms(attempt.at) >= challenge.expires_at:
                result = VerifyResult.EXPIRED
            if result is None:
                decided = _decide(challenge, attempt)
                challenge, result = decided.challenge, decided.result
                self._challenges[challenge.challenge_id] = challenge
            self._append(
                challenge,
                "challenge.verification",
                attempt.at,
                result.value,
                {"op_digest": attempt.op_digest.hex(), **_context(attempt.context)},
            )
            left = challenge.attempts_left if result is VerifyResult.WRONG_CODE else 0
            return VerificationOutcome(result, left, challenge)

    async def cancel_challenge(self, challenge_id: str, at: datetime, context: RequestContext) -> Challenge:
        async with self._lock:
            challenge = self._existing(challenge_id)
            if challenge.status is not ChallengeStatus.OPEN or _ms(at) >= challenge.expires_at:
                self._append(challenge, "challenge.cancel", at, "refused", _context(context))
                raise ChallengeClosed(challenge_id)
            challenge = dataclasses.replace(challenge, status=ChallengeStatus.CANCELLED)
            self._challenges[challenge_id] = challenge
            self._append(challenge, "challenge.cancel", at, "cancelled", _context(context))
            return challenge

    async def record_resend(self, challenge_id: str, at: datetime, context: RequestContext) -> Challenge:
        async with self._lock:
            challenge = self._existing(challenge_id)
            refusal: ChallengeClosed | ResendRefused | None = None
            if challenge.status is not ChallengeStatus.OPEN or _ms(at) >= challenge.expires_at:
                refusal, outcome = ChallengeClosed(challenge_id), "closed"
            elif challenge.resends_left == 0:
                refusal, outcome = ResendRefused(challenge_id, None), "exhausted"
            elif _ms(at) < challenge.next_send_at:
                refusal, outcome = ResendRefused(challenge_id, challenge.next_send_at - _ms(at)), "too_soon"
            else:
                challenge = dataclasses.replace(
                    challenge, resends=challenge.resends + 1, last_sent_at=_ms(at)
                )
                self._challenges[challenge_id] = challenge
                outcome = "resent"
            self._append(
                challenge,
                "challenge.resend",
                at,
                outcome,
                {**_context(context), "resends": str(challenge.resends)},
            )
            if refusal is not None:
                raise refusal
            return challenge

    async def record_delivery(
        self, challenge_id: str, state: DeliveryState, provider_ref: str, at: datetime
    ) -> None:
        async with self._lock:
            existing = self._existing(challenge_id)
            messages = self._messages.setdefault(challenge_id, {})
            before = messages.get(provider_ref)
            if before is None or _RANK[state] > _RANK[before]:
                messages[provider_ref] = state
            challenge = dataclasses.replace(existing, delivery=_best_news(messages.values()))
            self._challenges[challenge_id] = challenge
            extra = {"provider_ref": provider_ref, "delivery": challenge.delivery.value}
            self._append(challenge, "challenge.delivery", at, state.value, extra)

    async def record_proof(self, proof: IssuedProof, at: datetime) -> str:
        async with self._lock:
            facts = proof.facts
            journal = self._challenge_journals.get(facts.challenge_id)
            if not journal:
                raise ChallengeNotFound(facts.challenge_id)
            for entry in journal:
                if entry["event"] == "challenge.proof":
                    return entry["proof"]
            verified = ("challenge.verification", "verified")
            if not any((e["event"], e["outcome"]) == verified for e in journal):
                raise ChallengeNotVerified(facts.challenge_id)
            journal.append(
                {
                    "event": "challenge.proof",
                    "at": _iso(at),
                    "challenge_id": facts.challenge_id,
                    "user_id": facts.user_id,
                    "client_id": facts.client_id,
                    "op_digest": facts.op_digest,
                    "outcome": "issued",
                    "attempts": str(facts.attempts),
                    "status": "verified",
                    "jti": proof.jti,
                    "kid": proof.kid,
                    "proof": proof.jws,
                }
            )
            return proof.jws

    async def user_journal(self, user_id: str) -> list[dict[str, str]]:
        return list(self._user_journals.get(user_id, []))

    async def challenge_journal(self, challenge_id: str) -> list[dict[str, str]]:
        return list(self._challenge_journals.get(challenge_id, []))

    def _live(self, challenge_id: str) -> Challenge | None:
        """The challenge unless its retention has run out, as Redis's PEXPIREAT would have purged it."""
        challenge = self._challenges.get(challenge_id)
        if challenge is None or self._purge_clock is None:
            return challenge
        if self._purge_clock.now() >= challenge.expires_at + self._retention:
            del self._challenges[challenge_id]
            return None
        return challenge

    def _existing(self, challenge_id: str) -> Challenge:
        challenge = self._live(challenge_id)
        if challenge is None:
            raise ChallengeNotFound(challenge_id)
        return challenge

    def _append(
        self, challenge: Challenge, event: str, at: datetime, outcome: str, extra: dict[str, str]
    ) -> None:
        entry = {
            "event": event,
            "at": _iso(at),
            "challenge_id": challenge.challenge_id,
            "user_id": challenge.user_id,
            "client_id": challenge.client_id,
            "op_digest": challenge.op_digest.hex(),
            "outcome": outcome,
            "attempts": str(challenge.attempts),
            "status": challenge.status.value,
        }
        self._challenge_journals.setdefault(challenge.challenge_id, []).append({**entry, **extra})


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


_: type[StateStore] = MemoryStateStore
