"""An in-memory Outbox with the semantics of `RedisOutbox` (the contract suite holds them together).

The fake store queues into it (as Start's and Resend's scripts append to the stream); settling records
the send on the store's challenge, as record_dispatch.lua does, and removes the entry.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sesame.server.domain.dispatching import (
    UNCONFIRMED,
    Backlog,
    DeadLetter,
    FailedTry,
    NoticeAddressee,
    NoticeFailure,
    QueuedSms,
    given_up,
)
from sesame.server.domain.errors import ChallengeNotFound
from sesame.server.domain.lifecycle import UserNotice
from sesame.server.domain.model import Challenge, DeliveryState
from sesame.server.domain.ports import Clock, DeadLetters, Outbox
from sesame.server.domain.privacy import mask_phone
from sesame.server.domain.sent_text import SentText
from tests.fakes.users import MemoryUsers

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tests.fakes.challenges import MemoryChallenges


@dataclass(slots=True)
class _Pending:
    consumer: str
    since: datetime
    deliveries: int = 1  # as XPENDING counts: the take, then each claim


class MemoryOutbox:
    """Entries in queue order; each given to one consumer and pending with it until settled."""

    def __init__(self, store: MemoryChallenges, clock: Clock) -> None:
        self._store = store
        self._clock = clock  # when an entry became pending: what `reclaim` compares `idle` with
        self._ids = itertools.count(1)
        self._attempts = itertools.count(1)  # each take or claim of an entry its own attempt (decision 0056)
        self._settled_notices: dict[str, str] = {}  # entry id -> the attempt whose notice was journaled
        self._unconfirmed_notices: set[str] = set()  # entries a try of which may have reached the phone
        self._entries: dict[str, QueuedSms] = {}  # in queue order (dicts keep insertion order)
        # The member of its user's send budget each code entry paid for (its hold's name, decision 0101).
        self._units: dict[str, str] = {}
        self._pending: dict[str, _Pending] = {}
        self.dead: list[DeadLetter] = []  # oldest first
        # As the addressee hashes beside the users: an override notice's old number, by notice id (0041).
        self.addressees: dict[str, NoticeAddressee] = {}

    def queue(  # noqa: PLR0913 (what the entry holds)
        self,
        challenge_id: str,
        at: datetime,
        notice: str = "",
        until: datetime | None = None,
        *,
        hold: str = "",
        unit: str = "",
    ) -> str:
        """Append an entry (what the store does in the step that opens, resends, or makes a change a notice
        reports), the user's send unit it paid for named `unit` ('' none); its id."""
        entry_id = f"{next(self._ids)}-0"
        self._entries[entry_id] = QueuedSms(entry_id, challenge_id, at, notice, until, hold=hold)
        if unit:
            self._units[entry_id] = unit
        return entry_id

    def _unit(self, entry_id: str) -> str:
        """As _user_unit.lua: the user's unit the entry paid for, while the entry is in its first hand-out
        (XPENDING's count 1: taken again, it may have been handed over already); '' otherwise."""
        pending = self._pending.get(entry_id)
        if entry_id not in self._entries or pending is None or pending.deliveries != 1:
            return ""
        return self._units.get(entry_id, "")

    def _drop(self, entry_id: str) -> None:
        """The entry acknowledged and deleted."""
        self._entries.pop(entry_id, None)
        self._pending.pop(entry_id, None)
        self._units.pop(entry_id, None)

    def holds(self, entry_id: str) -> bool:
        """Whether the entry is still in the outbox (not settled, not dead-lettered)."""
        return entry_id in self._entries

    def queue_override(self, user_id: str, at: datetime, addressee: NoticeAddressee) -> None:
        """Append an override's phone-changed notice, its addressee kept beside (change_secure_phone.lua)."""
        entry_id = f"{next(self._ids)}-0"
        notice_id = f"n{entry_id}"
        self.addressees[notice_id] = addressee
        self._entries[entry_id] = QueuedSms(
            entry_id, "", at, "phone_changed", user_id=user_id, notice_id=notice_id
        )

    async def addressee(self, queued: QueuedSms) -> NoticeAddressee | None:
        return self.addressees.get(queued.notice_id)

    async def take(self, consumer: str, count: int, wait: timedelta) -> list[QueuedSms]:
        fresh = [e for entry_id, e in self._entries.items() if entry_id not in self._pending][:count]
        for entry in fresh:
            self._pending[entry.entry_id] = _Pending(consumer, self._clock.now())
        return [await self._with_challenge(entry) for entry in fresh]

    async def reclaim(self, consumer: str, idle: timedelta, count: int) -> list[QueuedSms]:
        now = self._clock.now()
        idle_ids = [i for i, p in self._pending.items() if now - p.since >= idle][:count]
        for entry_id in idle_ids:
            self._pending[entry_id] = _Pending(consumer, now, self._pending[entry_id].deliveries + 1)
        return [await self._with_challenge(self._entries[entry_id]) for entry_id in idle_ids]

    async def keep(self, consumer: str, entries: Sequence[QueuedSms]) -> int:
        now = self._clock.now()
        kept = 0
        for queued in entries:
            pending = self._pending.get(queued.entry_id)
            if pending is not None and pending.consumer == consumer:
                pending.since = now
                kept += 1
        return kept

    async def _with_challenge(self, entry: QueuedSms) -> QueuedSms:
        """The entry with its challenge as stored now, as take_outbox.lua reads it (None once purged); a code
        SMS whose user changed since its challenge opened withheld: voided, dead-lettered (decision 0054)."""
        now = self._clock.now()
        pending = self._pending[entry.entry_id]
        entry = dataclasses.replace(
            entry, attempt=f"a{next(self._attempts)}", consumer=pending.consumer, taken_at=pending.since
        )
        withheld = self._store.withhold(entry, pending.deliveries, now, self._unit(entry.entry_id))
        if withheld is not None:
            challenge, reason = withheld
            self._drop(entry.entry_id)
            letter = DeadLetter(
                letter_id=f"{len(self.dead) + 1}-0",
                challenge_id=entry.challenge_id,
                user_id=challenge.user_id,
                masked_phone=mask_phone(challenge.phone),
                state=DeliveryState.FAILED,
                reason=reason,
                failure=reason,
                tries=pending.deliveries,
                queued_at=entry.queued_at,
                at=now,
            )
            self.dead.append(letter)
            return dataclasses.replace(entry, challenge=challenge, withheld=reason)
        try:
            return dataclasses.replace(entry, challenge=await self._store.get_challenge(entry.challenge_id))
        except ChallengeNotFound:
            return entry

    async def challenge(self, queued: QueuedSms) -> Challenge:
        return await self._store.get_challenge(queued.challenge_id)

    async def settle(  # noqa: PLR0913 (the entry, what became of it, and what is journaled with it)
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
    ) -> bool:
        unit = self._unit(queued.entry_id)
        self._drop(queued.entry_id)
        return await self._store.record_dispatch(
            queued,
            state,
            provider_ref,
            at,
            text,
            provider_ids=provider_ids,
            unconfirmed=unconfirmed,
            held=held,
            unit=unit,
        )

    async def fail(
        self, queued: QueuedSms, failure: str, at: datetime, allowed: int, *, text: SentText | None = None
    ) -> FailedTry:
        pending = self._pending.get(queued.entry_id)
        tries = pending.deliveries if pending else 1
        challenge = self._store.peek_challenge(queued.challenge_id)
        unit = self._unit(queued.entry_id)
        reason = await self._store.record_failed_try(
            queued, failure, tries, allowed, at, text=text, unit=unit
        )
        if not reason:
            return FailedTry(tries)
        self._drop(queued.entry_id)
        if challenge is not None and reason != "missing":
            state = DeliveryState.EXPIRED if reason == "expired" else DeliveryState.FAILED
            letter = DeadLetter(
                letter_id=f"{len(self.dead) + 1}-0",
                challenge_id=queued.challenge_id,
                user_id=challenge.user_id,
                masked_phone=mask_phone(challenge.phone),
                state=state,
                reason=reason,
                failure=failure,
                tries=tries,
                queued_at=queued.queued_at,
                at=at,
            )
            self.dead.append(letter)
        return FailedTry(tries, reason)

    async def fail_notice(
        self, queued: QueuedSms, user_id: str, notice: UserNotice, failed: NoticeFailure
    ) -> FailedTry:
        """As record_failed_notice.lua: another try (journaled), or the dead letter; no challenge written."""
        pending = self._pending.get(queued.entry_id)
        tries = pending.deliveries if pending else 1
        reason = given_up(
            failed.failure,
            expired=failed.at >= failed.stale_at,
            allowed=failed.allowed,
            tries=tries,
            earlier=queued.entry_id in self._unconfirmed_notices,
        )
        extra = {"challenge_id": queued.challenge_id, "failure": failed.failure, "tries": str(tries)}
        users = MemoryUsers(self._store._m)
        if not reason:
            if failed.failure in UNCONFIRMED:
                self._unconfirmed_notices.add(queued.entry_id)
            await users.record_user_notice(user_id, notice, outcome="try_failed", extra=extra)
            return FailedTry(tries)
        self._unconfirmed_notices.discard(queued.entry_id)
        await users.record_user_notice(user_id, notice, outcome="failed", extra=extra | {"reason": reason})
        self._entries.pop(queued.entry_id, None)
        self.addressees.pop(queued.notice_id, None)
        self._pending.pop(queued.entry_id, None)
        letter = DeadLetter(
            letter_id=f"{len(self.dead) + 1}-0",
            challenge_id=queued.challenge_id,
            user_id=user_id,
            masked_phone=mask_phone(notice.to),
            state=DeliveryState.FAILED,
            reason=reason,
            failure=failed.failure,
            tries=tries,
            queued_at=queued.queued_at,
            at=failed.at,
            notice=queued.notice,
        )
        self.dead.append(letter)
        return FailedTry(tries, reason)

    async def settle_notice(self, queued: QueuedSms, user_id: str, notice: UserNotice) -> bool:
        if queued.attempt and self._settled_notices.get(queued.entry_id) == queued.attempt:
            return False  # as record_notice.lua: this attempt's notice is journaled already (0056)
        await self._store.record_notice(user_id, notice)  # first: a failure leaves the entry pending
        self._entries.pop(queued.entry_id, None)
        self.addressees.pop(queued.notice_id, None)
        self._pending.pop(queued.entry_id, None)
        if queued.attempt:
            self._settled_notices[queued.entry_id] = queued.attempt
        return True

    async def backlog(self) -> Backlog:
        oldest = next(iter(self._entries.values()), None)
        return Backlog(len(self._entries), None if oldest is None else oldest.queued_at)


_: type[Outbox] = MemoryOutbox


class MemoryDeadLetters:
    """The fake outbox's dead letters, newest first (as RedisDeadLetters reads its stream)."""

    def __init__(self, outbox: MemoryOutbox) -> None:
        self._outbox = outbox

    async def recent(self, count: int) -> list[DeadLetter]:
        return list(reversed(self._outbox.dead))[:count]


__: type[DeadLetters] = MemoryDeadLetters
