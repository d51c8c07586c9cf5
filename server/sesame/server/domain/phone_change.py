"""Changing the secure number: an association (RTS Art. 24), authorised on the old number or by override.

A verified `change_phone` challenge proves that whoever asks holds the old number and agreed to this new
one: it must be the user's, bound to exactly this number, sent to the number being replaced after the
user's last change, and it is spent once (ChangeSecurePhone). Without the old phone (lost, stolen) only the
bank's back office can decide, naming an operator and a reason (OverrideSecurePhone, an RPC of its own so
that the caller policy grants it to back-office identities only). Either way the challenges still open on
the old number are voided, the old number is told (no code in the text; queued in the change's own step,
docs/decisions/0041), and payments wait for a cooling period (docs/decisions/0010, 0012).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sesame.server.domain.destinations import check_enrolled_phone
from sesame.server.domain.errors import (
    ChallengeMismatch,
    ChallengeNotFound,
    RequestIdReused,
)
from sesame.server.domain.lifecycle import (
    Authority,
    ByChallenge,
    Consumption,
    LifecyclePolicy,
    PhoneChange,
    PhoneChangeOutcome,
    Provenance,
    Voiding,
    VoidReason,
)
from sesame.server.domain.model import Challenge, RequestContext, User
from sesame.server.domain.operation import ChangePhone, digest
from sesame.server.domain.tally import UNTALLIED, Tally
from sesame.server.domain.to_the_end import to_the_end
from sesame.server.domain.voiding import void_pending

if TYPE_CHECKING:
    from sesame.server.domain.ports import Clock, State


@dataclass(frozen=True, slots=True)
class PhoneChangeResult:
    """The user with its new number, whether this call told the old number, what it voided."""

    user: User
    # True when this call queued the notice to the old number (the outbox sends it, decision 0041), as a
    # change does in its own step, by challenge or by override; False for a retry of a change made before.
    old_phone_notified: bool
    voided: int = 0  # challenges still open on the old number, voided by this call


class PhoneChangeFlow:
    """ChangeSecurePhone, in the security order: the user, the authority, the change, the notice."""

    def __init__(
        self,
        *,
        store: State,
        clock: Clock,
        policy: LifecyclePolicy,
        tally: Tally = UNTALLIED,
    ) -> None:
        self._store = store
        self._tally = tally
        self._clock = clock
        self._policy = policy

    async def change(
        self,
        user_id: str,
        new_phone: str,
        authority: Authority,
        provenance: Provenance,
        context: RequestContext,
    ) -> PhoneChangeResult:
        """Replace the number, start the cooling period and tell the old number; the voiding of the codes
        sent to the old number runs even when the caller gives up after the change."""
        return await to_the_end(self._changed(user_id, new_phone, authority, provenance, context))

    async def _changed(
        self,
        user_id: str,
        new_phone: str,
        authority: Authority,
        provenance: Provenance,
        context: RequestContext,
    ) -> PhoneChangeResult:
        check_enrolled_phone("new_phone", new_phone, self._policy.countries)
        now = self._clock.now()
        change = PhoneChange(
            user_id, new_phone, now, now + self._policy.cooling, authority, provenance, context
        )
        challenge = None
        if isinstance(authority, ByChallenge):
            challenge = await self._spend(change, authority.challenge_id)
        user = await self._store.users.get_user(user_id)
        # A retry next: the change it repeats moved the number, and the checks below would refuse it.
        applied = await self._store.users.applied_change(user_id, provenance.request_id)
        if applied is not None and applied.fingerprint == change.fingerprint:
            voided = await self._void_pending(change, applied.counts)  # what a crash left open
            return PhoneChangeResult(user, old_phone_notified=False, voided=voided)
        if applied is not None:
            raise RequestIdReused
        if challenge is not None:
            change = _bound(change, challenge)
        # Every condition is the step's (decision 0102): the status the authority allows (a suspended user's
        # codes may be in a thief's hands; a revoked user's number never changes), the number the code went
        # to and no change of the user since its challenge opened; a refusal there is journaled in the
        # user's journal (the first few of the hour, then counted), as an attempt on the secure number should
        # be, where a check here, on the user as read, would refuse the same silently. A change to the number
        # already held is PhoneUnchanged, from the step: compared there, against the number as the change
        # finds it (two changes to one number at once: the second is refused).
        changed = await self._store.users.change_secure_phone(change)
        if changed.outcome is PhoneChangeOutcome.CHANGED:
            self._tally.changed("change_phone")
        # Codes already sent went to the old number: from now on they authorise nothing (those a Verify or
        # the outbox's take marked void first, after the change, are the change's too: decision 0102).
        voided = max(await self._void_pending(change, changed.counts), changed.open_at_change)
        if changed.outcome is PhoneChangeOutcome.REPLAYED:
            return PhoneChangeResult(changed.user, old_phone_notified=False, voided=voided)
        # Queued by the change's own step (decision 0041): naming the challenge whose code went to the old
        # number, or for an override the old number kept beside the user until the notice is settled.
        return PhoneChangeResult(changed.user, old_phone_notified=True, voided=voided)

    async def _spend(self, change: PhoneChange, challenge_id: str) -> Challenge:
        """Spend the challenge (or get it back for a retry of this change) before reading the user.

        Atomically: this user's, for exactly this number, verified, within its retention, once. The proof
        comes first, and an unknown challenge reads as a mismatch, so that an unknown user, an unknown
        challenge and another user's challenge get one answer (and one round trip): the call tells a caller
        without this user's verified code nothing of who is enrolled, nor of their status.
        """
        consumption = Consumption(
            challenge_id=challenge_id,
            user_id=change.user_id,
            op_digest=digest(ChangePhone(change.new_phone)),
            request_id=change.provenance.request_id,
            at=change.at,
            context=change.context,
        )
        try:
            return await self._store.challenges.consume_challenge(consumption)
        except ChallengeNotFound:
            raise ChallengeMismatch(challenge_id) from None

    async def _void_pending(self, change: PhoneChange, counts: tuple[int, int] | None) -> int:
        """Void the codes sent before the change (`counts`, the user's right after it): not those the user
        opened since on the new number, which a retry of the change, or a slow voiding, would reach."""
        voiding = Voiding(change.user_id, VoidReason.PHONE_CHANGED, change.at, change.provenance, counts)
        return await void_pending(self._store, voiding, tally=self._tally)


def _bound(change: PhoneChange, challenge: Challenge) -> PhoneChange:
    """The change, bound to the spent challenge: the step refuses it (CHALLENGE_MISMATCH) unless the code
    went to the number being replaced, after the user's last status or number change: a code verified
    before a suspension, or on a number since replaced, authorises nothing now (it is spent all the same: it
    could never serve again). "After" is the order of the steps, by the user's change counts the challenge's
    opening read (decision 0056): the hosts' clocks may disagree. A challenge opened before the counts keeps
    the rule it was opened under, by times."""
    opened = challenge.opened_changes
    if opened is not None:
        return dataclasses.replace(change, expected_phone=challenge.phone, unchanged_counts=opened)
    return dataclasses.replace(change, expected_phone=challenge.phone, unchanged_since=challenge.created_at)
