"""What follows a block after wrong codes in a row: the user's pending challenges voided, the payer alerted.

The block itself is decided in the atomic step that counts the failure (docs/decisions/0013): while it
lasts no code of the user is evaluated, whatever happens here. So a failure of these steps is logged and
never changes the verify answer: a challenge not voided still answers USER_BLOCKED until the block ends,
and an alert not sent is journaled as failed for the back office to follow up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sesame.server.domain import sent_text, sms_text
from sesame.server.domain.errors import DeliveryFailed, SesameError
from sesame.server.domain.lifecycle import Provenance, UserNotice, VoidReason
from sesame.server.domain.model import SmsMessage
from sesame.server.domain.sms_templates import Kind
from sesame.server.domain.tally import UNTALLIED, Tally
from sesame.server.domain.voiding import void_pending

if TYPE_CHECKING:
    from sesame.server.domain.challenges import ChallengePolicy
    from sesame.server.domain.ports import Clock, SmsGateway, State

_log = logging.getLogger("sesame.blocking")

NOTICE_KIND = Kind.USER_BLOCKED


@dataclass(frozen=True, slots=True)
class Block:
    """A block that has just started: whose, until when, and the call whose wrong code started it."""

    user_id: str
    until: datetime
    at: datetime
    caller: str  # the calling service, journaled with each voiding


async def after_block(  # noqa: PLR0913 (the ports it uses, the policy, the block, where to count)
    store: State,
    sms: SmsGateway,
    clock: Clock,
    policy: ChallengePolicy,
    block: Block,
    *,
    tally: Tally = UNTALLIED,
) -> None:
    """Void the user's pending challenges, then alert the user on the secure number; never raises."""
    provenance = Provenance("sesame", "wrong codes in a row", "", block.caller)
    try:
        await void_pending(store, block.user_id, VoidReason.USER_BLOCKED, block.at, provenance, tally=tally)
    except SesameError as exc:
        _log.warning("pending challenges of a blocked user not voided (%s)", type(exc).__name__)
    try:
        await _alert(store, sms, clock, policy, block)
    except SesameError as exc:
        _log.warning("alert of a blocked user not journaled (%s)", type(exc).__name__)


async def _alert(store: State, sms: SmsGateway, clock: Clock, policy: ChallengePolicy, block: Block) -> None:
    """The payer's alert (RTS Art. 4(4)): an informational SMS with the block's end, journaled either way."""
    user = await store.users.get_user(block.user_id)
    text = sms_text.user_blocked_notice(policy.bank_name, block.until, user.locale, policy.sms_templates)
    record = sent_text.notice(Kind.USER_BLOCKED, user.locale, text, policy.sms_templates)
    try:
        sent = await sms.send(SmsMessage(user.secure_phone, text, ""))
    except DeliveryFailed as exc:
        _log.warning("alert of a blocked user not sent (%s)", type(exc).__name__)
        notice = UserNotice(NOTICE_KIND, user.secure_phone, False, "", clock.now(), record)
    else:
        notice = UserNotice(NOTICE_KIND, user.secure_phone, True, sent.provider_ref, sent.sent_at, record)
    await store.users.record_user_notice(block.user_id, notice)
