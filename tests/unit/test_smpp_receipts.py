"""SMPP delivery receipts: parsed from text or TLVs, and settled per message over all its parts."""

from __future__ import annotations

import pytest

from sesame.clients.smpp_pdu import TLV_MESSAGE_STATE, TLV_RECEIPTED_MESSAGE_ID, Address, ShortMessage
from sesame.clients.smpp_receipts import NotAReceipt, Receipt, ReceiptBook, Tracked, parse_receipt
from sesame.server.domain.model import DeliveryState

TEXT = b"id:3e8 sub:001 dlvrd:001 submit date:2611301200 done date:2611301201 stat:%s err:000 text:"


def _deliver(text: bytes, esm_class: int = 0x04, tlvs: tuple[tuple[int, bytes], ...] = ()) -> ShortMessage:
    return ShortMessage(
        Address(1, 1, "33612345678"), Address(5, 0, "MaBanque"), esm_class, 0, 0, text, "", tlvs
    )


@pytest.mark.parametrize(
    ("stat", "state"),
    [
        (b"DELIVRD", DeliveryState.DELIVERED),
        (b"UNDELIV", DeliveryState.FAILED),
        (b"EXPIRED", DeliveryState.EXPIRED),
        (b"REJECTD", DeliveryState.FAILED),
        (b"DELETED", DeliveryState.FAILED),
        (b"ENROUTE", DeliveryState.SENT),
        (b"ACCEPTD", DeliveryState.SENT),
        (b"UNKNOWN", DeliveryState.SENT),
    ],
)
def test_each_stat_word_maps_to_a_delivery_state(stat: bytes, state: DeliveryState):
    """Appendix B's stat words: DELIVRD delivered, the final failures failed, the rest still sent."""
    assert parse_receipt(_deliver(TEXT % stat)) == Receipt("3e8", stat.decode(), state)


def test_the_tlvs_win_over_the_text():
    """receipted_message_id and message_state, when present, are what the receipt says."""
    tlvs = ((TLV_RECEIPTED_MESSAGE_ID, b"ff01\0"), (TLV_MESSAGE_STATE, b"\x05"))
    receipt = parse_receipt(_deliver(TEXT % b"DELIVRD", tlvs=tlvs))
    assert (receipt.message_id, receipt.state) == ("ff01", DeliveryState.FAILED)


@pytest.mark.parametrize(
    ("text", "tlvs"),
    [
        # 65 characters: its first 64 were read as another message's id (an outside audit).
        (b"id:" + b"a" * 65 + b" sub:001 stat:UNDELIV", ()),
        # The TLV's id outside the rule, which the text repeats garbled: not read from the text instead.
        (b"id:A sub:001 stat:UNDELIV", ((TLV_RECEIPTED_MESSAGE_ID, b"A B\0"),)),
    ],
)
def test_a_receipt_whose_id_is_outside_the_rule_is_none(text: bytes, tlvs: tuple[tuple[int, bytes], ...]):
    """Decision 0041's rule, whole: a receipt of an id outside it matches no message."""
    with pytest.raises(NotAReceipt):
        parse_receipt(_deliver(text, tlvs=tlvs))


def test_an_id_with_a_colon_is_read_whole():
    """`:` is one of the rule's characters: the text's id is read to its end."""
    assert parse_receipt(_deliver(b"id:ab:12 sub:001 stat:DELIVRD")).message_id == "ab:12"


def test_a_mobile_originated_message_is_no_receipt():
    """A deliver_sm with esm_class 0 (a reply from the phone) is not taken for a receipt."""
    with pytest.raises(NotAReceipt):
        parse_receipt(_deliver(TEXT % b"DELIVRD", esm_class=0))


def test_a_message_is_delivered_only_once_every_part_is():
    """Two parts: the first DELIVRD settles nothing, the second settles DELIVERED."""
    book = ReceiptBook()
    tracked = Tracked("ch.k1.d6", "smpp-1")
    book.expect(tracked, 2)
    book.accepted("a", tracked)
    book.accepted("b", tracked)
    assert book.settle(Receipt("a", "DELIVRD", DeliveryState.DELIVERED)) is None
    settled = book.settle(Receipt("b", "DELIVRD", DeliveryState.DELIVERED))
    assert settled is not None
    assert (settled.tracked, settled.state) == (tracked, DeliveryState.DELIVERED)


def test_one_failed_part_fails_the_message():
    """A part reported UNDELIV settles the message FAILED at once, and later parts cannot undo it."""
    book = ReceiptBook()
    tracked = Tracked("ch.k1.d6", "smpp-1")
    book.expect(tracked, 2)
    book.accepted("a", tracked)
    book.accepted("b", tracked)
    failed = book.settle(Receipt("a", "UNDELIV", DeliveryState.FAILED))
    assert failed is not None
    assert failed.state is DeliveryState.FAILED
    assert book.settle(Receipt("b", "DELIVRD", DeliveryState.DELIVERED)) is None


def test_an_unknown_message_id_settles_nothing():
    """A receipt for an id we never got (sent before a restart) is dropped."""
    assert ReceiptBook().settle(Receipt("zz", "DELIVRD", DeliveryState.DELIVERED)) is None


def test_the_oldest_ids_are_forgotten_past_the_limit():
    """With a limit of 2 ids, the third accepted id pushes out the first message."""
    book = ReceiptBook(limit=2)
    first, second, third = (Tracked(f"ch{n}", f"r{n}") for n in range(3))
    for message_id, tracked in (("a", first), ("b", second), ("c", third)):
        book.expect(tracked, 1)
        book.accepted(message_id, tracked)
    assert book.settle(Receipt("a", "DELIVRD", DeliveryState.DELIVERED)) is None
    assert book.settle(Receipt("c", "DELIVRD", DeliveryState.DELIVERED)) is not None


def test_a_receipt_that_beats_the_submit_answer_settles_once_the_id_is_known():
    """A DELIVRD for an id not yet answered is kept; the answer that brings the id settles it."""
    book = ReceiptBook()
    tracked = Tracked("ch.k1.d6", "smpp-1")
    book.expect(tracked, 1)
    assert book.settle(Receipt("a", "DELIVRD", DeliveryState.DELIVERED)) is None
    settled = book.accepted("a", tracked)
    assert settled is not None
    assert (settled.tracked, settled.state) == (tracked, DeliveryState.DELIVERED)


def test_messages_whose_ids_are_empty_are_not_kept():
    """An outside audit: 20,000 messages answered with an empty id kept 20,000 messages (only the id-keyed
    parts were bounded). An empty id is no id: the message is let go as one the SMSC gave no id for."""
    book = ReceiptBook(limit=10)
    for n in range(1000):
        tracked = Tracked(f"ch{n}", f"r{n}")
        book.expect(tracked, 2)
        assert book.accepted("", tracked) is None
        book.accepted("", tracked)
        book.abandon(tracked)
    assert len(book) == 0


def test_a_repeated_id_belongs_to_its_last_message_and_the_earlier_ones_are_let_go():
    """The same id for 1000 messages (an SMSC that repeats, or restarted its count): one message kept, the
    last, and the receipt settles it."""
    book = ReceiptBook(limit=10)
    for n in range(1000):
        tracked = Tracked(f"ch{n}", f"r{n}")
        book.expect(tracked, 1)
        book.accepted("same", tracked)
        book.abandon(tracked)
    assert len(book) == 1
    settled = book.settle(Receipt("same", "UNDELIV", DeliveryState.FAILED))
    assert settled is not None
    assert settled.tracked == Tracked("ch999", "r999")


def test_the_messages_themselves_are_bounded():
    """Messages being submitted, none of whose ids came yet, are bounded by the limit too."""
    book = ReceiptBook(limit=2)
    for n in range(5):
        book.expect(Tracked(f"ch{n}", f"r{n}"), 2)
    book.accepted("a", Tracked("ch4", "r4"))
    assert len(book) <= 2
