"""Changing the secure number: an association (RTS Art. 24), authorised on the old number or by override.

A verified `change_phone` challenge proves that whoever asks holds the old number and agreed to this new
one: it must be the user's, bound to exactly this number, sent to the number being replaced after the
user's last change, and it is spent once. Without the old phone (lost, stolen) only the bank's back office
can decide, naming an operator and a reason. Either way the challenges still open on the old number are
voided, the old number is told (no code in the text), and payments wait for a cooling period
(docs/decisions/0010).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sesame.server.domain import sms_text
from sesame.server.domain.destinations import check_enrolled_phone
from sesame.server.domain.errors import (
    ChallengeMismatch,
    DeliveryFailed,
    PhoneUnchanged,
    RequestIdReused,
    UserNotActive,
)
from sesame.server.domain.lifecycle import (
    Authority,
    ByChallenge,
    Consumption,
    LifecyclePolicy,
    PhoneChange,
    PhoneChanged,
    PhoneChangeOutcome,
    Provenance,
    UserNotice,
    VoidReason,
)
from sesame.server.domain.model import RequestContext, SmsMessage, User, UserStatus
from sesame.server.domain.operation import ChangePhone, digest
from sesame.server.domain.voiding import void_pending

if TYPE_CHECKING:
    from sesame.server.domain.ports import Clock, SmsGateway, StateStore


@dataclass(frozen=True, slots=True)
class PhoneChangeResult:
    """The user with its new number, whether this call told the old number, what it voided."""

    user: User
    old_phone_notified: bool  # False when the gateway failed, or for a retry of a change made before
    voided: int = 0  # challenges still open on the old number, voided by this call


class PhoneChangeFlow:
    """ChangeSecurePhone, in the security order: the user, the authority, the change, the notice."""

    def __init__(self, *, store: StateStore, clock: Clock, sms: SmsGateway, policy: LifecyclePolicy) -> None:
        self._store = store
        self._clock = clock
        self._sms = sms
        self._policy = policy

    async def change(
        self,
        user_id: str,
        new_phone: str,
        authority: Authority,
        provenance: Provenance,
        context: RequestContext,
    ) -> PhoneChangeResult:
        """Replace the number, start the cooling period and tell the old number."""
        check_enrolled_phone("new_phone", new_phone, self._policy.countries)
        now = self._clock.now()
        change = PhoneChange(
            user_id, new_phone, now, now + self._policy.cooling, authority, provenance, context
        )
        user = await self._store.get_user(user_id)
        # A retry first: the change it repeats moved the number, and the checks below would refuse it.
        applied = await self._store.applied_change(user_id, provenance.request_id)
        if applied == change.fingerprint:
            voided = await self._void_pending(user_id, change)  # what a crash left open
            return PhoneChangeResult(user, old_phone_notified=False, voided=voided)
        if applied is not None:
            raise RequestIdReused
        if user.status is UserStatus.REVOKED:
            raise UserNotActive(user_id)
        if isinstance(authority, ByChallenge):
            change = await self._authorised(user, change, authority.challenge_id)
        if new_phone == user.secure_phone:
            raise PhoneUnchanged(user_id)
        changed = await self._store.change_secure_phone(change)
        # Codes already sent went to the old number: from now on they authorise nothing.
        voided = await self._void_pending(user_id, change)
        if changed.outcome is PhoneChangeOutcome.REPLAYED:
            return PhoneChangeResult(changed.user, old_phone_notified=False, voided=voided)
        notified = await self._notify(changed)
        return PhoneChangeResult(changed.user, old_phone_notified=notified, voided=voided)

    async def _void_pending(self, user_id: str, change: PhoneChange) -> int:
        return await void_pending(
            self._store, user_id, VoidReason.PHONE_CHANGED, change.at, change.provenance
        )

    async def _authorised(self, user: User, change: PhoneChange, challenge_id: str) -> PhoneChange:
        """Spend the challenge, then check it against the user; the change re-checks what may move."""
        if user.status is not UserStatus.ACTIVE:
            raise UserNotActive(user.user_id)  # a suspended user's codes may be in a thief's hands
        # Atomically: this user's, for exactly this number, verified, within its retention, once. Another
        # user's challenge reads as a mismatch whatever its status: nothing more is told of it.
        challenge = await self._store.consume_challenge(
            Consumption(
                challenge_id=challenge_id,
                user_id=user.user_id,
                op_digest=digest(ChangePhone(change.new_phone)),
                request_id=change.provenance.request_id,
                at=change.at,
                context=change.context,
            )
        )
        # The code went to the number being replaced, after the user's last status or number change: a
        # code verified before a suspension, or on a number since replaced, authorises nothing now (it is
        # spent all the same: it could never serve again).
        since = [at for at in (user.status_changed_at, user.phone_changed_at) if at is not None]
        if challenge.phone != user.secure_phone or any(challenge.created_at < at for at in since):
            raise ChallengeMismatch(challenge_id)
        return dataclasses.replace(
            change, expected_phone=challenge.phone, unchanged_since=challenge.created_at
        )

    async def _notify(self, changed: PhoneChanged) -> bool:
        """Tell the old number, journaled either way: if it failed, the back office calls the user."""
        user = changed.user
        text = sms_text.phone_changed_notice(self._policy.bank_name, user.secure_phone, user.locale)
        try:
            sent = await self._sms.send(SmsMessage(changed.previous_phone, text, ""))
        except DeliveryFailed:
            notice = UserNotice("phone_changed", changed.previous_phone, False, "", self._clock.now())
            await self._store.record_user_notice(user.user_id, notice)
            return False
        notice = UserNotice("phone_changed", changed.previous_phone, True, sent.provider_ref, sent.sent_at)
        await self._store.record_user_notice(user.user_id, notice)
        return True
