"""The Users fake: users and their lifecycle in `Memory`, each method mirroring its Lua script
(`register_user`, `change_user_status`, `unblock_user`, `change_secure_phone`...)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime

from sesame.server.domain.dispatching import NoticeAddressee
from sesame.server.domain.errors import (
    ChallengeMismatch,
    NoopsFull,
    PhoneUnchanged,
    RequestIdReused,
    UserAlreadyExists,
    UserNotActive,
    UserNotFound,
)
from sesame.server.domain.lifecycle import (
    AppliedChange,
    ByChallenge,
    PhoneChange,
    PhoneChanged,
    PhoneChangeOutcome,
    Provenance,
    RevocationOutcome,
    StatusAction,
    StatusChange,
    StatusChanged,
    Unblocked,
    Unblocking,
    UnblockOutcome,
    UserNotice,
)
from sesame.server.domain.model import User, UserStatus
from sesame.server.domain.ports import Users
from sesame.server.domain.privacy import mask_phone
from tests.fakes.journal_fields import authority_fields, context_fields, iso, ms, provenance_fields, unix_ms
from tests.fakes.memory import Memory


class MemoryUsers:
    """Users in the shared memory, under its one lock."""

    def __init__(self, memory: Memory) -> None:
        self._m = memory

    @property
    def memory(self) -> Memory:
        """The shared memory (the fake risk memory keeps its histories there, as Redis keeps them beside)."""
        return self._m

    async def register_user(self, user: User, *, caller: str = "", request_id: str = "") -> User:
        async with self._m._lock:
            stored = self._m._users.get(user.user_id)
            if stored is not None:
                if stored.status is UserStatus.REVOKED:
                    raise UserNotActive(user.user_id)
                if (stored.client_id, stored.secure_phone, stored.locale) != (
                    user.client_id,
                    user.secure_phone,
                    user.locale,
                ):
                    raise UserAlreadyExists(user.user_id)
                return stored
            if user.user_id in self._m._user_journals:
                raise UserNotActive(user.user_id)  # spent when its client was terminated
            stored = dataclasses.replace(user, enrolled_at=ms(user.enrolled_at))
            self._m._users[user.user_id] = stored
            self._m._journal(
                user.user_id,
                {
                    "event": "user.enrolled",
                    "at": iso(user.enrolled_at),
                    "user_id": user.user_id,
                    "client_id": user.client_id,
                    "phone": mask_phone(user.secure_phone),
                    "locale": user.locale,
                    "status": user.status.value,
                    **({"caller": caller} if caller else {}),
                    **({"request_id": request_id} if request_id else {}),
                },
            )
            return stored

    async def get_user(self, user_id: str) -> User:
        try:
            return self._m._users[user_id]
        except KeyError:
            raise UserNotFound(user_id) from None

    async def change_user_status(self, change: StatusChange) -> StatusChanged:
        async with self._m._lock:
            if change.user_id not in self._m._users:
                raise UserNotFound(change.user_id)
            outcome = self._status(change, change.provenance.request_id, change.user_id)
            if outcome == "refused":
                raise UserNotActive(change.user_id)
            user = self._m._users[change.user_id]
            if outcome == "replayed":  # the counts its change left, as recorded then
                return StatusChanged(
                    user, self._m._changes[(user.user_id, change.provenance.request_id)].counts
                )
            opened = self._open_at(user.user_id, change.at) if outcome in ("suspended", "revoked") else 0
            changed = outcome in ("suspended", "revoked", "reinstated", "unblocked")
            return StatusChanged(user, self._counts(user.user_id), opened, changed)

    def _open_at(self, user_id: str, at: datetime) -> int:
        """As change_user_status.lua and change_secure_phone.lua: the user's challenges open at the change
        (its pending index, by expiry; decision 0102)."""
        return sum(1 for expiry in self._m._pending.get(user_id, {}).values() if expiry > ms(at))

    async def revoke_client_user(
        self, client_id: str, user_id: str, at: datetime, provenance: Provenance
    ) -> RevocationOutcome:
        async with self._m._lock:
            change = StatusChange(user_id, StatusAction.REVOKE, at, provenance)
            if user_id not in self._m._users:
                if user_id not in self._m._user_journals:
                    head = self._status_head(change)
                    self._m._journal(
                        user_id,
                        {**head, "client_id": client_id, "outcome": "foreclosed", "status": "revoked"},
                    )
                return RevocationOutcome.FORECLOSED
            if self._m._users[user_id].client_id != client_id:
                return RevocationOutcome.FOREIGN
            outcome = self._status(change, "", user_id)
            return RevocationOutcome.REVOKED if outcome == "revoked" else RevocationOutcome.UNCHANGED

    def _status(self, change: StatusChange, record_id: str, user_id: str) -> str:
        """The transition of change_user_status.lua on an existing user; returns its outcome."""
        if record_id and self._replayed((user_id, record_id), change.fingerprint, change.at):
            return "replayed"
        user = self._m._users[user_id]
        status, outcome = _transition(user, change.action)
        # As _user_status.lua: a no-op's id remembered when there is room, else a reinstatement refused and a
        # restriction answered unremembered (decision 0150).
        full = self._m._noop_room(user_id, ms(change.at)) if outcome == "unchanged" and record_id else None
        if full is not None and change.action is StatusAction.REINSTATE:
            raise NoopsFull(user_id, full - ms(change.at))
        if outcome in ("suspended", "reinstated", "revoked"):
            counted = self._counts(user_id)  # as change_user_status.lua (0056)
            self._m._user_changes[user_id] = (counted[0] + 1, counted[1])
            user = dataclasses.replace(
                user, status=status, status_changed_at=ms(change.at), changes=self._m._user_changes[user_id]
            )
        if outcome in ("reinstated", "unblocked"):
            user = dataclasses.replace(user, failures=0, blocks=0, blocked_until=None)
        self._m._users[user_id] = user
        entry = {"client_id": user.client_id, "outcome": outcome, "status": status.value}
        noop = outcome in ("unchanged", "refused")  # journaled and remembered as no-ops (decision 0054)
        if noop:
            self._m._journal_noop(user_id, {**self._status_head(change), **entry}, ms(change.at))
        else:
            self._m._journal(user_id, {**self._status_head(change), **entry})
        record = AppliedChange(change.fingerprint, self._counts(user_id))  # as change_user_status.lua
        if noop and record_id:
            if outcome == "unchanged" and full is None:
                self._m._remember_noop(user_id, record_id, record, ms(change.at))
        elif record_id:
            self._m._changes[(user_id, record_id)] = record
        return outcome

    def _replayed(self, key: tuple[str, str], fingerprint: str, at: datetime) -> AppliedChange | None:
        """The record of this request, applied before under its request id; RequestIdReused for another's.
        As _noops.lua's lookup_applied: the no-ops' ids past their time forgotten first."""
        self._m._forget_old_noops(key[0], ms(at))
        seen = self._m._changes.get(key)
        if seen is not None and seen.fingerprint != fingerprint:
            raise RequestIdReused
        return seen

    def _counts(self, user_id: str) -> tuple[int, int]:
        """The user's (status, number) change counts, as the scripts read them (0 before any, 0056)."""
        return self._m._user_changes.get(user_id, (0, 0))

    def _journal_noop(self, at: datetime) -> Callable[[str, dict[str, str]], None]:
        """Journal a no-op at `at` as _noops.lua does (decision 0054)."""
        return lambda user_id, entry: self._m._journal_noop(user_id, entry, ms(at))

    @staticmethod
    def _status_head(change: StatusChange) -> dict[str, str]:
        return {
            "event": f"user.{change.action.value}",
            "at": iso(change.at),
            "user_id": change.user_id,
            **provenance_fields(change.provenance),
        }

    async def unblock_user(self, unblocking: Unblocking) -> Unblocked:
        async with self._m._lock:
            user = await self.get_user(unblocking.user_id)
            key = (unblocking.user_id, unblocking.provenance.request_id)
            if self._replayed(key, unblocking.fingerprint, unblocking.at):
                return Unblocked(UnblockOutcome.REPLAYED, user)
            outcome = "unchanged"
            if user.status is UserStatus.REVOKED:
                outcome = "refused"
            elif user.failures > 0 or user.blocked_until is not None:
                outcome = "unblocked"
                self._m._users[user.user_id] = dataclasses.replace(user, failures=0, blocked_until=None)
            elif (full := self._m._noop_room(user.user_id, ms(unblocking.at))) is not None:
                raise NoopsFull(user.user_id, full - ms(unblocking.at))  # as unblock_user.lua (0150)
            journal = self._m._journal if outcome == "unblocked" else self._journal_noop(unblocking.at)
            journal(
                user.user_id,
                {
                    "event": "user.unblock",
                    "at": iso(unblocking.at),
                    "user_id": user.user_id,
                    **provenance_fields(unblocking.provenance),
                    "outcome": outcome,
                    "status": user.status.value,
                    "failures": str(user.failures),
                    "blocks": str(user.blocks),
                    "blocked_until": unix_ms(user.blocked_until),
                },
            )
            if outcome == "refused":
                raise UserNotActive(user.user_id)
            if outcome == "unchanged":
                self._m._remember_noop(*key, AppliedChange(unblocking.fingerprint), ms(unblocking.at))
            else:
                self._m._changes[key] = AppliedChange(unblocking.fingerprint)
            return Unblocked(UnblockOutcome(outcome), self._m._users[user.user_id])

    async def change_secure_phone(self, change: PhoneChange) -> PhoneChanged:
        async with self._m._lock:
            user = await self.get_user(change.user_id)
            key = (change.user_id, change.provenance.request_id)
            seen = self._replayed(key, change.fingerprint, change.at)
            if seen is not None:
                return PhoneChanged(PhoneChangeOutcome.REPLAYED, user, "", seen.counts)
            outcome = _phone_outcome(user, change)
            if outcome == "changed" and user.secure_phone == change.new_phone:
                raise PhoneUnchanged(change.user_id)  # as change_secure_phone.lua: nothing written
            changed = outcome == "changed"
            journal = self._m._journal if changed else self._journal_noop(change.at)
            journal(
                change.user_id,
                {
                    "event": "user.change_phone",
                    "at": iso(change.at),
                    "user_id": change.user_id,
                    **provenance_fields(change.provenance),
                    **authority_fields(change),
                    **context_fields(change.context),
                    "client_id": user.client_id,
                    "outcome": outcome,
                    "status": user.status.value,
                    "old_phone": mask_phone(user.secure_phone),
                    "phone": mask_phone(change.new_phone),
                    "cooling_until": unix_ms(change.cooling_until) if changed else "0",
                },
            )
            if outcome == "refused":
                raise UserNotActive(change.user_id)
            if outcome == "mismatch":
                raise ChallengeMismatch(change.user_id)
            self._m._users[change.user_id] = dataclasses.replace(
                user,
                secure_phone=change.new_phone,
                phone_changed_at=ms(change.at),
                cooling_until=ms(change.cooling_until),
            )
            counted = self._counts(change.user_id)  # as change_secure_phone.lua (0056)
            self._m._user_changes[change.user_id] = (counted[0], counted[1] + 1)
            self._m._changes[key] = AppliedChange(change.fingerprint, self._counts(change.user_id))
            self._m._users[change.user_id] = dataclasses.replace(
                self._m._users[change.user_id], changes=self._m._user_changes[change.user_id]
            )
            # As change_secure_phone.lua: the notice to the old number queued in the step (decision 0041).
            if self._m.outbox is not None:
                if isinstance(change.authority, ByChallenge):
                    self._m.outbox.queue(change.authority.challenge_id, ms(change.at), "phone_changed")
                else:  # an override's: the old number kept beside the user for the dispatcher
                    addressee = NoticeAddressee(user.secure_phone, change.new_phone, user.locale)
                    self._m.outbox.queue_override(change.user_id, ms(change.at), addressee)
            after = self._m._users[change.user_id]
            return PhoneChanged(
                PhoneChangeOutcome.CHANGED,
                after,
                user.secure_phone,
                self._counts(user.user_id),
                self._open_at(user.user_id, change.at),
            )

    async def applied_change(self, user_id: str, request_id: str) -> AppliedChange | None:
        return self._m._changes.get((user_id, request_id))

    async def record_user_notice(
        self, user_id: str, notice: UserNotice, *, outcome: str = "", extra: dict[str, str] | None = None
    ) -> None:
        """The user.notice entry; `outcome` and `extra` for the outbox's failed tries (decision 0041)."""
        async with self._m._lock:
            self._m._journal(
                user_id,
                {
                    "event": "user.notice",
                    "at": iso(notice.at),
                    "user_id": user_id,
                    "kind": notice.kind,
                    "phone": mask_phone(notice.to),
                    "outcome": outcome or ("sent" if notice.sent else "failed"),
                    "provider_ref": notice.provider_ref,
                    **({} if notice.text is None else notice.text.journal_fields()),
                    **(extra or {}),
                },
            )

    async def user_journal(self, user_id: str) -> list[dict[str, str]]:
        return list(self._m._user_journals.get(user_id, []))


# change_user_status.lua: (status, action) -> (status after, journaled outcome). From revoked, only revoke
# is accepted; reinstating an active user lifts a block after wrong codes in a row, if there is one.
_TRANSITIONS = {
    (UserStatus.ACTIVE, StatusAction.SUSPEND): (UserStatus.SUSPENDED, "suspended"),
    (UserStatus.SUSPENDED, StatusAction.SUSPEND): (UserStatus.SUSPENDED, "unchanged"),
    (UserStatus.REVOKED, StatusAction.SUSPEND): (UserStatus.REVOKED, "refused"),
    (UserStatus.ACTIVE, StatusAction.REINSTATE): (UserStatus.ACTIVE, "unchanged"),
    (UserStatus.SUSPENDED, StatusAction.REINSTATE): (UserStatus.ACTIVE, "reinstated"),
    (UserStatus.REVOKED, StatusAction.REINSTATE): (UserStatus.REVOKED, "refused"),
    (UserStatus.ACTIVE, StatusAction.REVOKE): (UserStatus.REVOKED, "revoked"),
    (UserStatus.SUSPENDED, StatusAction.REVOKE): (UserStatus.REVOKED, "revoked"),
    (UserStatus.REVOKED, StatusAction.REVOKE): (UserStatus.REVOKED, "unchanged"),
}


def _transition(user: User, action: StatusAction) -> tuple[UserStatus, str]:
    """The status after `action` and the journaled outcome, as change_user_status.lua decides them."""
    status, outcome = _TRANSITIONS[(user.status, action)]
    blocked = user.failures > 0 or user.blocks > 0 or user.blocked_until is not None
    if action is StatusAction.REINSTATE and outcome == "unchanged" and blocked:
        return status, "unblocked"
    return status, outcome


def _phone_outcome(user: User, change: PhoneChange) -> str:
    """Whether change_secure_phone.lua changes the number, or refuses it (status) or finds it moved."""
    if user.status not in change.allowed:
        return "refused"
    if change.expected_phone is not None and user.secure_phone != change.expected_phone:
        return "mismatch"
    counts = change.unchanged_counts  # by the counts when the challenge has them (decision 0056)
    if counts is not None and (user.changes[0] > counts[0] or user.changes[1] > counts[1]):
        return "mismatch"
    since = change.unchanged_since
    moved = [at for at in (user.status_changed_at, user.phone_changed_at) if at is not None]
    if since is not None and any(at > ms(since) for at in moved):
        return "mismatch"
    return "changed"


_: type[Users] = MemoryUsers
