"""`SmppSmsGateway`: the SmsGateway port over SMPP 3.4, bound as a transceiver (docs/decisions/0018).

One connection, kept bound by a background task that reconnects (0.5 s, doubling to 10 s) whenever it
drops; a message waits for a bind under way, and fails at once while the SMSC cannot be reached. Each
message is encoded (GSM-7 or UCS-2, concatenated parts past one segment), each part is one submit_sm
asking for a delivery receipt, paced by the rate and bounded by the window of submits awaiting their
answer. Receipts arrive as deliver_sm on the same connection; the SMSC's message ids lead back to
the challenge, whose delivery state they then move forward through `record`.

The text holds the code and the password opens the account: neither reaches a log or an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final

from sesame.clients import smpp_pdu as pdu
from sesame.clients import smpp_status, smpp_text
from sesame.clients.smpp_pdu import Address, Bind, Pdu, ShortMessage
from sesame.clients.smpp_receipts import NotAReceipt, Receipt, ReceiptBook, Settled, Tracked, parse_receipt
from sesame.clients.smpp_session import (
    BindRefused,
    Closed,
    NoAnswer,
    OnResponse,
    SessionLost,
    SmppSession,
    Timing,
)
from sesame.clients.sms_policy import RetryPolicy
from sesame.clients.sms_reference import SMSC_ID_RULE, provider_ref, smsc_message_id, user_message_reference
from sesame.server.domain.errors import (
    ChallengeNotFound,
    DeliveryFailed,
    NothingSent,
    ProviderIdUnknown,
    StoreUnavailable,
)
from sesame.server.domain.log_quota import LogQuota
from sesame.server.domain.model import DeliveryState, SentPart, SentSms, SmsMessage
from sesame.server.domain.ports import Clock, ProviderIds, SmsGateway
from sesame.server.domain.privacy import mask_challenge, mask_phone, redact

_log = logging.getLogger("sesame.sms")

# Records a report: challenge id, the state reached, our provider reference, and the SMSC's message id of the
# part whose receipt settled it (Challenges.record_delivery's provider_id, decision 0041).
RecordDelivery = Callable[[str, DeliveryState, str, str], Awaitable[None]]
INTERNATIONAL: Final = Address(1, 1, "")  # TON international, NPI E.164
_FINAL_RECEIPT: Final = 0x01  # registered_delivery: a receipt on success or failure (§5.2.17)
_FIRST_RETRY, _LONGEST_RETRY = 0.5, 10.0
# A bind refused for our account (a wrong password or system_id, or the SMSC's catch-all ESME_RBINDFAIL) is
# not cleared by the next try but by someone changing a setting, and an SMSC may count failed binds towards
# locking the account: tried again doubling up to a minute, not 10 s (decision 0117).
_LONGEST_RETRY_REFUSED: Final = 60.0
# A failed attempt to bind is logged once, then at most once in this many seconds per kind of failure, the
# next line counting those held back; a WARNING every 10 s for ever drowned the log (decision 0117).
BIND_WARNING_EVERY_SECONDS: Final = 60.0
# So many ids of receipts refused for now (unknown in memory and in Redis) are remembered at most.
UNKNOWN_RECEIPTS_KEPT: Final = 4096
# An SMSC message id that is no id (decision 0041's rule) is said at most once in this many seconds.
ODD_ID_WARNING_EVERY_SECONDS: Final = 60.0
# A recorded receipt is logged at most once in this many seconds per state reported, as Kannel's refused
# reports are (decision 0084's flood, an outside audit's 10,000 receipts).
RECEIPT_LINE_EVERY_SECONDS: Final = 60.0
# A session shorter than this counts as a failed bind for the next wait: an SMSC that binds and then breaks
# the session at once (a malformed PDU, say) was bound again every 0.5 s, for ever (decision 0084).
_STEADY_SESSION: Final = 10.0
# What an SMSC answers a part it did not take, on a session that goes on: the part alone may be asked again.
_PART_RETRIED: Final = frozenset({"throttled", "unavailable"})
# A part whose session ended before it was written goes on the next session, this many times at most (each
# waits for a bind, within the connect timeout): an SMSC that unbinds every session at once fails it then.
_ENDED_SESSIONS: Final = 3
_ENDED_POLL: Final = 0.01  # seconds between looks at a session that ended and is being let go
# Messages whose last part the SMSC accepted after our timeout (decision 0121), by reference: a later try
# of the same text is answered with their ids, not submitted again. Bounded; per process.
_TAKEN_LATE_KEPT: Final = 1024


@dataclass(frozen=True, slots=True)
class SmppConfig:
    """The SMSC, our account on it, the sender we show, and how hard we may push."""

    host: str
    port: int
    system_id: str
    password: str = field(repr=False)
    source: Address  # the bank's sender id: alphanumeric TON 5 NPI 0, or a number
    system_type: str = ""
    window: int = 10  # submit_sm awaiting their answer at once
    rate: float = 10.0  # submit_sm a second, at most
    timing: Timing = field(default_factory=lambda: Timing(connect=5.0, response=5.0, keepalive=30.0))
    # How long an SMSC message id leads back to its message: receipts come within the SMSC's validity.
    ids_kept: timedelta = timedelta(days=1)
    # A receipt for an id unknown in memory and in Redis is asked again this long (the sending worker's write
    # of the id is milliseconds away), then let go (decision 0165).
    unknown_receipts_for: float = 30.0
    # A later part the SMSC refused before taking it (throttled, busy) is asked again, alone, this often and
    # this far apart (SESAME_SMS_RETRIES, SESAME_SMS_RETRY_BACKOFF_MS): the parts it took stay taken.
    part_retry: RetryPolicy = field(default_factory=RetryPolicy)
    # The same failed attempt to bind is logged at most once in this many seconds (decision 0117).
    bind_warning_every: float = BIND_WARNING_EVERY_SECONDS


class SmppSmsGateway:
    """Sends through one kept-bound transceiver session; `start` before the first send, `close` at the end."""

    def __init__(
        self,
        config: SmppConfig,
        clock: Clock,
        record: RecordDelivery | None = None,
        ids: ProviderIds | None = None,
        on_bind: Callable[[bool], None] | None = None,
    ) -> None:
        """Prepare; no connection before `start`. Without `record`, receipts are answered and dropped;
        with `ids`, the SMSC's message ids are kept there too, so that a receipt for a message sent
        before a restart (or by another worker) still finds its challenge. `on_bind` hears each bind (True)
        and each failed attempt to bind (False): health reads it (decision 0122)."""
        self._on_bind = on_bind
        self._bind_quiet: LogQuota[str] = LogQuota(config.bind_warning_every)
        self._odd_ids: LogQuota[str] = LogQuota(ODD_ID_WARNING_EVERY_SECONDS)
        self._receipts_quiet: LogQuota[DeliveryState] = LogQuota(RECEIPT_LINE_EVERY_SECONDS)
        # When each receipt for an id unknown in memory and in Redis was first refused (decision 0165): asked
        # again within UNKNOWN_RECEIPT_SECONDS, then let go. Bounded; per process.
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._unknown_quiet: LogQuota[str] = LogQuota(ODD_ID_WARNING_EVERY_SECONDS)
        self._config = config
        self._clock = clock
        self._record = record
        self._ids = ids
        self._book = ReceiptBook()
        self._window = asyncio.Semaphore(config.window)
        self._next_slot = 0.0  # the loop time of the next free submit slot (`_slots`)
        self._session: SmppSession | None = None
        self._settled = asyncio.Event()  # set while bound, or while the last attempt to bind failed
        self._keeper: asyncio.Task[None] | None = None
        self._closing = False
        self._tasks: set[asyncio.Task[object]] = set()
        # ref -> (the SHA-256 of the text, the parts' ids): never the text, which holds the code.
        self._taken_late: OrderedDict[str, tuple[bytes, tuple[str, ...]]] = OrderedDict()

    async def start(self) -> None:
        """Start the task that binds, and binds again after every drop."""
        self._keeper = asyncio.create_task(self._keep_bound(), name="smpp session")

    @property
    def bound(self) -> bool:
        """True while a session is bound (the SMSC may still drop it at any time)."""
        return self._session is not None

    async def close(self) -> None:
        """Unbind (while the session still reads, so that the SMSC's answer is seen), then stop for good."""
        self._closing = True
        if self._session is not None:
            await self._session.unbind()
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper

    async def send(self, message: SmsMessage) -> SentSms:
        """Submit every part; DeliveryFailed unless the SMSC accepted them all."""
        ref = provider_ref("smpp", message)
        sent_at = self._clock.now()
        whole = self._taken_late.pop(ref, None)
        if whole is not None and whole[0] == _digest(message.text):
            # An earlier try's submit_sm_resp came after our timeout: the SMSC has this very text whole.
            _log.info(
                "SMS %s for %s taken late by the SMSC: not submitted again",
                ref,
                mask_challenge(message.challenge_id),
            )
            return SentSms(provider_ref=ref, sent_at=sent_at, provider_ids=tuple(filter(None, whole[1])))
        await self._bound()  # fails at once while the SMSC cannot be reached: the next provider's turn
        encoded = smpp_text.encode(message.text, random.randrange(256))  # noqa: S311 (a UDH reference, no secret)
        # The code's end on the loop's clock: no part is submitted past it, each says what is left of it.
        loop = asyncio.get_running_loop()
        deadline = None if message.valid_for is None else loop.time() + message.valid_for.total_seconds()
        slots = self._slots(len(encoded.parts), deadline)
        tracked = Tracked(message.challenge_id, ref)
        # A notice belongs to no challenge: its receipt would have nowhere to go.
        receipt = _FINAL_RECEIPT if self._record is not None and message.challenge_id else 0
        if receipt:
            self._book.expect(tracked, len(encoded.parts))
        ids: list[str] = []
        try:
            # Every part carries our reference for the message: the SMSC sees it, its records hold it.
            reference = ((pdu.TLV_USER_MESSAGE_REFERENCE, user_message_reference(ref).to_bytes(2, "big")),)
            for index, part in enumerate(encoded.parts):
                short = self._short_message(message, encoded, part, receipt, reference)
                parts = len(encoded.parts) if receipt else 0
                # The last part taken late leaves the whole text at the SMSC: remembered for a later try.
                last = (_digest(message.text), tuple(ids)) if index == len(encoded.parts) - 1 else None
                ids.append(
                    await self._submit_part(
                        short, tracked, parts, (slots[index], deadline), later=bool(ids), last=last
                    )
                )
        except DeliveryFailed as exc:
            if ids:
                # Some parts went: asking this SMSC again would send them twice (docs/decisions/0030).
                taken = f"SMSC took {len(ids)} of {len(encoded.parts)} parts"
                raise DeliveryFailed(taken, "partial") from exc
            raise
        finally:
            self._book.abandon(tracked)  # kept as soon as one part was accepted
        # The text (payee, amount) stays out of INFO lines, as the other gateways' (decision 0024); DEBUG
        # shows it with the code hidden, and only then is it redacted (a regex over the text).
        _log.info(
            "SMS %s via SMPP to %s for %s in %d part(s)",
            ref,
            mask_phone(message.to),
            mask_challenge(message.challenge_id),
            len(encoded.parts),
        )
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("SMS %s text: %s", ref, redact(message.text))
        # The parts' ids that are ids: an SMSC that gave none, or none by the rule, leaves nothing to journal.
        return SentSms(provider_ref=ref, sent_at=sent_at, provider_ids=tuple(filter(None, ids)))

    def _short_message(
        self,
        message: SmsMessage,
        encoded: smpp_text.Encoded,
        part: bytes,
        receipt: int,
        tlvs: tuple[tuple[int, bytes], ...],
    ) -> ShortMessage:
        return ShortMessage(
            source=self._config.source,
            # E.164 without its '+', as TON international says.
            destination=Address(INTERNATIONAL.ton, INTERNATIONAL.npi, message.to.removeprefix("+")),
            esm_class=encoded.esm_class,
            registered_delivery=receipt,
            data_coding=encoded.data_coding,
            short_message=part,
            tlvs=tlvs,
        )

    async def _bound(self) -> SmppSession:
        """The bound session: waits while a bind is under way (at boot, after a drop, a session that just
        ended), fails at once while the last attempt to bind failed (the SMSC is unreachable: the next
        provider's turn)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + self._config.timing.connect
        while not self._closing:
            session = self._session
            if session is not None and not session.closed:
                return session
            if session is None and self._settled.is_set():
                break
            left = until - loop.time()
            if left <= 0:
                break
            if session is None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await self._settled.wait()
            else:
                # Ended (the SMSC unbound), its keeper lets it go within a tick and binds again.
                await asyncio.sleep(min(_ENDED_POLL, left))
        raise DeliveryFailed("SMSC not bound", "unreachable")

    async def _submit_part(  # noqa: PLR0913 (the part, its message, and what a late answer completes)
        self,
        short: ShortMessage,
        tracked: Tracked,
        parts: int,
        when: tuple[float, float | None],
        *,
        later: bool,
        last: tuple[bytes, tuple[str, ...]] | None = None,
    ) -> str:
        """Submit one part at its slot, before the code's deadline (`when`). A later part (the SMSC took the
        ones before) refused before acceptance (throttled, queue full, system error) is asked again after a
        jittered pause, in a slot of its own, within `part_retry` and the deadline: failing it as `partial`
        would send the message whole again elsewhere (the phone sees its first parts twice), or fail it with
        its first half, the code in it, on the phone. The first part's refusal is the failover's to retry (it
        asks for the whole message again: nothing was taken)."""
        retry = self._config.part_retry
        slot, deadline = when
        attempt = 0
        while True:
            try:
                if (wait := slot - asyncio.get_running_loop().time()) > 0:
                    await asyncio.sleep(wait)
                return await self._submit(short, tracked, parts, deadline=deadline, last=last)
            except DeliveryFailed as exc:
                if not later or exc.reason not in _PART_RETRIED or attempt == retry.retries:
                    raise
                _log.info(
                    "SMPP part refused (%s) for %s: asked again",
                    exc.reason,
                    mask_challenge(tracked.challenge_id),
                )
                await asyncio.sleep(retry.delay(attempt, random.random()))  # noqa: S311 (jitter, no secret)
                [slot] = self._slots(1, deadline)
                attempt += 1

    async def _submit(
        self,
        short: ShortMessage,
        tracked: Tracked,
        parts: int,
        *,
        deadline: float | None,
        last: tuple[bytes, tuple[str, ...]] | None = None,
    ) -> str:
        """Submit one part now, on the session bound now, unless the code's `deadline` (a loop time) passed:
        the part says what is left of the code (its validity period), the SMSC drops it past that (decision
        0123). A session that ended before the part was written got nothing: the part waits for the next
        bind and goes there (an outside audit: parts paced behind a drop were failed on the stale session,
        each a breaker fault, and the breaker opened right after the rebind).
        Its SMSC message id ("" if the answer had none readable). `parts` > 0: the message's part count, a
        receipt is expected for each. `last`: this is the message's last part, its text's digest and the ids
        of the parts before it (kept if this one is taken after our timeout)."""

        accepted = functools.partial(self._accepted, tracked=tracked, parts=parts)
        late = functools.partial(self._answered_late, tracked=tracked, parts=parts, last=last)
        async with self._window:
            answer = await self._request(short, deadline, accepted, late)
        # Only a submit_sm_resp accepts; a generic_nack refuses with its status (an outside audit: a
        # generic_nack of status 0, or an enquire_link_resp on the submit's sequence, read as accepted).
        if answer.command_id not in (pdu.SUBMIT_SM | pdu.RESPONSE, pdu.GENERIC_NACK) or (
            answer.command_id == pdu.GENERIC_NACK and answer.status == pdu.ESME_ROK
        ):
            raise DeliveryFailed(
                f"SMSC answered the submit_sm with 0x{answer.command_id:08x}, status 0x{answer.status:08x}",
                "error",
            )
        if answer.status != pdu.ESME_ROK:
            raise DeliveryFailed(
                f"SMSC refused the message (status 0x{answer.status:08x})", smpp_status.refusal(answer.status)
            )
        return self._message_id(answer)

    async def _request(
        self, short: ShortMessage, deadline: float | None, accepted: OnResponse, late: OnResponse
    ) -> Pdu:
        """The submit_sm's answer, on the session bound now; one that ended before the part was written is
        followed to the next (at most `_ENDED_SESSIONS`: then NothingSent)."""
        for _ in range(_ENDED_SESSIONS + 1):
            session = await self._bound()
            submitted = _valid_until(short, deadline)  # what is left of the code after any wait for the bind
            try:
                return await session.request(pdu.SUBMIT_SM, submitted.body(), accepted, late=late)
            except NoAnswer:
                raise DeliveryFailed("SMSC did not answer the submit_sm in time", "timeout") from None
            except Closed:
                continue  # nothing written: the next session's turn
            except SessionLost:
                # Written, then the connection went: the SMSC may have taken it.
                raise DeliveryFailed("SMSC connection lost during the submit_sm", "lost") from None
        raise NothingSent("SMSC sessions ended before the submit_sm, one after the other", "unreachable")

    def _accepted(self, answer: Pdu, *, tracked: Tracked, parts: int) -> None:
        """A submit_sm_resp, before the reader takes the next PDU: a receipt right behind it finds its id."""
        if answer.status == pdu.ESME_ROK and answer.command_id == pdu.SUBMIT_SM | pdu.RESPONSE:
            message_id = self._message_id(answer)
            if message_id:  # else no receipt can be matched to the part
                settled = self._book.accepted(message_id, tracked)
                if settled is not None:
                    self._later(self._settle(settled, "early receipt", message_id))
                if parts and self._ids is not None:
                    part = SentPart(tracked.challenge_id, tracked.provider_ref, parts)
                    self._later(self._remember(self._ids, message_id, part))

    def _message_id(self, answer: Pdu) -> str:
        """The submit_sm_resp's message id, "" when it has none or one that is no id by decision 0041's
        rule (an outside audit: a 60 KiB id was journaled and made Redis keys, spaces broke the journal's
        format): the SMS went all the same, only its receipts cannot be matched, said once a minute."""
        try:
            raw = pdu.parse_message_id(answer.body)
        except pdu.MalformedPdu:
            raw = None
        message_id = smsc_message_id(raw or "")
        if raw is not None and not message_id:
            held_back = self._odd_ids.admit("odd id")
            if held_back is not None:
                _log.warning(
                    "SMSC message id not kept (%d characters, not %s): receipts for the part cannot be "
                    "matched%s",
                    len(raw),
                    SMSC_ID_RULE,
                    self._odd_ids.held_back(held_back, "such ids"),
                )
        return message_id

    def _answered_late(
        self, answer: Pdu, *, tracked: Tracked, parts: int, last: tuple[bytes, tuple[str, ...]] | None
    ) -> None:
        """A submit_sm_resp after we gave up on the part (decision 0121): if the SMSC took it, its receipt
        leads back to the challenge, and a later try of the same text, whole at the SMSC when this was the
        last part, is not submitted again."""
        if answer.status != pdu.ESME_ROK or answer.command_id != pdu.SUBMIT_SM | pdu.RESPONSE:
            return
        message_id = self._message_id(answer)
        _log.info("SMPP submit_sm for %s answered late: the SMSC took it", tracked.provider_ref)
        if parts and message_id:
            settled = self._book.late(message_id, tracked, parts)
            if settled is not None:
                self._later(self._settle(settled, "early receipt", message_id))
            if self._ids is not None:
                part = SentPart(tracked.challenge_id, tracked.provider_ref, parts)
                self._later(self._remember(self._ids, message_id, part))
        if last is not None:
            self._taken_late[tracked.provider_ref] = (last[0], (*last[1], message_id))
            while len(self._taken_late) > _TAKEN_LATE_KEPT:
                self._taken_late.popitem(last=False)

    def _slots(self, count: int, deadline: float | None) -> list[float]:
        """The loop times at which `count` parts of one message may be submitted, at most `rate` a second,
        evenly spread, and reserved together: the parts of a message go out one after the other, not
        between other messages' parts (a phone shows the code with the whole warning only once the last part
        is in). DeliveryFailed `throttled`, nothing reserved, when the last slot is at or past `deadline`,
        the code's end: a code queued behind others past its life is not submitted (the next provider may
        send it in time; decision 0151)."""
        gap = 1 / self._config.rate
        first = max(asyncio.get_running_loop().time(), self._next_slot)
        final = first + (count - 1) * gap
        if deadline is not None and final >= deadline:
            raise DeliveryFailed(
                f"SMPP submits queued past the code's end ({final - deadline:+.1f} s for {count} part(s))",
                "throttled",
            )
        self._next_slot = final + gap
        return [first + index * gap for index in range(count)]

    async def _keep_bound(self) -> None:
        loop = asyncio.get_running_loop()
        delay = _FIRST_RETRY
        bind = Bind(self._config.system_id, self._config.password, self._config.system_type)
        failed, failing_since = 0, 0.0  # attempts to bind that failed since the last bind, from when
        while not self._closing:
            try:
                session = await SmppSession.open(
                    self._config.host, self._config.port, bind, self._config.timing, self._delivered
                )
            except SessionLost as exc:
                failing_since = failing_since if failed else loop.time()
                failed += 1
                self._bind_failed(exc)
                self._settled.set()
                if self._on_bind is not None:
                    self._on_bind(False)
                await asyncio.sleep(delay)
                refused = isinstance(exc, BindRefused) and exc.status in smpp_status.BIND_CREDENTIALS
                delay = min(delay * 2, _LONGEST_RETRY_REFUSED if refused else _LONGEST_RETRY)
                continue
            if failed:
                # The one line that closes an outage the WARNINGs opened, however many they held back.
                _log.info(
                    "SMPP bound to %s:%d as %r again, after %d failed attempt(s) to bind in %.0f s",
                    self._config.host,
                    self._config.port,
                    self._config.system_id,
                    failed,
                    loop.time() - failing_since,
                )
            else:
                _log.info(
                    "SMPP bound to %s:%d as %r", self._config.host, self._config.port, self._config.system_id
                )
            failed = 0
            self._bind_quiet.clear()  # the next outage's first failure is logged at once
            self._session = session
            self._settled.set()
            if self._on_bind is not None:
                self._on_bind(True)
            bound_at = loop.time()
            try:
                await session.run()
            finally:
                self._session = None
                # Dropped: messages wait for the bind that follows, as long as the connect timeout.
                self._settled.clear()
            if loop.time() - bound_at >= _STEADY_SESSION:
                delay = _FIRST_RETRY
            await asyncio.sleep(delay)
            delay = min(delay * 2, _LONGEST_RETRY)

    def _bind_failed(self, failure: SessionLost) -> None:
        """A WARNING naming the SMSC and the failure (its status, when it refused; never the password),
        unless one for the same failure was logged less than `config.bind_warning_every` ago."""
        held_back = self._bind_quiet.admit(str(failure))
        if held_back is not None:
            _log.warning(
                "SMPP bind to %s:%d failed: %s%s",
                self._config.host,
                self._config.port,
                failure,
                self._bind_quiet.held_back(held_back, "such attempts"),
            )

    async def _delivered(self, received: Pdu) -> int:
        """Record a receipt; a temporary error when the store cannot, so that the SMSC sends it again."""
        try:
            receipt = parse_receipt(pdu.parse_short_message(received.body))
        except (NotAReceipt, pdu.MalformedPdu) as exc:
            _log.info("SMPP deliver_sm ignored: %s", exc)
            return pdu.ESME_ROK
        known = self._book.knows(receipt.message_id)
        settled = self._book.settle(receipt)  # an unknown id is kept a while: our own answer may follow
        if settled is None and not known and self._ids is not None:
            try:
                settled = await self._settle_remembered(self._ids, receipt)
            except StoreUnavailable:
                _log.warning("delivery receipt not looked up: store unavailable")
                return pdu.ESME_RX_T_APPN
            except ProviderIdUnknown:
                # Not ours in memory, not in Redis yet: another worker's part whose id that worker has not
                # written yet. Answered ESME_ROK, it was lost (an outside audit); the SMSC sends it again,
                # for a while: an id unknown for longer is no message of ours (older than a day, forged), and
                # refused for ever an SMSC retrying at once burned a core (an outside audit).
                return self._unknown_receipt(receipt.message_id)
        if settled is None:
            return pdu.ESME_ROK
        return await self._settle(settled, receipt.stat, receipt.message_id)

    def _unknown_receipt(self, message_id: str) -> int:
        """ESME_RX_T_APPN while the receipt's id has been unknown less than `unknown_receipts_for`, then
        ESME_ROK (let go), said in one WARNING a minute."""
        now = time.monotonic()
        first = self._unknown.setdefault(message_id, now)
        if len(self._unknown) > UNKNOWN_RECEIPTS_KEPT:
            self._unknown.popitem(last=False)
        if now - first < self._config.unknown_receipts_for:
            return pdu.ESME_RX_T_APPN
        self._unknown.pop(message_id, None)
        held_back = self._unknown_quiet.admit("unknown")
        if held_back is not None:
            _log.warning(
                "SMPP receipt for an SMSC message id unknown for %g s: let go%s",
                self._config.unknown_receipts_for,
                self._unknown_quiet.held_back(held_back, "such receipts"),
            )
        return pdu.ESME_ROK

    async def _remember(self, ids: ProviderIds, message_id: str, part: SentPart) -> None:
        try:
            await ids.remember(message_id, part, self._clock.now() + self._config.ids_kept)
        except StoreUnavailable:
            # The receipt is then settled from memory only: lost if this process restarts first.
            _log.warning(
                "SMSC message id for %s not kept: store unavailable", mask_challenge(part.challenge_id)
            )

    async def _settle_remembered(self, ids: ProviderIds, receipt: Receipt) -> Settled | None:
        """A receipt for an id this process does not know: its message as the store remembers it, if
        any (ProviderIdUnknown if none). A message of several parts is delivered once the store has counted
        every part delivered (parts counted in memory before a restart are not in that count: such a message
        stays SENT)."""
        part = await ids.owner(receipt.message_id)
        tracked = Tracked(part.challenge_id, part.provider_ref)
        if receipt.state in (DeliveryState.FAILED, DeliveryState.EXPIRED):
            return Settled(tracked, receipt.state)
        if receipt.state is DeliveryState.DELIVERED:
            until = self._clock.now() + self._config.ids_kept
            delivered = await ids.delivered_parts(part.provider_ref, receipt.message_id, part.parts, until)
            if delivered >= part.parts:
                return Settled(tracked, DeliveryState.DELIVERED)
        return None

    async def _settle(self, settled: Settled, stat: str, message_id: str) -> int:
        """Record what the receipt of part `message_id` settled; the deliver_sm_resp status that says
        whether it was."""
        if self._record is None:
            return pdu.ESME_ROK
        try:
            await self._record(
                settled.tracked.challenge_id, settled.state, settled.tracked.provider_ref, message_id
            )
        except ChallengeNotFound:
            return pdu.ESME_ROK
        except StoreUnavailable:
            _log.warning(
                "delivery receipt for %s not recorded: store unavailable",
                mask_challenge(settled.tracked.challenge_id),
            )
            return pdu.ESME_RX_T_APPN
        # One line a minute per state reported, the next counting those held back (an outside audit: a flood
        # of 10,000 receipts wrote a line each). What was recorded is a report: the challenge's own state
        # moves forward only, so a `failed` report for a delivered challenge leaves it delivered.
        held_back = self._receipts_quiet.admit(settled.state)
        if held_back is not None:
            _log.info(
                "delivery receipt %s for %s: %s, recorded as a %s report%s",
                settled.tracked.provider_ref,
                mask_challenge(settled.tracked.challenge_id),
                stat,
                settled.state.value,
                self._receipts_quiet.held_back(held_back, "such receipts"),
            )
        return pdu.ESME_ROK

    def _later(self, work: Coroutine[object, object, object]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _valid_until(short: ShortMessage, deadline: float | None) -> ShortMessage:
    """The part with what is left of its code until `deadline` (a loop time) as its validity period: the
    SMSC drops it past that (decision 0123). DeliveryFailed `throttled` when nothing is left."""
    if deadline is None:
        return short
    left = deadline - asyncio.get_running_loop().time()
    if left <= 0:
        raise DeliveryFailed("SMPP: the code expired before its part could be submitted", "throttled")
    return dataclasses.replace(short, validity=pdu.relative_time(left))


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


_: type[SmsGateway] = SmppSmsGateway
