"""A notice SMS's journal entry (`user.notice`) is chained and sealed like every other, with its text's hash
and template version: the archive of a user whose number was changed verifies (issue 8 item 3, 0035), and so
does that of a user whose block alert went through the outbox (record_notice.lua; decision 0033)."""

from __future__ import annotations

import hashlib
from importlib import resources

import pytest

from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.server.domain import proof
from sesame.server.journal_archive import JournalArchive
from sesame.server.journal_verify import verify_archive
from tests.e2e.conftest import Live
from tests.e2e.helpers import enrolled, started, verify, wrong
from tests.support.console_sms import written
from tests.support.outbox import settled

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


async def test_a_number_change_notice_is_sealed_and_archived_in_its_place(
    live: Live, keystore: Pkcs11KeyStore
) -> None:
    """Override (its step queues the notice to the old number; the dispatcher sends it and record_notice.lua
    journals it, decision 0041), then suspend: the user's journal, sealed and archived, holds the notice
    numbered between the two, and `journal verify` finds nothing missing."""
    user_id = await enrolled(live)
    await live.enrol.OverrideSecurePhone(
        enrol_pb.OverrideSecurePhoneRequest(
            user_id=user_id,
            new_phone="+33698765432",
            operator="ops-1",
            reason="lost phone, identity checked",
            request_id="chg-1",
            actor="ops-1",
        )
    )
    await settled(live.store)
    await live.enrol.SuspendUser(
        enrol_pb.SuspendUserRequest(user_id=user_id, request_id="sus-1", actor="ops-1", reason="stolen")
    )
    assert live.sealer is not None
    assert await live.sealer.step() is not None
    archive = JournalArchive(live.sms_file.parent / "journal-archive")
    jwks = proof.jwk_set(await keystore.journal_public_keys())
    checked = verify_archive(archive.blocks(), jwks, archive.first_number())
    assert (checked.valid, checked.failed) == (True, "")
    stream = live.store.keys.user_journal(user_id)
    events = [e.fields["event"] for block in archive.blocks() for e in block.entries if e.stream == stream]
    assert events[-2:] == ["user.notice", "user.suspend"]
    (notice,) = [
        e.fields for block in archive.blocks() for e in block.entries if e.fields["event"] == "user.notice"
    ]
    (text,) = [sms["text"] for sms in written(live.sms_file)]
    template = resources.files("sesame.server") / "sms_templates" / "fr" / "phone_changed.txt"
    assert (notice["text_sha256"], notice["template"], notice["template_sha256"]) == (
        hashlib.sha256(text.encode()).hexdigest(),  # no code in a notice: its text is hashed as sent
        "fr/phone_changed",
        hashlib.sha256(template.read_bytes()).hexdigest(),
    )


async def test_a_block_alert_sent_from_the_outbox_is_sealed_with_its_text_hash(
    live: Live, keystore: Pkcs11KeyStore
) -> None:
    """Five wrong codes in a row queue the payer's alert with the block; the dispatcher sends it and
    record_notice.lua journals it: its entry carries the hash of the text sent and the template's version,
    and the user's sealed, archived journal verifies."""
    user_id = await enrolled(live)
    opened = [await started(live, user_id) for _ in range(2)]
    for challenge_id, code in opened:
        for _ in range(3):
            await verify(live, challenge_id, wrong(code))
    await settled(live.store)
    assert live.sealer is not None
    assert await live.sealer.step() is not None
    archive = JournalArchive(live.sms_file.parent / "journal-archive")
    jwks = proof.jwk_set(await keystore.journal_public_keys())
    checked = verify_archive(archive.blocks(), jwks, archive.first_number())
    assert (checked.valid, checked.failed) == (True, "")
    (notice,) = [
        e.fields for block in archive.blocks() for e in block.entries if e.fields["event"] == "user.notice"
    ]
    sent = written(live.sms_file)
    (text,) = [message["text"] for message in sent if not message["challenge_id"]]
    template = resources.files("sesame.server") / "sms_templates" / "fr" / "user_blocked.txt"
    assert (notice["kind"], notice["outcome"]) == ("user_blocked", "sent")
    assert (notice["text_sha256"], notice["template"], notice["template_sha256"]) == (
        hashlib.sha256(text.encode()).hexdigest(),
        "fr/user_blocked",
        hashlib.sha256(template.read_bytes()).hexdigest(),
    )
    assert "warning_sha256" not in notice


async def test_a_phone_changed_notice_sent_from_the_outbox_is_sealed_with_its_text_hash(
    live: Live, keystore: Pkcs11KeyStore
) -> None:
    """ChangeSecurePhone by a verified challenge queues the notice to the old number in its step; the
    dispatcher sends it and record_notice.lua journals it with its text's hash and template, and the user's
    sealed, archived journal verifies (decision 0041)."""
    user_id = await enrolled(live)
    change = op_pb.Operation(change_phone=op_pb.ChangePhone(new_phone="+33698765432"))
    challenge_id, code = await started(live, user_id, change)
    await verify(live, challenge_id, code, change)
    await live.enrol.ChangeSecurePhone(
        enrol_pb.ChangeSecurePhoneRequest(
            user_id=user_id,
            new_phone="+33698765432",
            request_id="chg-1",
            actor="online-banking",
            verified_challenge_id=challenge_id,
        )
    )
    await settled(live.store)
    assert live.sealer is not None
    assert await live.sealer.step() is not None
    archive = JournalArchive(live.sms_file.parent / "journal-archive")
    jwks = proof.jwk_set(await keystore.journal_public_keys())
    checked = verify_archive(archive.blocks(), jwks, archive.first_number())
    assert (checked.valid, checked.failed) == (True, "")
    (notice,) = [
        e.fields for block in archive.blocks() for e in block.entries if e.fields["event"] == "user.notice"
    ]
    sent = written(live.sms_file)
    (text,) = [message["text"] for message in sent if not message["challenge_id"]]
    template = resources.files("sesame.server") / "sms_templates" / "fr" / "phone_changed.txt"
    assert (notice["kind"], notice["outcome"], notice["challenge_id"]) == (
        "phone_changed",
        "sent",
        challenge_id,
    )
    assert (notice["text_sha256"], notice["template"], notice["template_sha256"]) == (
        hashlib.sha256(text.encode()).hexdigest(),
        "fr/phone_changed",
        hashlib.sha256(template.read_bytes()).hexdigest(),
    )
