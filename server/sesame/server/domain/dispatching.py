"""Sending the SMS the outbox holds: one queued SMS at a time, at least once (docs/decisions/0025).

Start and Resend queue the SMS in the same atomic step that opens the challenge or takes the resend; a
dispatcher (inside every `sesame serve` worker, or `sesame dispatch` on its own) takes it from the outbox,
computes the code in the HSM when it sends (the outbox never holds a code or a text), checks that the
challenge may still be answered, hands the SMS to the gateway and settles the entry: the gateway's answer
recorded and the entry acknowledged in one step, so that a message the gateway took and that was recorded
is never sent again. A dispatcher that dies before settling leaves the entry pending: another one claims it
once it has been idle long enough, and sends it (at least once).

A send that did not reach the gateway is tried again (the entry stays pending and is claimed once idle),
until `max_tries` tries were made; then, or at once when every provider gave its final word or the code
has expired, the entry is dead-lettered (docs/decisions/0033): the challenge reads FAILED (EXPIRED for an
expired code) with the reason, and a masked line stays in the dead letters for the operators.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sesame.server.domain import codes, notices, sent_text, sms_text
from sesame.server.domain.budgets import DEFAULT_HOLD_GRACE, BudgetSubject, Spending
from sesame.server.domain.errors import (
    ChallengeNotFound,
    DeliveryFailed,
    DeliveryFailure,
    DeliveryRefused,
    StoreUnavailable,
)
from sesame.server.domain.lifecycle import UserNotice
from sesame.server.domain.model import Challenge, ChallengeStatus, DeliveryState, SmsMessage
from sesame.server.domain.risk import RiskDecision
from sesame.server.domain.sms_templates import Kind

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sesame.server.domain.ports import Clock, KeyStore, Outbox, SendUnits, SmsGateway
    from sesame.server.domain.sent_text import SentText
    from sesame.server.domain.sms_templates import SmsTemplates


_log = logging.getLogger("sesame.notices")
# Half the outbox's default claim idle time (SESAME_OUTBOX_CLAIM_IDLE_SECONDS): wired as half the one set.
DEFAULT_SETTLE_WITHIN = timedelta(seconds=15)


@dataclass(frozen=True, slots=True)
class QueuedSms:
    """One outbox entry: the challenge whose code to send, and when it was queued; or a notice about that
    challenge's user (its kind, and the end of a block), queued with the change it reports."""

    entry_id: str
    challenge_id: str
    queued_at: datetime
    notice: str = ""  # "" a code SMS; else the notice's kind (sms_templates.Kind), docs/decisions/0033
    until: datetime | None = None  # the end of the block a `user_blocked` notice tells
    # The challenge as the outbox read it with the entry, in the same step (decision 0040); None: not read
    # (or purged meanwhile), the dispatcher reads it itself. Not part of the entry's identity.
    challenge: Challenge | None = field(default=None, compare=False)
    trace: str = (
        ""  # the W3C traceparent of the Start that queued it ('' none): its dispatch joins that trace
    )
    # An override's notice names no challenge (decision 0041): its user, and the notice whose addressee
    # the user's place holds until it is sent or dead-lettered ('' for every other entry).
    user_id: str = ""
    notice_id: str = ""
    hold: str = ""  # a resend's: the name its send units are held under (a Start's is its challenge id, 0046)
    # Why the outbox withheld this code SMS as it took it (decision 0054: its user was suspended, revoked or
    # given another number since the challenge opened); '' it was not. A withheld entry is dead-lettered
    # and its challenge voided already, in the take's own step: the dispatcher only gives back its units.
    withheld: str = ""
    # This hand-out of the entry (a take or a claim gives each its own): what makes a send's record asked
    # again after its step ran (its answer lost) answer "already recorded" (decision 0056). '' : none.
    attempt: str = field(default="", compare=False)
    # Who was handed it and when (just before the take or claim was asked): a dispatcher that reaches the
    # send long after, paused meanwhile, asks whether the entry is still its own (decision 0129).
    consumer: str = field(default="", compare=False)
    taken_at: datetime | None = field(default=None, compare=False)

    @property
    def hold_name(self) -> str:
        """The name the SMS's number, caller and global units are held under (decision 0046)."""
        return self.hold or self.challenge_id


# The longest SESAME_NOTICE_MAX_AGE_SECONDS allows: an override's notice keeps its addressee (the old number)
# no longer than this past its change, whatever the dispatchers' setting (decision 0041).
NOTICE_MAX_AGE_LIMIT = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class NoticeAddressee:
    """Whom an override's phone-changed notice goes to: the old number, and what its text shows (the new
    number, masked by the text) in the user's locale; kept beside the user only until the notice settles."""

    phone: str
    new_phone: str
    locale: str


@dataclass(frozen=True, slots=True)
class Backlog:
    """What the outbox holds: how many SMS are not settled yet, and when the oldest was queued."""

    depth: int
    oldest: datetime | None


class Outcome(enum.Enum):
    """What became of a queued SMS."""

    SENT = "sent"  # the gateway took it
    RETRY = "retry"  # no provider took it this time: it stays in the outbox for another try
    DEAD_LETTERED = "dead_lettered"  # given up on: tries spent, every provider's final word, code expired
    EXPIRED = "expired"  # never sent: the challenge was closed (verified, cancelled, voided) while it waited
    MISSING = "missing"  # never sent: the challenge was purged
    NOTICE_SENT = "notice_sent"  # a notice the gateway took (journaled as a user notice)
    NOTICE_FAILED = "notice_failed"  # a notice no provider took (journaled as failed, for the back office)
    # Not sent by this dispatcher: paused past the claim idle time, it found the entry claimed by another,
    # which sends it (or settled already): handing it over too would send it twice (decision 0129).
    TAKEN_OVER = "taken_over"


# Why an SMS was dead-lettered: its code expired, its tries were spent (`unconfirmed` when the last one's
# provider may have taken it: decision 0096), the providers' final word, or no send units held for it (its
# Start's or Resend's take was refused, or never ran: decision 0046).
DEAD_LETTER_REASONS = (
    "expired",
    "max_tries",
    "unconfirmed",
    "bad_number",
    "bad_content",
    "refused",
    "unheld",
)
# Failures after which the provider may have taken the message without saying so: no answer in time, the
# connection lost while waiting, some of its parts taken. The phone may get it (decision 0096).
UNCONFIRMED: frozenset[DeliveryFailure] = frozenset({"timeout", "lost", "partial"})
# Failures the dispatcher names before any hand-over (the code expired while it waited, its held units
# missing): an entry dead-lettered for one in its first hand-out gives back its user's send unit (0101).
UNSENT: frozenset[str] = frozenset({"expired", "unheld"})


def given_up(failure: str, *, expired: bool, allowed: int, tries: int, earlier: bool = False) -> str:
    """Why a failed try's entry is dead-lettered, '' to try again (_tries.lua's `given_up`). It is given up
    when it is too old (`expired`), when no try is allowed any more (allowed = 0) or once its tries reach
    `allowed`; then `unconfirmed` if this try or an `earlier` one may have reached the phone (decision 0097),
    else `expired`, the provider's final word (allowed = 0), or `max_tries`."""
    expired = failure == "expired" or expired
    if not (expired or allowed == 0 or tries >= allowed):
        return ""
    if earlier or failure in UNCONFIRMED:
        return "unconfirmed"
    if expired:
        return "expired"
    return failure if allowed == 0 else "max_tries"


# Why the outbox withheld a code SMS as it took it, dead-lettered: its user changed since the challenge opened
# (decision 0054). The user's current status and number are read in the take's step.
WITHHELD_REASONS = ("user_suspended", "user_revoked", "phone_changed")


@dataclass(frozen=True, slots=True)
class Dispatched:
    """One settled SMS: its outcome, when it was handed to the gateway (None if it was not), and the reason
    it was dead-lettered (empty unless it was)."""

    outcome: Outcome
    handed_at: datetime | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class FailedTry:
    """What the outbox did with a send that did not reach the phone: `tries` made so far, and the reason
    it dead-lettered the entry (empty: the entry stays for another try)."""

    tries: int
    dead_letter: str = ""


@dataclass(frozen=True, slots=True)
class NoticeFailure:
    """A notice's send that did not reach the phone: the providers' `failure`, when it happened, the tries
    still allowed (0: none more), and the end of the notice's age limit (decision 0041)."""

    failure: str
    at: datetime
    allowed: int
    stale_at: datetime


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One SMS given up on, as the operators see it: never the code, never the whole number."""

    letter_id: str
    challenge_id: str
    user_id: str
    masked_phone: str
    state: DeliveryState  # FAILED, or EXPIRED for an expired code
    reason: str  # one of DEAD_LETTER_REASONS
    failure: str  # the last provider failure (a DeliveryFailure reason), or `expired`
    tries: int
    queued_at: datetime
    at: datetime
    notice: str = ""  # "" a code's SMS; else the notice's kind (decision 0041)


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
        units: SendUnits,
        max_tries: int = 1,
        notice_max_age: timedelta = timedelta(days=1),
        hold_grace: timedelta = DEFAULT_HOLD_GRACE,
        settle_within: timedelta = DEFAULT_SETTLE_WITHIN,
    ) -> None:
        """`max_tries`: how many times an SMS is given to a dispatcher before it is dead-lettered;
        `notice_max_age`: how long after its change a notice may still be sent (decision 0041); `units`
        and `hold_grace`: the code SMS's held send units, spent before it is handed over (decision 0046);
        `settle_within`: how long a send the gateway took is recorded again while the store is unavailable
        (less than the outbox's claim idle time, after which another dispatcher would send it again)."""
        self._settle_within = settle_within.total_seconds()
        # Within half the claim idle time of its take no other dispatcher can have claimed an entry.
        self._surely_ours = settle_within
        self._units = units
        self._hold_grace = hold_grace
        self._max_tries = max_tries
        self._notice_max_age = notice_max_age
        self._keys = keys
        self._recent = recent
        self._templates = templates
        self._outbox = outbox
        self._sms = sms
        self._clock = clock
        self._bank_name = bank_name

    async def dispatch(self, queued: QueuedSms) -> Dispatched:
        """Send one queued SMS unless its challenge can no longer be answered, then settle its entry.

        An HSM or store failure raises, leaving the entry pending (it is claimed and tried again); a send
        no provider took is a failed try: tried again later, or dead-lettered (docs/decisions/0033).
        """
        if queued.notice_id:
            return await self._notify_override(queued)
        if queued.withheld:
            return await self._withheld(queued)
        challenge = queued.challenge
        if challenge is None:
            try:
                challenge = await self._outbox.challenge(queued)
            except ChallengeNotFound:
                await self._outbox.settle(queued, DeliveryState.EXPIRED, "", self._clock.now())
                return Dispatched(Outcome.MISSING)
        if queued.notice:
            return await self._notify(queued, challenge)
        return await self._send_code(queued, challenge)

    async def _send_code(self, queued: QueuedSms, challenge: Challenge) -> Dispatched:
        """The code SMS, unless the challenge was closed or its code expired while it waited."""
        now = self._clock.now()
        if challenge.status is not ChallengeStatus.OPEN:
            # Closed while it waited: nobody needs the code any more (not a delivery failure).
            await self._outbox.settle(queued, DeliveryState.EXPIRED, "", now)
            return Dispatched(Outcome.EXPIRED)
        if now >= challenge.expires_at:
            # Never an expired code (it would only teach a thief the code's format): a dead letter.
            return await self._failed(queued, "expired", now, 0)
        # The units first: an SMS with none held costs no HSM call (decision 0046).
        unsent = await self._unheld(queued, challenge)
        if unsent is not None:
            return unsent
        context = await self._context(challenge, now)
        rendered = sms_text.rendered(challenge.operation, context)
        text = rendered.text
        # What the journal keeps of the text: its hash with the code masked, and the template's version
        # (the rendered text masked, not rendered a second time: decision 0059).
        record = sent_text.recorded(challenge.operation, context, rendered)
        # The entry's id is the message's own reference: the same on every try and at every provider, which
        # makes the reference each provider sees (decision 0030; SMPP's, decision 0041).
        message = SmsMessage(
            challenge.phone,
            text,
            challenge.challenge_id,
            reference=queued.entry_id,
            valid_for=challenge.expires_at - now,  # the SMSC drops it past the code's life (decision 0123)
        )
        return await self._hand_over(queued, message, record)

    async def _hand_over(self, queued: QueuedSms, message: SmsMessage, record: SentText) -> Dispatched:
        """Hand the code SMS to the gateway, unless another dispatcher took the entry over, and settle it."""
        if not await self._still_ours(queued):
            return Dispatched(Outcome.TAKEN_OVER)
        try:
            sent = await self._sms.send(message)
        except DeliveryRefused as refused:
            return await self._failed(queued, refused.reason, self._clock.now(), 0, record)
        except DeliveryFailed as failed:
            return await self._failed(queued, failed.reason, self._clock.now(), self._max_tries, record)
        await self._recorded(
            lambda: self._outbox.settle(
                queued,
                DeliveryState.SENT,
                sent.provider_ref,
                sent.sent_at,
                record,
                provider_ids=sent.provider_ids,
                unconfirmed=sent.unconfirmed,
                held=sent.queued,
            )
        )
        return Dispatched(Outcome.SENT, sent.sent_at)

    async def _withheld(self, queued: QueuedSms) -> Dispatched:
        """A code SMS the outbox withheld as it took it (decision 0054), voided and dead-lettered in that
        step (its user's unit given back there, decision 0101): its held units go back (withdrawn for the
        grace: a take still on its way holds nothing), as a refused Start's do (decision 0046), and its code
        is forgotten."""
        if self._recent is not None:
            self._recent.forget(queued.challenge_id)
        await self._units.release(queued.hold_name, self._hold_grace)
        return Dispatched(Outcome.DEAD_LETTERED, reason=queued.withheld)

    async def _still_ours(self, queued: QueuedSms) -> bool:
        """Whether the entry may be handed to the gateway by this dispatcher. Taken a moment ago it may: a
        claim waits the whole claim idle time. Taken longer ago (the process was paused: SIGSTOP, a frozen
        VM, a host swapping) another dispatcher may have claimed it as a dead one's and sent it; it is kept
        as this one's if still pending with it, else left to the other (decision 0129)."""
        if queued.taken_at is None or self._clock.now() - queued.taken_at < self._surely_ours:
            return True
        kept = await self._outbox.keep(queued.consumer, [queued]) == 1
        if not kept:
            _log.warning("a queued SMS was claimed by another dispatcher while this one was paused: not sent")
        return kept

    async def _recorded(self, settling: Callable[[], Awaitable[object]]) -> None:
        """Record a send the gateway took, asking again while the store is unavailable (a Redis restart):
        left pending, the entry would be claimed once idle and the same SMS sent a second time, though this
        process knows it left (decision 0055). Within `settle_within`; after it, StoreUnavailable, as
        before: pending, at least once."""
        deadline = asyncio.get_running_loop().time() + self._settle_within
        pauses = iter(_SETTLE_PAUSES)
        while True:
            try:
                await settling()
            except StoreUnavailable:
                pause = next(pauses, _SETTLE_PAUSES[-1])
                if asyncio.get_running_loop().time() + pause > deadline:
                    _log.warning("an SMS the gateway took is not recorded: it may be sent again once claimed")
                    raise
                await asyncio.sleep(pause)
            else:
                return

    async def _unheld(self, queued: QueuedSms, challenge: Challenge) -> Dispatched | None:
        """None once the SMS's units are spent (it may be handed over); else what became of it: left pending
        while its take may still be on its way, or never sent, nothing spent, journaled (decision 0046)."""
        spending = await self._spend(queued, challenge)
        if spending is Spending.SPENT:
            return None
        if spending is Spending.UNHELD and self._clock.now() < queued.queued_at + self._hold_grace:
            return Dispatched(Outcome.RETRY)  # claimed again once idle
        return await self._failed(queued, "unheld", self._clock.now(), 0)

    async def _spend(self, queued: QueuedSms, challenge: Challenge) -> Spending:
        """Spend the SMS's held units (the number's, the caller's, the global one), once: a retry of the
        entry finds them spent. A take sent with the step may land a moment after the step queued the SMS:
        asked again a few times, briefly, while the answer is UNHELD."""
        number = BudgetSubject.phone(challenge.phone)
        spending = Spending.UNHELD
        for pause in _HOLD_PAUSES:
            if pause:
                await asyncio.sleep(pause)
            spending = await self._units.spend(queued.hold_name, number, self._clock.now(), self._hold_grace)
            if spending is not Spending.UNHELD:
                break
        return spending

    async def _notify(self, queued: QueuedSms, challenge: Challenge) -> Dispatched:
        """Send a notice (no code: it reports a change that was made) and journal it as a user notice with
        its text's hash and template version (decision 0035), removing its entry in the same step. To the
        number the challenge's code went to: the secure number when the change was made. A send no provider
        took follows a code's policy (decision 0041): tried again, or dead-lettered once its tries are spent,
        every provider gave its final word, or the notice is older than its age limit (never sent late)."""
        text = notices.notice_text(queued, challenge, self._bank_name, self._templates)
        return await self._send_notice(queued, challenge.user_id, challenge.phone, challenge.locale, text)

    async def _notify_override(self, queued: QueuedSms) -> Dispatched:
        """An override's phone-changed notice (decision 0041): to the old number its step kept beside the
        user for it. Gone (the outbox outlived it): dead-lettered as expired, never sent."""
        addressee = await self._outbox.addressee(queued)
        if addressee is None:
            now = self._clock.now()
            failed = UserNotice(queued.notice, "", False, "", now, None)
            return await self._notice_failed(
                queued, queued.user_id, failed, NoticeFailure("expired", now, 0, now)
            )
        text = sms_text.phone_changed_notice(
            self._bank_name, addressee.new_phone, addressee.locale, self._templates
        )
        return await self._send_notice(queued, queued.user_id, addressee.phone, addressee.locale, text)

    async def _send_notice(
        self, queued: QueuedSms, user_id: str, to: str, locale: str, text: str
    ) -> Dispatched:
        """Send one notice's text to `to` and settle its entry (the policy of `_notify`)."""
        record = sent_text.notice(Kind(queued.notice), locale, text, self._templates) if text else None
        now = self._clock.now()
        if not text:
            # A notice this version cannot word: nothing to try again (journaled failed, for the back office).
            notice = UserNotice(queued.notice, to, False, "", now, record)
            await self._outbox.settle_notice(queued, user_id, notice)
            return Dispatched(Outcome.NOTICE_FAILED)
        stale_at = queued.queued_at + self._notice_max_age
        failed = UserNotice(queued.notice, to, False, "", now, record)
        if now >= stale_at:
            return await self._notice_failed(
                queued, user_id, failed, NoticeFailure("expired", now, 0, stale_at)
            )
        if not await self._still_ours(queued):
            return Dispatched(Outcome.TAKEN_OVER)
        try:
            sent = await self._sms.send(SmsMessage(to, text, "", reference=queued.entry_id))
        except DeliveryRefused as refused:
            why = NoticeFailure(refused.reason, self._clock.now(), 0, stale_at)
            return await self._notice_failed(queued, user_id, failed, why)
        except DeliveryFailed as exc:
            why = NoticeFailure(exc.reason, self._clock.now(), self._max_tries, stale_at)
            return await self._notice_failed(queued, user_id, failed, why)
        notice = UserNotice(queued.notice, to, True, sent.provider_ref, sent.sent_at, record)
        await self._recorded(lambda: self._outbox.settle_notice(queued, user_id, notice))
        return Dispatched(Outcome.NOTICE_SENT, sent.sent_at)

    async def _notice_failed(
        self, queued: QueuedSms, user_id: str, notice: UserNotice, failed: NoticeFailure
    ) -> Dispatched:
        """A notice's try that did not reach the phone, in the outbox's one step: another try, or a dead
        letter."""
        _log.warning("%s notice not sent (%s)", queued.notice, failed.failure)
        notice = UserNotice(notice.kind, notice.to, False, "", failed.at, notice.text)
        tried = await self._outbox.fail_notice(queued, user_id, notice, failed)
        if not tried.dead_letter:
            return Dispatched(Outcome.RETRY)
        return Dispatched(Outcome.DEAD_LETTERED, reason=tried.dead_letter)

    async def _failed(
        self, queued: QueuedSms, failure: str, at: datetime, allowed: int, text: SentText | None = None
    ) -> Dispatched:
        """A try that did not reach the phone, in the outbox's one step: another try, or a dead letter;
        journaled with the masked text's hash and template when a text was handed to the providers."""
        tried = await self._outbox.fail(queued, failure, at, allowed, text=text)
        if not tried.dead_letter:
            return Dispatched(Outcome.RETRY)
        if tried.dead_letter == "missing":
            return Dispatched(Outcome.MISSING)
        return Dispatched(Outcome.DEAD_LETTERED, reason=tried.dead_letter)

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
            validity_minutes=minutes_left(remaining),
            locale=challenge.locale,
            templates=self._templates,
            new_payee=_new_payee(challenge, now),
            flagged=challenge.risk is not None and challenge.risk.decision in _FLAGGED,
            payee_verification=challenge.payee_verification,
        )


def minutes_left(remaining: timedelta) -> int:
    """The SMS's "valid N min": the whole minutes left, never more than remain but for `_IN_TRANSIT` (an SMS
    takes longer than that to reach the phone), at least 1. Rounding said up to 30 s more than remained: a
    resend with 3 min 30 s left said 4 min."""
    return max(1, (remaining + _IN_TRANSIT) // timedelta(minutes=1))


_IN_TRANSIT = timedelta(seconds=2)
# How long the dispatcher waits between asking whether a just-queued SMS's units are held (seconds; about
# half a second in all): the take is sent with the step, so it has almost always landed at the first ask.
_HOLD_PAUSES = (0.0, 0.005, 0.02, 0.05, 0.1, 0.15, 0.2)
# Between tries to record a send the gateway took while Redis is away (a restart takes about a second).
_SETTLE_PAUSES = (0.05, 0.1, 0.2, 0.5, 1.0)

_FLAGGED = frozenset({RiskDecision.WARN, RiskDecision.HOLD})  # sent with the strongest wording (0032, 0043)


def _new_payee(challenge: Challenge, now: datetime) -> sms_text.NewPayee | None:
    """A transfer the risk rules flagged to a payee added lately: its SMS names the payee as new (0032)."""
    risk = challenge.risk
    if risk is None or risk.payee_added_at is None:
        return None
    return sms_text.NewPayee(risk.payee_added_at, now)
