"""What the state fakes share, as Redis is shared by the aggregates' adapters: every aggregate's dicts behind
one lock, and the steps several scripts include (a journal append, the user's half of a verification, the
index of pending challenges, the count of refusals).

Like Redis it keeps times to the millisecond and keeps one journal per user and per challenge that
outlives the challenge. Given a clock, it also purges a challenge `retention` after its expiry, as Redis
does by its own wall clock; without one it keeps challenges forever, so that tests on a fixed clock
(in the past or the future of the real one) stay deterministic.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sesame.server.domain.budgets import BudgetSubject
from sesame.server.domain.errors import ChallengeNotFound
from sesame.server.domain.lifecycle import AppliedChange
from sesame.server.domain.model import (
    Challenge,
    ChallengeStatus,
    DeliveryState,
    LockoutPolicy,
    User,
    VerifyResult,
)
from sesame.server.domain.noops import NOOP_DEFAULTS, NoopLimits
from sesame.server.domain.ports import Clock
from sesame.server.domain.risk_signals import RiskHistory
from tests.fakes.hourly import Windows, journaled_hourly
from tests.fakes.journal_fields import iso, ms, unix_ms

if TYPE_CHECKING:
    from tests.fakes.outbox import MemoryOutbox


@dataclasses.dataclass(frozen=True, slots=True)
class ResendClaimed:
    """A Resend's request id's claim, as record_resend.lua's hash: the challenge, its resends after the
    resend, the resend's hold and outbox entry; kept until the challenge's expiry (decision 0065)."""

    challenge_id: str
    resends: int
    hold: str
    entry_id: str
    until: datetime


class Memory:
    """The fakes' Redis: dicts and lists behind one lock (client companies have theirs: `MemoryClients`)."""

    def __init__(
        self,
        retention: timedelta = timedelta(hours=24),
        purge_clock: Clock | None = None,
        noops: NoopLimits = NOOP_DEFAULTS,
    ) -> None:
        self._lock = asyncio.Lock()
        self._noop_limits = noops  # as _noops.lua's arguments (decisions 0054, 0058)
        self._users: dict[str, User] = {}
        self._user_journals: dict[str, list[dict[str, str]]] = {}
        self._changes: dict[tuple[str, str], AppliedChange] = {}  # (user, request id) -> its record
        # As _noops.lua (decision 0054): each user's no-op hour (its start, no-ops in it, unjournaled ones)
        # and the times of its remembered no-ops' request ids.
        self._noops: Windows = {}
        self._noop_ids: dict[str, dict[str, datetime]] = {}
        self._pending: dict[str, dict[str, datetime]] = {}  # user -> challenge id -> expiry
        # As the user hash's `status_changes`, `phone_changes` and the challenge's `user_changes` (decision
        # 0056): the user's changes of status and of number counted, and the counts each challenge opened at.
        self._user_changes: dict[str, tuple[int, int]] = {}
        self._opened_changes: dict[str, tuple[int, int]] = {}
        self._retention = retention
        self._purge_clock = purge_clock
        self._challenges: dict[str, Challenge] = {}
        self._requests: dict[tuple[str, str], tuple[str, datetime]] = {}
        self._resend_requests: dict[tuple[str, str], ResendClaimed] = {}  # (user, request id): decision 0065
        self._challenge_journals: dict[str, list[dict[str, str]]] = {}
        self._proofs: dict[str, str] = {}  # the JWS record_proof kept, by challenge (decision 0026)
        self._messages: dict[str, dict[str, DeliveryState]] = {}  # per challenge: provider ref -> state
        self._unconfirmed: set[str] = set()  # challenges a try of which may have reached the phone (0097)
        # per challenge: entry id -> the attempt whose send was recorded (record_dispatch.lua, decision 0056)
        self._dispatched: dict[str, dict[str, str]] = {}
        self._ignored_reports: dict[str, int] = {}  # per challenge: reports that moved nothing, journaled
        self._denials: Windows = {}  # per user: the hour of its denials (decision 0050)
        self._consumed: dict[str, str] = {}  # challenge id -> the request id of the change it authorised
        # Send budgets: each unit by its member (the SMS it paid for, decision 0101), when it was taken.
        self._sends: dict[BudgetSubject, dict[str, datetime]] = {}
        # per challenge: (event, outcome) -> (count, last at); only the first refusal of a kind is journaled
        self._refusals: dict[str, dict[tuple[str, str], tuple[int, datetime]]] = {}
        self.risk_histories: dict[str, RiskHistory] = {}  # the users' risk memory (decision 0032)
        self.outbox: MemoryOutbox | None = (
            None  # the challenges' outbox, where a user's change queues a notice
        )

    def _unit_back(self, user_id: str, unit: str) -> None:
        """As _user_unit.lua's ZREM: the user's unit named `unit` given back ('' or not found: nothing)."""
        if unit:
            self._sends.get(BudgetSubject.user(user_id), {}).pop(unit, None)

    def _count_for_user(
        self, user_id: str, challenge_id: str, result: VerifyResult, at: datetime, lockout: LockoutPolicy
    ) -> datetime | None:
        """The user's half of record_verification.lua; the end of a block this attempt started, if any.

        Called under the store's lock, in the same step as the challenge's decision.
        """
        user = self._users.get(user_id)
        if user is None:
            return None
        if result is VerifyResult.WRONG_CODE:
            failures, outcome, started = user.failures + 1, "counted", None
            if failures >= lockout.max_failures:
                started = ms(at) + lockout.block_length(user.blocks + 1)
                outcome, failures = "blocked", 0
                # As record_verification.lua: a block counts as a change of standing (decision 0013).
                counted = self._user_changes.get(user_id, (0, 0))
                self._user_changes[user_id] = (counted[0] + 1, counted[1])
                user = dataclasses.replace(
                    user, blocks=user.blocks + 1, blocked_until=started, changes=self._user_changes[user_id]
                )
            user = dataclasses.replace(user, failures=failures)
            self._users[user_id] = user
            self._count_event(
                user, "user.failed_attempt", at, outcome, challenge_id=challenge_id, until=started
            )
            return started
        if result is VerifyResult.VERIFIED and (user.failures, user.blocks, user.blocked_until) != (
            0,
            0,
            None,
        ):
            user = dataclasses.replace(user, failures=0, blocks=0, blocked_until=None)
            self._users[user_id] = user
            self._count_event(
                user, "user.successful_attempt", at, "reset", challenge_id=challenge_id, until=None
            )
        return None

    def _count_event(  # noqa: PLR0913 (the fields of one journal entry)
        self, user: User, event: str, at: datetime, outcome: str, *, challenge_id: str, until: datetime | None
    ) -> None:
        self._journal(
            user.user_id,
            {
                "event": event,
                "at": iso(at),
                "user_id": user.user_id,
                "challenge_id": challenge_id,
                "outcome": outcome,
                "failures": str(user.failures),
                "blocks": str(user.blocks),
                "blocked_until": unix_ms(until),
            },
        )

    def _track(self, user_id: str, challenge_id: str, expires_at: datetime, forget_before: datetime) -> None:
        """Index an opening challenge, dropping the entries expired before `forget_before`."""
        pending = self._forget(user_id, forget_before)
        pending[challenge_id] = ms(expires_at)

    def _untrack(self, challenge: Challenge) -> None:
        """A challenge closed (verified, locked, voided, cancelled) leaves its user's index (decision 0093);
        an open one stays."""
        if challenge.status is not ChallengeStatus.OPEN:
            self._pending.get(challenge.user_id, {}).pop(challenge.challenge_id, None)

    def _forget(self, user_id: str, before: datetime) -> dict[str, datetime]:
        """The user's index without the entries expiring at or before `before` (ZREMRANGEBYSCORE)."""
        kept = {cid: at for cid, at in self._pending.get(user_id, {}).items() if at > ms(before)}
        self._pending[user_id] = kept
        return kept

    def _journal(self, user_id: str, entry: dict[str, str]) -> None:
        self._user_journals.setdefault(user_id, []).append(entry)

    def _journal_noop(self, user_id: str, entry: dict[str, str], at: datetime) -> None:
        """As _noops.lua's journal_noop: the user's first `journaled_per_hour` an hour, then counted."""
        added = journaled_hourly(self._noops, user_id, self._noop_limits.journaled_per_hour, at)
        if added is not None:
            self._journal(user_id, entry | added)

    def _forget_old_noops(self, user_id: str, at: datetime) -> None:
        """As _noops.lua's forget_old_noops: the no-ops' ids past `ids_for` forgotten."""
        ids = self._noop_ids.setdefault(user_id, {})
        for old, when in list(ids.items()):
            if when <= at - self._noop_limits.ids_for:
                del ids[old]
                del self._changes[(user_id, old)]

    def _noop_room(self, user_id: str, at: datetime) -> datetime | None:
        """As _noops.lua's noop_room: the no-ops' ids past `ids_for` forgotten; None when fewer than
        `ids_kept` are left, else when the oldest left is forgotten."""
        self._forget_old_noops(user_id, at)
        ids = self._noop_ids[user_id]
        if len(ids) < self._noop_limits.ids_kept:
            return None
        return min(ids.values()) + self._noop_limits.ids_for

    def _remember_noop(self, user_id: str, request_id: str, record: AppliedChange, at: datetime) -> None:
        """As _noops.lua's remember_noop, room made by `_noop_room`."""
        self._changes[(user_id, request_id)] = record
        self._noop_ids.setdefault(user_id, {})[request_id] = at

    def _refused(self, challenge_id: str, event: str, outcome: str, at: datetime) -> bool:
        """Count one refusal; whether it is the first of its kind, the one to journal (as the scripts)."""
        counts = self._refusals.setdefault(challenge_id, {})
        count = counts.get((event, outcome), (0, at))[0]
        counts[(event, outcome)] = (count + 1, ms(at))
        return count == 0

    def _live(self, challenge_id: str) -> Challenge | None:
        """The challenge unless its retention has run out, as Redis's PEXPIREAT would have purged it."""
        challenge = self._challenges.get(challenge_id)
        if challenge is None or self._purge_clock is None:
            return challenge
        if self._purge_clock.now() >= challenge.expires_at + self._retention:
            del self._challenges[challenge_id]
            self._opened_changes.pop(challenge_id, None)
            self._unconfirmed.discard(challenge_id)
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
            "at": iso(at),
            "challenge_id": challenge.challenge_id,
            "user_id": challenge.user_id,
            "client_id": challenge.client_id,
            "op_digest": challenge.op_digest.hex(),
            "outcome": outcome,
            "attempts": str(challenge.attempts),
            "status": challenge.status.value,
        }
        self._challenge_journals.setdefault(challenge.challenge_id, []).append({**entry, **extra})
