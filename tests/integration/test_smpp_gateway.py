"""The SMPP gateway against the `smpp34` SMSC simulator on loopback: text, parts, receipts, reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
import redis.asyncio as aioredis
import smpp34

from sesame.clients import smpp_text
from sesame.clients.redis_provider_ids import RedisProviderIds
from sesame.clients.smpp_pdu import TLV_USER_MESSAGE_REFERENCE, Address
from sesame.clients.smpp_session import Timing
from sesame.clients.sms_failover import FailoverSmsGateway, Provider, Reliability
from sesame.clients.sms_reference import user_message_reference
from sesame.clients.sms_smpp import SmppConfig, SmppSmsGateway
from sesame.server.domain.errors import DeliveryFailed, ProviderIdUnknown, StoreUnavailable
from sesame.server.domain.model import DeliveryState, SmsMessage
from tests.fakes.clock import ShiftedClock
from tests.support.ports import free_port
from tests.support.smsc import Cable, Smsc, serving

pytestmark = pytest.mark.integration

PHONE = "+33612345678"
ENTRY_ID = "1796085051000-0"  # fixed time: an outbox entry's id as an opaque reference, no instant read
# The longest add-beneficiary text of issue 7: a 70-character payee with "ç", 406 characters in UCS-2.
LONG = (
    "MaBanque : code 482913 pour ajouter le bénéficiaire "
    "François-Xavier de la Fontaine-Sainte-Marguerite Dupont-Moretti Ça va"
    " (FR76 3000 6000 0112 3456 7890 189). Ne le communiquez à personne, même à un conseiller : "
    "la banque ne vous le demandera jamais par téléphone. Si vous n'êtes pas à l'origine de cette "
    "demande, appelez-nous immédiatement au 01 23 45 67 89, 7 jours sur 7, 24 heures sur 24. Merci bien !"
)


@dataclass
class Receipts:
    """What the gateway recorded: (challenge id, state, provider reference), in order, and the SMSC's
    message id of the part whose receipt settled each."""

    seen: list[tuple[str, DeliveryState, str]] = field(default_factory=list)
    message_ids: list[str] = field(default_factory=list)

    async def record(
        self, challenge_id: str, state: DeliveryState, provider_ref: str, provider_id: str
    ) -> None:
        self.seen.append((challenge_id, state, provider_ref))
        self.message_ids.append(provider_id)


Gateways = Callable[..., SmppSmsGateway]


@pytest.fixture
async def smsc() -> AsyncIterator[Smsc]:
    """The simulator on a free loopback port for the test."""
    async with serving(Smsc()) as running:
        yield running


@pytest.fixture
def receipts() -> Receipts:
    return Receipts()


@pytest.fixture
async def gateways(smsc: Smsc, receipts: Receipts) -> AsyncIterator[Gateways]:
    """Make started gateways bound to the test's SMSC (any setting may be changed), closed after."""
    made: list[SmppSmsGateway] = []

    async def make(**changes: object) -> SmppSmsGateway:
        settings: dict[str, object] = {
            "host": "127.0.0.1",
            "port": smsc.port,
            "system_id": "sesame",
            "password": "secret",
            "source": Address(5, 0, "MaBanque"),
            "timing": Timing(connect=2.0, response=2.0, keepalive=30.0),
        } | changes
        gateway = SmppSmsGateway(SmppConfig(**settings), ShiftedClock(), receipts.record)  # type: ignore[arg-type]
        await gateway.start()
        made.append(gateway)
        return gateway

    yield make
    for gateway in made:
        await gateway.close()


async def _until(condition: Callable[[], bool], limit: float = 10.0) -> None:
    """Wait, at most `limit` seconds, for `condition` (something the peer does in its own time)."""
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110 (the condition is the peer's, it sets no Event of ours)
            await asyncio.sleep(0.02)


async def test_a_gsm7_text_goes_as_data_coding_0_and_arrives_intact(smsc: Smsc, gateways: Gateways):
    """A text within the GSM alphabet (é, €) is one submit_sm in data_coding 0, read back unchanged."""
    gateway = await gateways()
    text = "MaBanque: code 482913, virement à Zoé de 12,50 € [réf 7]"
    await gateway.send(SmsMessage(PHONE, text, "ch.k1.d6"))
    (part,) = smsc.submitted
    assert (part.data_coding, part.esm_class, part.text) == (smpp_text.GSM7, 0, text)
    assert (part.destination, part.source, part.source_ton) == ("33612345678", "MaBanque", 5)


async def test_every_part_carries_the_messages_reference(smsc: Smsc, gateways: Gateways):
    """Each submit_sm of a message in several parts carries the same user_message_reference, made from our
    provider reference (itself from the message's reference), as the SMSC reads it (decision 0041)."""
    gateway = await gateways()
    sent = await gateway.send(SmsMessage(PHONE, LONG, "ch.k1.d6", reference=ENTRY_ID))
    assert sent.provider_ref == f"smpp-{ENTRY_ID}"
    expected = user_message_reference(sent.provider_ref).to_bytes(2, "big")
    assert len(smsc.submitted) > 1
    assert {part.tlvs.get(TLV_USER_MESSAGE_REFERENCE) for part in smsc.submitted} == {expected}
    assert sent.provider_ids == tuple(part.message_id for part in smsc.submitted)


async def test_a_ucs2_text_survives(smsc: Smsc, gateways: Gateways):
    """A text with ç and a typographic apostrophe goes as UCS-2 (data_coding 8) and arrives unchanged."""
    gateway = await gateways()
    text = "MaBanque : code 482913 pour François, l’opération — 5 min."  # noqa: RUF001 (the point)
    await gateway.send(SmsMessage(PHONE, text, "ch.k1.d6"))
    (part,) = smsc.submitted
    assert (part.data_coding, part.text) == (smpp_text.UCS2, text)


async def test_a_long_text_arrives_whole_in_concatenated_parts(smsc: Smsc, gateways: Gateways):
    """The 406-character text goes as 7 UCS-2 parts with one UDH reference; joined, it is the text."""
    gateway = await gateways()
    await gateway.send(SmsMessage(PHONE, LONG, "ch.k1.d6"))
    headers = [part.short_message[:6] for part in smsc.submitted]
    assert len(smsc.submitted) == 7
    assert all(part.esm_class & smpp_text.UDHI for part in smsc.submitted)
    assert {header[:4] for header in headers} == {headers[0][:4]}
    assert [(header[4], header[5]) for header in headers] == [(7, seq) for seq in range(1, 8)]
    assert smsc.text() == LONG


async def test_a_delivered_receipt_is_recorded_once_every_part_is(
    smsc: Smsc, gateways: Gateways, receipts: Receipts
):
    """Receipts DELIVRD for all 7 parts record one DELIVERED against the challenge and our reference, with
    the SMSC's id of the part whose receipt completed it (journaled as `provider_id`, decision 0041)."""
    gateway = await gateways()
    sent = await gateway.send(SmsMessage(PHONE, LONG, "ch.k1.d6"))
    await _until(lambda: bool(receipts.seen))
    assert receipts.seen == [("ch.k1.d6", DeliveryState.DELIVERED, sent.provider_ref)]
    assert len(receipts.message_ids) == 1
    assert receipts.message_ids[0] in sent.provider_ids
    assert all(part.registered_delivery == 1 for part in smsc.submitted)


async def test_an_undeliverable_receipt_records_failed(smsc: Smsc, gateways: Gateways, receipts: Receipts):
    """A receipt stat:UNDELIV records FAILED against the challenge."""
    smsc.receipt = "UNDELIV"
    gateway = await gateways()
    sent = await gateway.send(SmsMessage(PHONE, "MaBanque: code 482913", "ch.k1.d6"))
    await _until(lambda: bool(receipts.seen))
    assert receipts.seen == [("ch.k1.d6", DeliveryState.FAILED, sent.provider_ref)]


async def test_a_notice_asks_for_no_receipt(smsc: Smsc, gateways: Gateways):
    """A notice (no challenge) goes with registered_delivery 0: its receipt would have nowhere to go."""
    gateway = await gateways()
    await gateway.send(SmsMessage(PHONE, "MaBanque: votre numéro a changé.", ""))
    assert smsc.submitted[0].registered_delivery == 0


async def test_a_refused_submit_raises_delivery_failed(smsc: Smsc, gateways: Gateways):
    """An SMSC that answers ESME_RINVDSTADR makes send raise DeliveryFailed."""
    smsc.refuse_with = smpp34.ESME_RINVDSTADR
    gateway = await gateways()
    with pytest.raises(DeliveryFailed):
        await gateway.send(SmsMessage(PHONE, "MaBanque: code 482913", "ch.k1.d6"))


async def test_the_gateway_binds_again_after_the_connection_is_cut(smsc: Smsc, gateways: Gateways):
    """After the TCP connection is cut with no SMPP goodbye, the gateway binds again and sends."""
    cable = Cable(smsc.port)
    await cable.start()
    gateway = await gateways(port=cable.port)
    await gateway.send(SmsMessage(PHONE, "MaBanque: code 111111", "ch.k1.d6"))
    cable.cut()
    await _until(lambda: smsc.binds == 2 and gateway.bound)
    await gateway.send(SmsMessage(PHONE, "MaBanque: code 222222", "ch.k1.d6"))
    assert [part.text[-6:] for part in smsc.submitted] == ["111111", "222222"]
    await cable.close()


async def test_the_gateway_binds_again_after_the_smsc_unbinds(smsc: Smsc, gateways: Gateways):
    """After the SMSC sends unbind, the gateway answers it, binds again and the next message goes."""
    gateway = await gateways()
    await _until(lambda: smsc.binds == 1)
    await smsc.unbind_all()
    await _until(lambda: smsc.binds == 2 and gateway.bound)
    await gateway.send(SmsMessage(PHONE, "MaBanque: code 222222", "ch.k1.d6"))
    assert [part.text[-6:] for part in smsc.submitted] == ["222222"]


async def test_an_unreachable_smsc_fails_the_message_at_once(gateways: Gateways):
    """With nothing listening on the SMSC's port, send raises DeliveryFailed (the next provider's turn)."""
    gateway = await gateways(port=free_port())
    with pytest.raises(DeliveryFailed):
        await gateway.send(SmsMessage(PHONE, "MaBanque: code 482913", "ch.k1.d6"))


def _pdu(command_id: int, sequence: int, body: bytes = b"") -> bytes:
    return struct.pack(">IIII", 16 + len(body), command_id, 0, sequence) + body


async def _read_raw(reader: asyncio.StreamReader) -> smpp34.RawPdu | smpp34.SubmitSm | smpp34.DeliverSm:
    head = await reader.readexactly(16)
    body = await reader.readexactly(int.from_bytes(head[:4], "big") - 16)
    return smpp34.decode(head + body)


async def test_enquire_link_is_answered_and_sent_every_keepalive(gateways: Gateways):
    """A peer's enquire_link gets its enquire_link_resp; ours comes once the keepalive is due."""
    seen: asyncio.Queue[smpp34.RawPdu] = asyncio.Queue()

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        bind = await _read_raw(reader)
        writer.write(_pdu(0x80000009, bind.sequence_number, b"PEER\0") + _pdu(0x00000015, 77))
        with contextlib.suppress(asyncio.IncompleteReadError):
            while True:
                received = await _read_raw(reader)
                await seen.put(received)
                if received.command_id == 0x00000015:
                    writer.write(_pdu(0x80000015, received.sequence_number))

    port = free_port()
    server = await asyncio.start_server(peer, "127.0.0.1", port)
    await gateways(port=port, timing=Timing(connect=2.0, response=2.0, keepalive=1.0))
    async with asyncio.timeout(10):
        answer = await seen.get()
        ours = await seen.get()
    assert (answer.command_id, answer.command_status, answer.sequence_number) == (0x80000015, 0, 77)
    assert ours.command_id == 0x00000015
    server.close()


async def test_no_more_submits_await_their_answer_than_the_window(gateways: Gateways):
    """With a window of 2 and three messages at once, the third submit_sm waits for an answer."""
    held: list[tuple[int, asyncio.StreamWriter]] = []

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        bind = await _read_raw(reader)
        writer.write(_pdu(0x80000009, bind.sequence_number, b"PEER\0"))
        with contextlib.suppress(asyncio.IncompleteReadError):
            while True:
                received = await _read_raw(reader)
                if received.command_id == 0x00000004:
                    held.append((received.sequence_number, writer))

    port = free_port()
    server = await asyncio.start_server(peer, "127.0.0.1", port)
    gateway = await gateways(port=port, window=2, timing=Timing(connect=2.0, response=5.0, keepalive=30.0))
    message = SmsMessage(PHONE, "MaBanque: code 482913", "")
    sends = [asyncio.create_task(gateway.send(message)) for _ in range(3)]
    await _until(lambda: len(held) == 2)
    await asyncio.sleep(0.5)  # time for a third submit_sm to arrive, were the window not held
    assert len(held) == 2
    for sequence, writer in held[:2]:
        writer.write(_pdu(0x80000004, sequence, b"m1\0"))
    await _until(lambda: len(held) == 3)
    sequence, writer = held[2]
    writer.write(_pdu(0x80000004, sequence, b"m3\0"))
    await asyncio.gather(*sends)
    server.close()


async def test_submits_are_paced_at_the_rate(smsc: Smsc, gateways: Gateways):
    """At 5 submit_sm a second, six messages sent at once take at least a second to leave."""
    smsc.receipt = None
    gateway = await gateways(rate=5.0)
    started = asyncio.get_running_loop().time()
    message = SmsMessage(PHONE, "MaBanque: code 482913", "")
    await asyncio.gather(*(gateway.send(message) for _ in range(6)))
    assert asyncio.get_running_loop().time() - started >= 0.95
    assert len(smsc.submitted) == 6


async def test_a_code_queued_past_its_end_is_not_submitted(smsc: Smsc, gateways: Gateways):
    """At 2 submit_sm a second, four codes living 1.2 s sent at once: the slots at 0, 0.5 and 1 s go, the
    fourth (1.5 s, past its code's end) is refused `throttled` at once, nothing submitted for it (decision
    0151)."""
    smsc.receipt = None
    gateway = await gateways(rate=2.0)
    message = SmsMessage(PHONE, "MaBanque: code 482913", "ch.k1.d6", valid_for=timedelta(seconds=1.2))
    sent = await asyncio.gather(*(gateway.send(message) for _ in range(4)), return_exceptions=True)
    refused = [outcome for outcome in sent if isinstance(outcome, DeliveryFailed)]
    assert [failure.reason for failure in refused] == ["throttled"]
    assert len(smsc.submitted) == 3


async def test_close_unbinds_and_does_not_bind_again(gateways: Gateways):
    """Closing the gateway sends unbind on its session, and no new connection follows."""
    seen: list[int] = []
    connections: list[int] = []

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        bind = await _read_raw(reader)
        writer.write(_pdu(0x80000009, bind.sequence_number, b"PEER\0"))
        with contextlib.suppress(asyncio.IncompleteReadError):
            while True:
                received = await _read_raw(reader)
                seen.append(received.command_id)
                if received.command_id == 0x00000006:
                    writer.write(_pdu(0x80000006, received.sequence_number))

    port = free_port()
    server = await asyncio.start_server(peer, "127.0.0.1", port)
    gateway = await gateways(port=port)
    await _until(lambda: gateway.bound)
    await gateway.close()
    await asyncio.sleep(1.0)  # longer than the first reconnect delay
    assert (seen, len(connections), gateway.bound) == ([0x00000006], 1, False)
    server.close()


async def test_a_receipt_the_store_cannot_take_is_answered_as_a_temporary_error(gateways: Gateways):
    """StoreUnavailable while recording: deliver_sm_resp says ESME_RX_T_APPN; the SMSC's retry is recorded."""
    answers: asyncio.Queue[smpp34.RawPdu] = asyncio.Queue()
    recorded: list[DeliveryState] = []
    attempts: list[int] = []

    async def record(challenge_id: str, state: DeliveryState, provider_ref: str, provider_id: str) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise StoreUnavailable("redis down")
        recorded.append(state)

    receipt = smpp34.DeliverSm("33612345678", "MaBanque", b"id:m1 stat:DELIVRD err:000", esm_class=0x04)

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        bind = await _read_raw(reader)
        writer.write(_pdu(0x80000009, bind.sequence_number, b"PEER\0"))
        with contextlib.suppress(asyncio.IncompleteReadError):
            while True:
                received = await _read_raw(reader)
                if received.command_id == 0x00000004:
                    writer.write(_pdu(0x80000004, received.sequence_number, b"m1\0"))
                    writer.write(_with_sequence(receipt.encode(), 900))
                elif received.command_id == 0x80000005:
                    await answers.put(received)
                    if received.command_status:
                        writer.write(_with_sequence(receipt.encode(), 901))

    port = free_port()
    server = await asyncio.start_server(peer, "127.0.0.1", port)
    gateway = SmppSmsGateway(
        SmppConfig("127.0.0.1", port, "sesame", "secret", Address(5, 0, "MaBanque")), ShiftedClock(), record
    )
    await gateway.start()
    await gateway.send(SmsMessage(PHONE, "MaBanque: code 482913", "ch.k1.d6"))
    async with asyncio.timeout(10):
        first, second = await answers.get(), await answers.get()
    assert (first.sequence_number, first.command_status) == (900, 0x64)
    assert (second.sequence_number, second.command_status) == (901, 0)
    assert recorded == [DeliveryState.DELIVERED]
    await gateway.close()
    server.close()


def _with_sequence(wire: bytes, sequence: int) -> bytes:
    return wire[:12] + struct.pack(">I", sequence) + wire[16:]


async def test_a_message_sent_while_the_session_is_rebinding_waits_for_it(smsc: Smsc, gateways: Gateways):
    """Right after the connection is cut, a message waits for the new bind instead of failing."""
    cable = Cable(smsc.port)
    await cable.start()
    gateway = await gateways(port=cable.port)
    await _until(lambda: gateway.bound)
    cable.cut()
    await _until(lambda: not gateway.bound)
    await gateway.send(SmsMessage(PHONE, "MaBanque: code 333333", "ch.k1.d6"))
    assert [part.text[-6:] for part in smsc.submitted] == ["333333"]
    await cable.close()


async def test_an_expired_receipt_records_expired(smsc: Smsc, gateways: Gateways, receipts: Receipts):
    """A receipt stat:EXPIRED records EXPIRED (final; DELIVERY_STATE_EXPIRED in the API)."""
    smsc.receipt = "EXPIRED"
    gateway = await gateways()
    sent = await gateway.send(SmsMessage(PHONE, "MaBanque: code 482913", "ch.k1.d6"))
    await _until(lambda: bool(receipts.seen))
    assert receipts.seen == [("ch.k1.d6", DeliveryState.EXPIRED, sent.provider_ref)]


async def test_a_receipt_after_a_restart_finds_its_challenge(
    smsc: Smsc, receipts: Receipts, redis_client: aioredis.Redis
):
    """A message sent by one gateway, its receipt arriving once a new one (a restart) is bound: the SMSC's
    id, kept in Redis, leads the receipt to its challenge and our reference."""
    smsc.receipt = None
    ids = RedisProviderIds(redis_client)
    config = SmppConfig("127.0.0.1", smsc.port, "sesame", "secret", Address(5, 0, "MaBanque"))
    before = SmppSmsGateway(config, ShiftedClock(), receipts.record, ids)
    await before.start()
    sent = await before.send(SmsMessage(PHONE, "MaBanque: code 482913", "ch.k1.d6"))
    message_id = smsc.submitted[0].message_id
    async with asyncio.timeout(5):
        while True:
            with contextlib.suppress(ProviderIdUnknown):
                await ids.owner(message_id)
                break
            await asyncio.sleep(0.02)
    await before.close()
    after = SmppSmsGateway(config, ShiftedClock(), receipts.record, ids)
    await after.start()
    await _until(lambda: after.bound)
    await smsc.push_receipt(message_id, "DELIVRD")
    await _until(lambda: bool(receipts.seen))
    assert receipts.seen == [("ch.k1.d6", DeliveryState.DELIVERED, sent.provider_ref)]
    assert receipts.message_ids == [message_id]
    await after.close()


async def test_without_the_kept_ids_a_receipt_after_a_restart_is_lost(smsc: Smsc, receipts: Receipts):
    """The same restart with no ProviderIds (as before decision 0030): the receipt finds nothing."""
    smsc.receipt = None
    config = SmppConfig("127.0.0.1", smsc.port, "sesame", "secret", Address(5, 0, "MaBanque"))
    before = SmppSmsGateway(config, ShiftedClock(), receipts.record)
    await before.start()
    await before.send(SmsMessage(PHONE, "MaBanque: code 482913", "ch.k1.d6"))
    await before.close()
    after = SmppSmsGateway(config, ShiftedClock(), receipts.record)
    await after.start()
    await _until(lambda: after.bound)
    await smsc.push_receipt(smsc.submitted[0].message_id, "DELIVRD")
    await asyncio.sleep(0.5)  # the receipt's time to arrive and be answered
    assert receipts.seen == []
    await after.close()


async def test_the_smscs_message_ids_are_returned_for_recording(smsc: Smsc, gateways: Gateways):
    """A 7-part message is acknowledged with the SMSC's 7 message ids, in part order."""
    gateway = await gateways()
    sent = await gateway.send(SmsMessage(PHONE, LONG, "ch.k1.d6"))
    assert sent.provider_ids == tuple(part.message_id for part in smsc.submitted)
    assert len(sent.provider_ids) == 7


async def test_a_throttled_submit_is_retried_at_the_same_smsc(smsc: Smsc, gateways: Gateways):
    """ESME_RTHROTTLED, then accepted: the failover's policy asks the same SMSC again, which takes it."""
    smsc.refuse_with = smpp34.ESME_RTHROTTLED
    gateway = await gateways()
    with pytest.raises(DeliveryFailed) as caught:
        await gateway.send(SmsMessage(PHONE, "MaBanque: code 482913", "ch.k1.d6"))
    assert caught.value.reason == "throttled"
    waits: list[float] = []

    async def recorded(seconds: float) -> None:
        waits.append(seconds)
        smsc.refuse_with = None

    failover = FailoverSmsGateway([Provider("smpp", gateway)], Reliability(sleep=recorded))
    await failover.send(SmsMessage(PHONE, "MaBanque: code 482913", "ch.k1.d6"))
    assert (len(waits), len(smsc.submitted)) == (1, 1)


@pytest.mark.parametrize(
    ("status", "reason"),
    [(smpp34.ESME_RINVDSTADR, "bad_number"), (smpp34.ESME_RSYSERR, "unavailable"), (0x45, "refused")],
)
async def test_a_refusal_is_classified_by_its_command_status(
    smsc: Smsc, gateways: Gateways, status: int, reason: str
):
    """Invalid destination is the number's fault, a system error temporary, a submit failure final."""
    smsc.refuse_with = status
    gateway = await gateways()
    with pytest.raises(DeliveryFailed) as caught:
        await gateway.send(SmsMessage(PHONE, "MaBanque: code 482913", "ch.k1.d6"))
    assert caught.value.reason == reason


async def test_a_message_refused_after_some_parts_is_partial(smsc: Smsc, gateways: Gateways):
    """Three of seven parts accepted, then throttled: reason partial (not retried there: the three would
    go twice), and the SMSC got three parts."""
    smsc.refuse_with, smsc.accept_first = smpp34.ESME_RTHROTTLED, 3
    gateway = await gateways()
    with pytest.raises(DeliveryFailed) as caught:
        await gateway.send(SmsMessage(PHONE, LONG, "ch.k1.d6"))
    assert (caught.value.reason, len(smsc.submitted)) == ("partial", 3)


async def test_a_submit_answered_after_the_timeout_is_kept_and_not_submitted_again(
    smsc: Smsc, gateways: Gateways, receipts: Receipts
):
    """The SMSC answers the only part of a code SMS 1.5 s after the gateway's 1 s timeout, with a message id,
    then sends its receipt: the send failed (`timeout`), but the receipt records DELIVERED against the
    message, and the same text asked again (the outbox's next try, the same reference) is answered with the
    SMSC's id and not submitted a second time (decision 0121). Before, the late answer was dropped, the
    receipt found nothing and the next try sent the code again."""
    smsc.late = {0: 1.5}
    gateway = await gateways(timing=Timing(connect=2.0, response=1.0, keepalive=30.0))
    message = SmsMessage(PHONE, "MaBanque: code 482913 pour vous connecter.", "ch.k1.d6", reference=ENTRY_ID)
    with pytest.raises(DeliveryFailed) as caught:
        await gateway.send(message)
    assert caught.value.reason == "timeout"
    await _until(lambda: bool(receipts.seen))
    assert receipts.seen == [("ch.k1.d6", DeliveryState.DELIVERED, f"smpp-{ENTRY_ID}")]
    sent = await gateway.send(message)
    assert sent.provider_ids == (smsc.submitted[0].message_id,)
    assert len(smsc.submitted) == 1


async def test_a_later_text_of_a_message_taken_late_is_submitted(smsc: Smsc, gateways: Gateways):
    """Taken late, but the next try's text differs (its validity in minutes went down): that text is
    submitted, since the journal names the text sent by its hash."""
    smsc.late, smsc.receipt = {0: 1.5}, None
    gateway = await gateways(timing=Timing(connect=2.0, response=1.0, keepalive=30.0))
    first = SmsMessage(PHONE, "MaBanque: code 482913. Valable 5 min.", "ch.k1.d6", reference=ENTRY_ID)
    with pytest.raises(DeliveryFailed):
        await gateway.send(first)
    await _until(lambda: len(smsc.submitted) == 1)
    await asyncio.sleep(0.1)
    await gateway.send(
        SmsMessage(PHONE, "MaBanque: code 482913. Valable 4 min.", "ch.k1.d6", reference=ENTRY_ID)
    )
    assert len(smsc.submitted) == 2
