"""What the journal keeps of a code SMS sent: a hash of its text with the code masked, and its template's
version (issue 8 item 3; decision 0035).

The text itself is never journaled: it holds the code. Nor is a plain SHA-256 of it: everything else in the
text (the bank's name, the operation, the masked IBAN, the validity, the template) is known from the journal
and the templates, so a hash of the whole text would give the code back after at most 10^8 hashes, a second's
work, to anyone who reads the journal, its archive or an evidence bundle, while the code may still be open.
The hash is therefore taken over the text as sent with each digit of the code replaced by `#` (the same
length, in GSM-7 as the digits are, so the text is otherwise the very one sent): it holds no secret, anyone
can check it without a key (a bank's lawyer, another machine, the customer's own SMS with its code masked),
and it fixes every other character the user read, amount and payee included (RTS Art. 5(1)(a)). A keyed hash
(an HMAC in the HSM) would also hide the code, but could be checked only by the HSM's holder, and would cost
an HSM call per send.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sesame.server.domain import sms_text
from sesame.server.domain.operation import Operation
from sesame.server.domain.sms_templates import Kind, SmsTemplates, default_templates

MASK = "#"


@dataclass(frozen=True, slots=True)
class SentText:
    """The journal's record of one code SMS: its masked text's hash and the template's version."""

    text_sha256: str  # hex SHA-256 of the UTF-8 text sent, each digit of the code replaced by MASK
    template: str  # `<locale>/<kind>`: the template file that worded it
    template_sha256: str  # hex SHA-256 of that template file's bytes
    warning_sha256: str  # hex SHA-256 of the locale's warning file, which the text carries too

    def journal_fields(self) -> dict[str, str]:
        """The fields of the send's journal entry (no warning's for a notice, which carries none)."""
        fields = {
            "text_sha256": self.text_sha256,
            "template": self.template,
            "template_sha256": self.template_sha256,
        }
        if self.warning_sha256:
            fields["warning_sha256"] = self.warning_sha256
        return fields


def recorded(
    operation: Operation, context: sms_text.SmsContext, rendered: sms_text.Rendered | None = None
) -> SentText:
    """The record of the code SMS `sms_text.render(operation, context)` gives; `rendered`: that SMS as
    `sms_text.rendered` gave it to the sender, whose text is then masked rather than rendered again."""
    templates = context.templates or default_templates()
    sent = rendered or sms_text.rendered(operation, context)
    template = sent.template
    shown = sent.with_code(MASK * len(context.code))
    # The new-payee alert carries its own scam alert instead of the locale's warning (decision 0032).
    warned = "{warning}" in template.text
    return SentText(
        text_sha256=hashlib.sha256(shown.encode("utf-8")).hexdigest(),
        template=f"{context.locale}/{template.kind.value}",
        template_sha256=template.sha256,
        warning_sha256=templates.warning_sha256.get(context.locale, "") if warned else "",
    )


def notice(kind: Kind, locale: str, text: str, templates: SmsTemplates | None) -> SentText:
    """The record of a notice (number changed, payee added, user blocked): it holds no code, so its text is
    hashed as sent."""
    template = (templates or default_templates()).get(kind, locale)
    return SentText(
        hashlib.sha256(text.encode("utf-8")).hexdigest(), f"{locale}/{kind.value}", template.sha256, ""
    )
