"""`RedisUsers`: the Users port on Redis (docs/decisions/0038).

Each change is one Lua script on the user's `{s:<n>}` slot that checks, changes and journals at once
(docs/decisions/0002, 0010): enrolment, status, unblocking, the secure number; notices are journaled there.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any, cast

from sesame.clients import redis_records as rec
from sesame.clients.redis_place import RedisPlace
from sesame.clients.redis_scripts import stored_user
from sesame.server.domain.dispatching import NOTICE_MAX_AGE_LIMIT
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
    ByOverride,
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
from sesame.server.domain.model import User
from sesame.server.domain.ports import Users

_REVOCATIONS = {
    b"revoked": RevocationOutcome.REVOKED,
    b"unchanged": RevocationOutcome.UNCHANGED,
    b"foreign": RevocationOutcome.FOREIGN,
    b"foreclosed": RevocationOutcome.FORECLOSED,
}


# What _user_status.lua answers for a call that changed the user (not `unchanged` nor `replayed`).
_CHANGES = frozenset({b"suspended", b"revoked", b"reinstated", b"unblocked"})


class RedisUsers(RedisPlace):
    """The enrolled users in Redis; each method is one atomic, journaled transition on the user's slot."""

    def _noop_limits(self) -> list[int]:
        """The three arguments _noops.lua reads (decision 0058)."""
        noops = self.noops
        return [noops.journaled_per_hour, noops.ids_kept, noops.ids_for // rec.MS]

    async def register_user(self, user: User, *, caller: str = "", request_id: str = "") -> User:
        """Enrol `user`; the same enrolment again returns the stored user (see the port)."""
        fields = rec.user_fields(user)
        args = [
            user.client_id,
            user.secure_phone,
            user.locale,
            len(fields),
            *fields,
            *rec.enrolled_entry(user, caller, request_id),
        ]
        reply = await self._scripts.run("register_user", self._user_keys(user.user_id), args)
        if reply[0] == b"conflict":
            raise UserAlreadyExists(user.user_id)
        if reply[0] == b"revoked":
            raise UserNotActive(user.user_id)
        return stored_user(rec.pairs(reply[1]))

    async def get_user(self, user_id: str) -> User:
        """The enrolled user. UserNotFound."""
        raw = await self._scripts.call("get_user", self._client.hgetall(self.keys.user(user_id)))
        if not raw:
            raise UserNotFound(user_id)
        return stored_user(cast("dict[bytes, bytes]", raw))

    async def change_user_status(self, change: StatusChange) -> StatusChanged:
        """Suspend, reinstate or revoke (see the port). UserNotFound, UserNotActive, RequestIdReused."""
        reply = await self._status_script(change, change.provenance.request_id, "")
        match reply[0]:
            case b"not_found":
                raise UserNotFound(change.user_id)
            case b"refused":
                raise UserNotActive(change.user_id)
            case b"request_conflict":
                raise RequestIdReused
            case b"noops_full":
                raise NoopsFull(change.user_id, rec.from_ms(int(reply[1])) - change.at)
        opened = int(reply[3]) if len(reply) > 3 else 0  # a replay answers none
        changed = reply[0] in _CHANGES
        return StatusChanged(stored_user(rec.pairs(reply[1])), rec.counts_from(reply[2]), opened, changed)

    async def revoke_client_user(
        self, client_id: str, user_id: str, at: datetime, provenance: Provenance
    ) -> RevocationOutcome:
        """Revoke a user for its terminated client (see the port); by content, no request id recorded."""
        change = StatusChange(user_id, StatusAction.REVOKE, at, provenance)
        reply = await self._status_script(change, "", client_id)
        return _REVOCATIONS[reply[0]]

    async def _status_script(self, change: StatusChange, record_id: str, for_client: str) -> Any:
        """restrict_user.lua for a suspension or a revocation, which runs out of memory, and
        change_user_status.lua for a reinstatement, refused whole out of memory (decision 0111): one body,
        _user_status.lua. `record_id` is the request id to record ("" none)."""
        user_id = change.user_id
        head = rec.user_event(f"user.{change.action.value}", user_id, change.at)
        args = [
            change.action.value,
            rec.to_ms(change.at),
            record_id,
            change.fingerprint,
            for_client,
            *self._noop_limits(),
            *head,
            *rec.provenance_fields(change.provenance),
        ]
        keys = [*self._user_keys(user_id), self.keys.user_changes(user_id), self.keys.user_pending(user_id)]
        script = "change_user_status" if change.action is StatusAction.REINSTATE else "restrict_user"
        return await self._scripts.run(script, keys, args)

    async def unblock_user(self, unblocking: Unblocking) -> Unblocked:
        """Lift a block after wrong codes in a row (see the port). UserNotFound, UserNotActive."""
        user_id, provenance = unblocking.user_id, unblocking.provenance
        args = [
            provenance.request_id,
            unblocking.fingerprint,
            rec.to_ms(unblocking.at),
            *self._noop_limits(),
            *rec.user_event("user.unblock", user_id, unblocking.at),
            *rec.provenance_fields(provenance),
        ]
        keys = [*self._user_keys(user_id), self.keys.user_changes(user_id)]
        reply = await self._scripts.run("unblock_user", keys, args)
        match reply[0]:
            case b"not_found":
                raise UserNotFound(user_id)
            case b"refused":
                raise UserNotActive(user_id)
            case b"request_conflict":
                raise RequestIdReused
            case b"noops_full":
                raise NoopsFull(user_id, rec.from_ms(int(reply[1])) - unblocking.at)
        return Unblocked(UnblockOutcome(reply[0].decode()), stored_user(rec.pairs(reply[1])))

    async def change_secure_phone(self, change: PhoneChange) -> PhoneChanged:
        """Replace the number and start the cooling period, atomically (see the port)."""
        notice_id = "" if isinstance(change.authority, ByChallenge) else secrets.token_hex(8)
        args = [
            rec.to_ms(change.at),
            change.new_phone,
            rec.to_ms(change.cooling_until),
            " ".join(sorted(status.value for status in change.allowed)),
            change.expected_phone or "",
            rec.optional_ms(change.unchanged_since),
            change.provenance.request_id,
            change.fingerprint,
            # The notice to the old number is queued in the step, naming the challenge (decision 0041).
            change.authority.challenge_id if isinstance(change.authority, ByChallenge) else "",
            # An override's: its addressee kept beside the user, the entry naming it (decision 0041).
            notice_id,
            NOTICE_MAX_AGE_LIMIT // rec.MS,
            *self._noop_limits(),
            # The counts the challenge opened under, compared in the step (decision 0056): "s:n", '' none.
            rec.counts_field(change.unchanged_counts),
            *rec.user_event("user.change_phone", change.user_id, change.at),
            *rec.provenance_fields(change.provenance),
            *_authority_fields(change),
            *rec.context_fields(change.context),
        ]
        keys = [
            *self._user_keys(change.user_id),
            self.keys.user_changes(change.user_id),
            self.keys.user_outbox(change.user_id),
            self.keys.user_notice(change.user_id, notice_id or "-"),
            self.keys.user_pending(change.user_id),
        ]
        reply = await self._scripts.run("change_secure_phone", keys, args)
        match reply[0]:
            case b"not_found":
                raise UserNotFound(change.user_id)
            case b"refused":
                raise UserNotActive(change.user_id)
            case b"mismatch":
                raise ChallengeMismatch(change.user_id)
            case b"phone_unchanged":
                raise PhoneUnchanged(change.user_id)
            case b"request_conflict":
                raise RequestIdReused
            case b"replayed":
                user, counts = stored_user(rec.pairs(reply[1])), rec.counts_from(reply[2])
                return PhoneChanged(PhoneChangeOutcome.REPLAYED, user, "", counts)
        self._nudge.queued(self.keys.shard_of_user(change.user_id))  # the notice to the old number
        user, counts = stored_user(rec.pairs(reply[2])), rec.counts_from(reply[3])
        return PhoneChanged(PhoneChangeOutcome.CHANGED, user, reply[1].decode(), counts, int(reply[4]))

    async def applied_change(self, user_id: str, request_id: str) -> AppliedChange | None:
        """What was recorded for this request id, if a change was applied under it."""
        seen = await self._scripts.call(
            "applied_change", self._client.hget(self.keys.user_changes(user_id), request_id)
        )
        return None if seen is None else rec.applied_change(cast("bytes", seen))

    async def record_user_notice(self, user_id: str, notice: UserNotice) -> None:
        """Journal a notice sent to the user, the number masked (one script: numbered and sealed, 0035)."""
        entry = rec.notice_entry(user_id, notice)
        await self._scripts.run("record_user_notice", [self.keys.user_journal(user_id)], entry)

    async def user_journal(self, user_id: str) -> list[dict[str, str]]:
        """The user's journal entries, oldest first."""
        return await self._read_journal("user_journal", self.keys.user_journal(user_id))

    def _user_keys(self, user_id: str) -> list[str]:
        return [self.keys.user(user_id), self.keys.user_journal(user_id)]


def _authority_fields(change: PhoneChange) -> list[rec.Field]:
    """How the change was authorised, as journal fields."""
    match change.authority:
        case ByChallenge(challenge_id=challenge_id):
            return ["method", "challenge", "challenge_id", challenge_id, "operator", ""]
        case ByOverride(operator=operator):
            return ["method", "override", "challenge_id", "", "operator", operator]


_: type[Users] = RedisUsers
