"""The informational notices (no code) the outbox sends: which change queues which, and their text.

Each is queued in the atomic step that makes the change it reports (docs/decisions/0033): a block that
starts queues the payer's alert (RTS Art. 4(4)), a VERIFIED add_beneficiary the notice with its date and
time (the notification a court relied on to find that the payer had been told), a number changed by a
verified `change_phone` challenge the notice to the old number (the challenge's; an override's names the
old number kept beside the user instead, decision 0041). The dispatcher renders
the text from the challenge the entry names (its number, locale and operation) when it sends, and the
outbox journals it as a user notice, sent or failed: never a code, the number masked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sesame.server.domain import sms_text
from sesame.server.domain.operation import AddBeneficiary, ChangePhone, Operation
from sesame.server.domain.sms_templates import Kind

if TYPE_CHECKING:
    from sesame.server.domain.dispatching import QueuedSms
    from sesame.server.domain.model import Challenge
    from sesame.server.domain.sms_templates import SmsTemplates


def notice_on_verified(operation: Operation) -> str:
    """The notice a VERIFIED challenge for `operation` queues ("" none)."""
    return Kind.BENEFICIARY_ADDED.value if isinstance(operation, AddBeneficiary) else ""


def notice_text(
    queued: QueuedSms, challenge: Challenge, bank_name: str, templates: SmsTemplates | None
) -> str:
    """The text of the notice `queued` names, about `challenge`; "" for a notice it cannot say."""
    match queued.notice, challenge.operation:
        case Kind.BENEFICIARY_ADDED.value, AddBeneficiary(payee=payee):
            return sms_text.beneficiary_added_notice(
                bank_name, payee, queued.queued_at, challenge.locale, templates
            )
        case Kind.USER_BLOCKED.value, _ if queued.until is not None:
            return sms_text.user_blocked_notice(bank_name, queued.until, challenge.locale, templates)
        case Kind.PHONE_CHANGED.value, ChangePhone(new_phone=new_phone):
            # To the challenge's number, the one replaced: its code authorised the change (decision 0041).
            return sms_text.phone_changed_notice(bank_name, new_phone, challenge.locale, templates)
    return ""
