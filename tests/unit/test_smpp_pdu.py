"""Our SMPP codec read and written by another one (the `smpp34` package's, in Rust)."""

from __future__ import annotations

import dataclasses

import smpp34

from sesame.clients.smpp_pdu import (
    BIND_TRANSCEIVER,
    SUBMIT_SM,
    Address,
    Bind,
    Pdu,
    ShortMessage,
    parse_message_id,
    parse_short_message,
    relative_time,
)


def test_our_submit_sm_decodes_field_for_field_in_the_other_codec():
    """smpp34 reads our submit_sm with the addresses, esm_class, receipt flag, coding and text we set."""
    short = ShortMessage(
        source=Address(5, 0, "MaBanque"),
        destination=Address(1, 1, "33612345678"),
        esm_class=0x40,
        registered_delivery=1,
        data_coding=8,
        short_message=b"\x05\x00\x03\x07\x02\x01\x00\xe7",
    )
    decoded = smpp34.decode(Pdu(SUBMIT_SM, 0, 42, short.body()).encode())
    assert isinstance(decoded, smpp34.SubmitSm)
    assert (decoded.sequence_number, decoded.source_addr, decoded.source_addr_ton) == (42, "MaBanque", 5)
    assert (decoded.destination_addr, decoded.dest_addr_ton, decoded.dest_addr_npi) == ("33612345678", 1, 1)
    assert (decoded.esm_class, decoded.registered_delivery, decoded.data_coding) == (0x40, 1, 8)
    assert decoded.short_message == short.short_message


def test_the_other_codecs_deliver_sm_parses_with_its_tlvs():
    """A receipt deliver_sm encoded by smpp34 parses into our fields, TLVs included."""
    wire = smpp34.DeliverSm(
        "33612345678",
        "MaBanque",
        b"id:abc stat:DELIVRD",
        esm_class=0x04,
        tlvs=[
            smpp34.Tlv(smpp34.TLV_RECEIPTED_MESSAGE_ID, b"abc\0"),
            smpp34.Tlv(smpp34.TLV_MESSAGE_STATE, b"\x02"),
        ],
    ).encode()
    parsed = parse_short_message(wire[16:])
    assert (parsed.source.value, parsed.destination.value, parsed.esm_class) == ("33612345678", "MaBanque", 4)
    assert parsed.short_message == b"id:abc stat:DELIVRD"
    assert parsed.tlv(smpp34.TLV_RECEIPTED_MESSAGE_ID) == b"abc\0"
    assert parsed.tlv(smpp34.TLV_MESSAGE_STATE) == b"\x02"


def test_bind_transceiver_carries_the_account_and_version_3_4():
    """The bind body holds system_id, password, system_type and interface version 0x34."""
    wire = Pdu(BIND_TRANSCEIVER, 0, 1, Bind("sesame", "secret", "OTP").body()).encode()
    decoded = smpp34.decode(wire)
    assert decoded.command_id == BIND_TRANSCEIVER
    assert decoded.body == b"sesame\0secret\0OTP\0\x34\0\0\0"


def test_a_submit_sm_resp_without_a_body_has_an_empty_message_id():
    """An error answer may carry no message_id at all (SMPP 3.4 allows it)."""
    assert (parse_message_id(b""), parse_message_id(b"3e8\0")) == ("", "3e8")


def test_a_validity_period_is_read_by_the_other_codec_as_a_relative_time():
    """validity_period set (decision 0123): smpp34 reads the relative time we wrote; unset, empty."""
    short = ShortMessage(Address(5, 0, "MaBanque"), Address(1, 1, "33612345678"), 0, 1, 0, b"code")
    timed = dataclasses.replace(short, validity=relative_time(299.2))
    assert timed.validity == "000000000500000R"
    decoded = smpp34.decode(Pdu(SUBMIT_SM, 0, 1, timed.body()).encode())
    assert isinstance(decoded, smpp34.SubmitSm)
    assert (decoded.validity_period, decoded.short_message) == ("000000000500000R", b"code")
    plain = smpp34.decode(Pdu(SUBMIT_SM, 0, 2, short.body()).encode())
    assert isinstance(plain, smpp34.SubmitSm)
    assert plain.validity_period == ""
    assert (relative_time(0.2), relative_time(90061)) == ("000000000001000R", "000001010101000R")
