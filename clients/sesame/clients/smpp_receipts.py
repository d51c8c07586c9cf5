"""SMPP delivery receipts: what a deliver_sm receipt says, and whose message it is about.

An SMSC reports on each part it accepted with a deliver_sm whose esm_class says "SMSC delivery receipt"
(§5.2.12), its text in the de facto format of SMPP 3.4 Appendix B (`id:... stat:DELIVRD err:...`), and
often the receipted_message_id and message_state TLVs, which win when present. The SMSC's message ids are
mapped back to our message (challenge id and provider reference) from the submit_sm_resp on.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from sesame.clients.smpp_pdu import TLV_MESSAGE_STATE, TLV_RECEIPTED_MESSAGE_ID, ShortMessage
from sesame.clients.sms_reference import SMSC_ID_PATTERN, smsc_message_id
from sesame.server.domain.model import DeliveryState

RECEIPT: Final = 0x04  # esm_class message type bits (2-5): SMSC delivery receipt
_TYPE_BITS: Final = 0x3C
# An id by decision 0041's one rule, whole: a longer one's first 64 characters read as another message's id
# (an outside audit).
_ID: Final = re.compile(rb"\bid:(" + SMSC_ID_PATTERN.encode() + rb")(?=\s|$)")
_STAT: Final = re.compile(rb"\bstat:([A-Z]{7})")
# Appendix B's final states; ENROUTE, ACCEPTD and UNKNOWN say the message is still on its way.
_STATES: Final = {
    "DELIVRD": DeliveryState.DELIVERED,
    "UNDELIV": DeliveryState.FAILED,
    "EXPIRED": DeliveryState.EXPIRED,
    "DELETED": DeliveryState.FAILED,
    "REJECTD": DeliveryState.FAILED,
}
# The message_state TLV (§5.3.2.35): 2 delivered, 3 expired, 4 deleted, 5 undeliverable, 8 rejected.
_TLV_STATES: Final = {2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV", 8: "REJECTD"}
# Receipts come within the code's lifetime (minutes); this many messages in flight is far above it.
TRACKED: Final = 100_000
EARLY: Final = 1_000  # receipts whose id is not known yet (unknown ids are mostly from before a restart)


class NotAReceipt(ValueError):
    """A deliver_sm that is no delivery receipt (a mobile-originated message), or one without an id."""


@dataclass(frozen=True, slots=True)
class Receipt:
    """One part's report: the SMSC's message id, its stat word, and what that means for us."""

    message_id: str
    stat: str
    state: DeliveryState


def parse_receipt(message: ShortMessage) -> Receipt:
    """The receipt a deliver_sm carries. NotAReceipt."""
    if message.esm_class & _TYPE_BITS != RECEIPT:
        raise NotAReceipt("not a delivery receipt")
    text = message.short_message
    found_id = _ID.search(text)
    found_stat = _STAT.search(text)
    tlv_id = message.tlv(TLV_RECEIPTED_MESSAGE_ID)
    tlv_state = message.tlv(TLV_MESSAGE_STATE)
    # An id by decision 0041's rule, or none: a non-ASCII one decoded with replacement characters made
    # distinct ids collide (an outside audit).
    message_id = smsc_message_id(tlv_id.rstrip(b"\0").decode("ascii", "replace")) if tlv_id else None
    if tlv_id and not message_id:  # the id outside the rule, which the text repeats garbled: not ours
        raise NotAReceipt("receipt for a message id outside the rule")
    if not message_id and found_id:
        message_id = found_id.group(1).decode("ascii")
    if not message_id:
        raise NotAReceipt("receipt without a message id")
    stat = found_stat.group(1).decode("ascii") if found_stat else "UNKNOWN"
    if tlv_state and len(tlv_state) == 1:
        stat = _TLV_STATES.get(tlv_state[0], stat)
    return Receipt(message_id, stat, _STATES.get(stat, DeliveryState.SENT))


@dataclass(frozen=True, slots=True)
class Tracked:
    """Our message a part belongs to."""

    challenge_id: str
    provider_ref: str


@dataclass(frozen=True, slots=True)
class Settled:
    """What a receipt settles: the message and the state it has reached."""

    tracked: Tracked
    state: DeliveryState


@dataclass(slots=True)
class _Message:
    parts: int
    known_ids: int = 0
    delivered: set[str] = field(default_factory=set)
    failed: bool = False


class ReceiptBook:
    """SMSC message ids to our messages; a message is delivered once all its parts are, failed once one is.

    In memory, bounded: receipts for a message sent before a restart find nothing and are dropped
    (the outbox of issue 7 will keep the ids in Redis).
    """

    def __init__(self, limit: int = TRACKED) -> None:
        """Remember at most `limit` part ids and `limit` messages, forgetting the oldest first."""
        self._limit = limit
        self._parts: OrderedDict[str, Tracked] = OrderedDict()
        self._messages: dict[Tracked, _Message] = {}
        self._early: OrderedDict[str, Receipt] = OrderedDict()

    def expect(self, tracked: Tracked, parts: int) -> None:
        """A message of `parts` parts is being submitted."""
        self._messages[tracked] = _Message(parts)

    def __len__(self) -> int:
        """The messages remembered (at most the limit)."""
        return len(self._messages)

    def abandon(self, tracked: Tracked) -> None:
        """Forget a message none of whose parts the SMSC accepted."""
        message = self._messages.get(tracked)
        if message is not None and message.known_ids == 0:
            del self._messages[tracked]

    def accepted(self, message_id: str, tracked: Tracked) -> Settled | None:
        """The SMSC accepted one part under `message_id`; what a receipt that came first settles, if any.
        An empty id is no id: no receipt can be matched to it."""
        message = self._messages.get(tracked)
        if message is None or not message_id:
            return None
        if self._parts.get(message_id) != tracked:
            # An id the SMSC gave before (it repeats or restarted its count): its last message wins, and
            # the one before no longer counts it, or it was never let go (an outside audit).
            self._forget(message_id)
            self._parts[message_id] = tracked
            message.known_ids += 1
        while len(self._parts) > self._limit:
            self._forget(next(iter(self._parts)))
        # The messages bounded too, whatever their ids: the oldest first.
        while len(self._messages) > self._limit:
            del self._messages[next(iter(self._messages))]
        early = self._early.pop(message_id, None)
        return None if early is None else self.settle(early)

    def _forget(self, message_id: str) -> None:
        """Let part `message_id` go, and its message once none of its parts is known."""
        tracked = self._parts.pop(message_id, None)
        forgotten = None if tracked is None else self._messages.get(tracked)
        if tracked is not None and forgotten is not None:
            forgotten.known_ids -= 1
            if forgotten.known_ids <= 0:
                del self._messages[tracked]

    def late(self, message_id: str, tracked: Tracked, parts: int) -> Settled | None:
        """The SMSC accepted a part after its send was given up on (decision 0121): the message is tracked
        again (as of `parts` parts) if it was forgotten, then as `accepted`."""
        if tracked not in self._messages:
            self.expect(tracked, parts)
        return self.accepted(message_id, tracked)

    def knows(self, message_id: str) -> bool:
        """Whether `message_id` is a part this process sent and still remembers."""
        return message_id in self._parts

    def _keep_early(self, receipt: Receipt) -> None:
        # An SMSC may send the receipt before the submit_sm_resp that tells us its id (smpp34 does, at
        # times): kept until that answer comes, within a small bound.
        self._early[receipt.message_id] = receipt
        while len(self._early) > EARLY:
            self._early.popitem(last=False)

    def settle(self, receipt: Receipt) -> Settled | None:
        """The message a receipt is about and its state now; None for an unknown id or no news yet."""
        tracked = self._parts.get(receipt.message_id)
        message = self._messages.get(tracked) if tracked else None
        if tracked is None or message is None:
            self._keep_early(receipt)
            return None
        if receipt.state in (DeliveryState.FAILED, DeliveryState.EXPIRED):
            message.failed = True
            return Settled(tracked, receipt.state)
        if receipt.state is DeliveryState.DELIVERED:
            message.delivered.add(receipt.message_id)
            if not message.failed and len(message.delivered) >= message.parts:
                return Settled(tracked, DeliveryState.DELIVERED)
        return None
