"""The notice that a payee was added: sent after a VERIFIED add_beneficiary challenge, journaled either way.

The payer learns on the secure number, with the date and time, that a payee was added (the notification a
court relied on to find that the payer had been told). It carries no code. The verification is decided
before it (the answer, the count, the journal, the proof): a notice that fails is journaled as failed
and logged, and never changes the answer.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from sesame.server.domain import sent_text, sms_text
from sesame.server.domain.errors import DeliveryFailed, SesameError
from sesame.server.domain.lifecycle import UserNotice
from sesame.server.domain.model import Challenge, SmsMessage
from sesame.server.domain.operation import AddBeneficiary
from sesame.server.domain.sms_templates import Kind

if TYPE_CHECKING:
    from sesame.server.domain.challenges import ChallengePolicy
    from sesame.server.domain.ports import SmsGateway, State

_log = logging.getLogger("sesame.notices")


async def notify_if_added(
    store: State, sms: SmsGateway, policy: ChallengePolicy, challenge: Challenge, at: datetime
) -> None:
    """If `challenge` (verified at `at`) added a payee, tell the number its code went to; never raises."""
    operation = challenge.operation
    if not isinstance(operation, AddBeneficiary):
        return
    text = sms_text.beneficiary_added_notice(
        policy.bank_name, operation.payee, at, challenge.locale, policy.sms_templates
    )
    record = sent_text.notice(Kind.BENEFICIARY_ADDED, challenge.locale, text, policy.sms_templates)
    try:
        sent = await sms.send(SmsMessage(challenge.phone, text, ""))
    except DeliveryFailed as exc:
        _log.warning("notice of an added payee not sent (%s)", type(exc).__name__)
        notice = UserNotice(Kind.BENEFICIARY_ADDED, challenge.phone, False, "", at, record)
    else:
        notice = UserNotice(
            Kind.BENEFICIARY_ADDED, challenge.phone, True, sent.provider_ref, sent.sent_at, record
        )
    try:
        await store.users.record_user_notice(challenge.user_id, notice)
    except SesameError as exc:
        _log.warning("notice of an added payee not journaled (%s)", type(exc).__name__)
