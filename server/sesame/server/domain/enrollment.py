"""The registry flows: enrol, describe, suspend, reinstate, unblock, revoke, change the number, terminate.

Each change of a user is one atomic, journaled step on the user's Redis slot; voiding the user's pending
challenges is one more step per challenge on its own slot, after the status change, so that a crash in
between leaves the user suspended (or revoked) and a second call voids the rest (docs/decisions/0010).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sesame.server.domain.destinations import check_enrolled_phone
from sesame.server.domain.errors import ClientNotFound, UserAlreadyExists, UserNotActive, UserNotFound
from sesame.server.domain.lifecycle import (
    Authority,
    ClientTermination,
    LifecyclePolicy,
    Provenance,
    RevocationOutcome,
    StatusAction,
    StatusChange,
    Unblocked,
    Unblocking,
    UnblockOutcome,
    Voiding,
    VoidReason,
)
from sesame.server.domain.model import RequestContext, User, UserStatus
from sesame.server.domain.phone_change import PhoneChangeFlow, PhoneChangeResult
from sesame.server.domain.tally import UNTALLIED, Tally
from sesame.server.domain.to_the_end import to_the_end
from sesame.server.domain.voiding import void_pending

if TYPE_CHECKING:
    from sesame.server.domain.ports import Clock, State


@dataclass(frozen=True, slots=True)
class EnrollRequest:
    """A validated EnrollUser call."""

    user_id: str
    client_id: str
    secure_phone: str
    locale: str
    caller: str = ""  # the calling service, journaled with the enrolment
    request_id: str = ""  # the caller's, journaled (idempotency is by content)


@dataclass(frozen=True, slots=True)
class StatusRequest:
    """A validated SuspendUser, ReinstateUser or RevokeUser call."""

    user_id: str
    provenance: Provenance


@dataclass(frozen=True, slots=True)
class StatusResult:
    """The user after the change, and how many of its pending challenges this call voided."""

    user: User
    voided: int = 0


@dataclass(frozen=True, slots=True)
class PhoneRequest:
    """A validated ChangeSecurePhone call."""

    user_id: str
    new_phone: str
    authority: Authority
    provenance: Provenance
    context: RequestContext


@dataclass(frozen=True, slots=True)
class TerminateRequest:
    """A validated TerminateClient call."""

    client_id: str
    provenance: Provenance


class EnrollmentFlows:
    """The user registry as the client company and the bank's back office see it."""

    def __init__(
        self,
        *,
        store: State,
        clock: Clock,
        policy: LifecyclePolicy | None = None,
        tally: Tally = UNTALLIED,
    ) -> None:
        self._store = store
        self._clock = clock
        self._tally = tally
        self._countries = (policy or LifecyclePolicy()).countries
        self._phone = PhoneChangeFlow(
            store=store, clock=clock, policy=policy or LifecyclePolicy(), tally=tally
        )

    async def enroll(self, request: EnrollRequest) -> User:
        """Register the user, or return it unchanged when this exact enrolment was already done."""
        check_enrolled_phone("secure_phone", request.secure_phone, self._countries)
        now = self._clock.now()
        user = User(
            user_id=request.user_id,
            client_id=request.client_id,
            secure_phone=request.secure_phone,
            locale=request.locale,
            status=UserStatus.ACTIVE,
            enrolled_at=now,
        )
        # Both steps, to their end: cut between them, the client listed a user never registered (an audit).
        return await to_the_end(self._enrolled(user, request))

    async def _enrolled(self, user: User, request: EnrollRequest) -> User:
        # Listed before it exists: a termination running meanwhile either refuses the enrolment or finds
        # the id and revokes the user, or spends the id if the user is not there yet.
        await self._store.clients.enlist_user(user.client_id, user.user_id, user.enrolled_at)
        try:
            return await self._store.users.register_user(
                user, caller=request.caller, request_id=request.request_id
            )
        except (UserAlreadyExists, UserNotActive):
            # Refused: the id stays listed only under the client whose user it is. Listed under another,
            # each refused call left the client's record and its index for good (an outside audit).
            await self._delisted_unless_ours(user)
            raise

    async def _delisted_unless_ours(self, user: User) -> None:
        try:
            stored = await self._store.users.get_user(user.user_id)
        except UserNotFound:
            return
        if stored.client_id != user.client_id:
            await self._store.clients.delist_user(user.client_id, user.user_id)

    async def get(self, user_id: str) -> User:
        """The enrolled user."""
        return await self._store.users.get_user(user_id)

    async def suspend(self, request: StatusRequest) -> StatusResult:
        """Suspend at once (loss or theft, CMF L.133-17), then void every pending challenge."""
        return await self._change(request, StatusAction.SUSPEND, VoidReason.USER_SUSPENDED)

    async def reinstate(self, request: StatusRequest) -> StatusResult:
        """Make a suspended user ACTIVE again, and lift a block after wrong codes in a row."""
        return await self._change(request, StatusAction.REINSTATE, None)

    async def unblock(self, request: StatusRequest) -> Unblocked:
        """Lift a block after wrong codes in a row (RTS Art. 4(3)(b)) once the bank checked with the user.

        Nothing is voided: the user's open challenges stay as they are, and each still counts its attempts.
        """
        return await to_the_end(
            self._unblocked(Unblocking(request.user_id, self._clock.now(), request.provenance))
        )

    async def _unblocked(self, unblocking: Unblocking) -> Unblocked:
        """The unblock's step and its count, to their end (a caller that gave up left it uncounted)."""
        unblocked = await self._store.users.unblock_user(unblocking)
        if unblocked.outcome is UnblockOutcome.UNBLOCKED:
            self._tally.changed("unblock")
        return unblocked

    async def revoke(self, request: StatusRequest) -> StatusResult:
        """Revoke the user for good (RTS Art. 27), then void every pending challenge."""
        return await self._change(request, StatusAction.REVOKE, VoidReason.USER_REVOKED)

    async def change_phone(self, request: PhoneRequest) -> PhoneChangeResult:
        """Replace the secure number, by a verified challenge on the old one or by override."""
        return await self._phone.change(
            request.user_id, request.new_phone, request.authority, request.provenance, request.context
        )

    async def terminate_client(self, request: TerminateRequest) -> int:
        """Refuse the client's enrolments from now on, then revoke each of its users; the number revoked.

        Idempotent and resumable: a second call after an interruption revokes (and voids) the rest; a caller
        that gives up does not interrupt it.
        """
        return await to_the_end(self._terminated(request))

    async def _terminated(self, request: TerminateRequest) -> int:
        now = self._clock.now()
        if not await self._any_enrolled(request.client_id):
            # A client whose index holds only an enrolment being refused (another client's user: taken out
            # again once refused) was terminated when this call landed in between, empty and for good: the
            # company's first real enrolment was refused (an outside audit, AP3). No user, no client.
            raise ClientNotFound(request.client_id)
        # Counted when this call terminated the client: a retried one counted each call (an outside audit).
        if await self._store.clients.terminate_client(
            ClientTermination(request.client_id, now, request.provenance)
        ):
            self._tally.changed("terminate_client")
        revoked = 0
        # Read once terminated (no enrolment lists an id after that): a user enrolled between a read before
        # and the termination stayed ACTIVE, its client terminated (an outside audit, AS1).
        for user_id in sorted(await self._store.clients.client_users(request.client_id)):
            outcome = await self._store.users.revoke_client_user(
                request.client_id, user_id, now, request.provenance
            )
            if outcome in (RevocationOutcome.FOREIGN, RevocationOutcome.FORECLOSED):
                continue  # another client's user (its enrolment here was refused), or no user at all
            if outcome is RevocationOutcome.REVOKED:
                self._tally.changed("revoke")
            revoked += 1
            # Whatever is still open: a revoked user opens nothing from then on (revocation is final).
            voiding = Voiding(user_id, VoidReason.USER_REVOKED, now, request.provenance)
            await void_pending(self._store, voiding, tally=self._tally)
        return revoked

    async def _any_enrolled(self, client_id: str) -> bool:
        """Whether one of the ids `client_id`'s index lists is a user of that client: a read each, up to the
        first that is (one, but for ids of enrolments under way or being refused)."""
        for user_id in sorted(await self._store.clients.client_users(client_id)):
            try:
                if (await self._store.users.get_user(user_id)).client_id == client_id:
                    return True
            except UserNotFound:
                continue  # an enrolment under way, or refused
        return False

    async def _change(
        self, request: StatusRequest, action: StatusAction, reason: VoidReason | None
    ) -> StatusResult:
        """The user's step, then the voiding of its pending challenges: both, even when the caller gives up
        between them (a suspension cut there left codes OPEN until a retry)."""
        return await to_the_end(self._changed(request, action, reason))

    async def _changed(
        self, request: StatusRequest, action: StatusAction, reason: VoidReason | None
    ) -> StatusResult:
        now = self._clock.now()
        changed = await self._store.users.change_user_status(
            StatusChange(request.user_id, action, now, request.provenance)
        )
        # Counted when made: a retried suspension counted each call, and misled an alert on a rise of them
        # (an outside audit).
        if changed.changed:
            self._tally.changed(action.value)
        if reason is None:
            return StatusResult(changed.user)
        # Also when nothing changed: a retry after a crash voids what the first call did not reach, and only
        # that: what the user opened since (reinstated meanwhile) is not this change's to void.
        voiding = Voiding(changed.user.user_id, reason, now, request.provenance, opened_before=changed.counts)
        voided = await void_pending(self._store, voiding, tally=self._tally)
        # Those a Verify or the outbox's take marked void first, after the change, are the change's too.
        return StatusResult(changed.user, max(voided, changed.open_at_change))
