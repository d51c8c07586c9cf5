"""Sending the SMS the outbox holds: one queued SMS at a time, at least once (docs/decisions/0025).

Start and Resend queue the SMS in the same atomic step that opens the challenge or takes the resend; a
dispatcher (inside every `sesame serve` worker, or `sesame dispatch` on its own) takes it from the outbox,
computes the code in the HSM when it sends (the outbox never holds a code or a text), checks that the
challenge may still be answered, hands the SMS to the gateway and settles the entry: the gateway's answer
recorded and the entry acknowledged in one step, so that a message the gateway took and that was recorded
is never sent again. A dispatcher that dies before settling leaves the entry pending: another one claims it
once it has been idle long enough, and sends it (at least once).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sesame.server.domain import codes, sent_text, sms_text
from sesame.server.domain.errors import ChallengeNotFound, DeliveryFailed
from sesame.server.domain.model import Challenge, ChallengeStatus, DeliveryState, SmsMessage

if TYPE_CHECKING:
    from sesame.server.domain.ports import Clock, KeyStore, Outbox, SmsGateway
    from sesame.server.domain.sms_templates import SmsTemplates


@dataclass(frozen=True, slots=True)
class QueuedSms:
    """One outbox entry: the challenge whose code to send, and when it was queued."""

    entry_id: str
    challenge_id: str
    queued_at: datetime


@dataclass(frozen=True, slots=True)
class Backlog:
    """What the outbox holds: how many SMS are not settled yet, and when the oldest was queued."""

    depth: int
    oldest: datetime | None


class Outcome(enum.Enum):
    """What became of a queued SMS."""

    SENT = "sent"  # the gateway took it
    FAILED = "failed"  # the gateway refused it (retries and failover are the gateway's)
    EXPIRED = "expired"  # never sent: the challenge expired or was closed while the SMS waited
    MISSING = "missing"  # never sent: the challenge was purged


@dataclass(frozen=True, slots=True)
class Dispatched:
    """One settled SMS: its outcome, and when it was handed to the gateway (None if it was not)."""

    outcome: Outcome
    handed_at: datetime | None = None


class RecentCodes:
    """The codes this process computed for the SMS it just queued, kept a few seconds for its own dispatcher.

    Start computes the code before its step (an HSM failure must spend nothing); when this process's
    dispatcher takes that SMS, as it usually does at once, it sends that code rather than asking the HSM
    again: one HSM call per Start and its SMS. An SMS another process takes, or taken after `keep`, has
    its code computed again. Bounded in count and age: no code stays in memory longer than it would for an
    inline send that waits on a slow gateway.
    """

    def __init__(self, clock: Clock, keep: timedelta = timedelta(seconds=30), most: int = 4096) -> None:
        self._clock = clock
        self._keep = keep
        self._most = most
        self._codes: dict[str, tuple[str, datetime]] = {}  # challenge id -> (code, noted at), oldest first

    def note(self, challenge_id: str, code: str) -> None:
        """Keep `code` for the SMS of `challenge_id` about to be queued."""
        now = self._clock.now()
        self._codes.pop(challenge_id, None)
        self._codes[challenge_id] = (code, now)
        while self._codes:
            oldest, (_, at) = next(iter(self._codes.items()))
            if len(self._codes) <= self._most and now - at < self._keep:
                break
            del self._codes[oldest]

    def forget(self, challenge_id: str) -> None:
        """Drop the code of an SMS that was not queued after all."""
        self._codes.pop(challenge_id, None)

    def code(self, challenge_id: str) -> str | None:
        """The code noted for the challenge within `keep`, or None."""
        found = self._codes.get(challenge_id)
        if found is None or self._clock.now() - found[1] >= self._keep:
            return None
        return found[0]


class Dispatcher:
    """Send queued SMS through the gateway and settle their outbox entries."""

    def __init__(  # noqa: PLR0913 (keyword-only: one argument per port, the bank's name, codes and templates)
        self,
        *,
        keys: KeyStore,
        outbox: Outbox,
        sms: SmsGateway,
        clock: Clock,
        bank_name: str,
        recent: RecentCodes | None = None,
        templates: SmsTemplates | None = None,
    ) -> None:
        self._keys = keys
        self._recent = recent
        self._templates = templates
        self._outbox = outbox
        self._sms = sms
        self._clock = clock
        self._bank_name = bank_name

    async def dispatch(self, queued: QueuedSms) -> Dispatched:
        """Send one queued SMS unless its challenge can no longer be answered, then settle its entry.

        An HSM or store failure raises, leaving the entry pending (it is claimed and tried again); a
        gateway refusal is recorded FAILED and settled, as the send did before the outbox.
        """
        try:
            challenge = await self._outbox.challenge(queued)
        except ChallengeNotFound:
            await self._outbox.settle(queued, DeliveryState.EXPIRED, "", self._clock.now())
            return Dispatched(Outcome.MISSING)
        now = self._clock.now()
        if challenge.status is not ChallengeStatus.OPEN or now >= challenge.expires_at:
            # Never a code that can no longer be used: it would only teach a thief the code's format.
            await self._outbox.settle(queued, DeliveryState.EXPIRED, "", now)
            return Dispatched(Outcome.EXPIRED)
        context = await self._context(challenge, now)
        text = sms_text.render(challenge.operation, context)
        # What the journal keeps of the text: its hash with the code masked, and the template's version.
        record = sent_text.recorded(challenge.operation, context)
        message = SmsMessage(challenge.phone, text, challenge.challenge_id)
        try:
            sent = await self._sms.send(message)
        except DeliveryFailed:
            await self._outbox.settle(queued, DeliveryState.FAILED, "", self._clock.now(), record)
            return Dispatched(Outcome.FAILED)
        await self._outbox.settle(queued, DeliveryState.SENT, sent.provider_ref, sent.sent_at, record)
        return Dispatched(Outcome.SENT, sent.sent_at)

    async def _context(self, challenge: Challenge, now: datetime) -> sms_text.SmsContext:
        """What the SMS text needs: the code Start noted in this process, or computed in the HSM now (the
        outbox holds neither)."""
        code = self._recent.code(challenge.challenge_id) if self._recent is not None else None
        code = code or await codes.derive(
            self._keys,
            key_version=challenge.key_version,
            digits=challenge.digits,
            nonce=challenge.nonce,
            op_digest=challenge.op_digest,
        )
        remaining = challenge.expires_at - now
        return sms_text.SmsContext(
            bank_name=self._bank_name,
            code=code,
            validity_minutes=max(1, round(remaining / timedelta(minutes=1))),
            locale=challenge.locale,
            templates=self._templates,
        )
