"""What the code SMS and the notices say, caller text included, through the real server, Redis and SoftHSM."""

from __future__ import annotations

import json
import re

import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.server.domain.segments import Encoding, Segments, measure
from sesame.server.grpc.demo import find_sms
from tests.e2e.conftest import Live
from tests.e2e.helpers import IBAN, PHONE, counted, enrolled, started, transfer, verify
from tests.support.outbox import settled

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SPOOF = "ANNULATION du virement precedent. Code de blocage"


async def test_a_payee_name_cannot_write_the_banks_words_into_the_sms(live: Live) -> None:
    """The spoofing name prints quoted and without its sentence; the code verifies over the name as sent."""
    user_id = await enrolled(live)
    operation = transfer(name=SPOOF)
    challenge_id, code = await started(live, user_id, operation)
    text, _ = find_sms(live.sms_file, challenge_id) or ("", "")
    assert SPOOF not in text
    assert "precedent." not in text
    assert '"ANNULATION du virement precedent Code de"' in text
    assert (await verify(live, challenge_id, code, operation)).result == auth_pb.VERIFY_RESULT_VERIFIED


@pytest.mark.parametrize(
    ("name", "printed"), [("ETS.DUPONT", '"ETS DUPONT"'), ("aide-client.support", '"aide-client support"')]
)
async def test_a_dotted_name_is_accepted_and_printed_without_its_dots(
    live: Live, name: str, printed: str
) -> None:
    """A dotted name is a name (`.dupont` is a top-level domain, yet ETS.DUPONT a company): the SMS prints it
    without the dot, so no host reaches the phone, and its code verifies over the name as sent."""
    operation = transfer(name=name)
    challenge_id, code = await started(live, await enrolled(live), operation)
    text, _ = find_sms(live.sms_file, challenge_id) or ("", "")
    assert f"à {printed} (IBAN" in text
    assert name not in text
    assert (await verify(live, challenge_id, code, operation)).result == auth_pb.VERIFY_RESULT_VERIFIED


def _add(name: str) -> op_pb.Operation:
    return op_pb.Operation(add_beneficiary=op_pb.AddBeneficiary(payee=op_pb.Payee(name=name, iban=IBAN)))


def _sent(live: Live) -> list[dict[str, str]]:
    return [json.loads(line) for line in live.sms_file.read_text(encoding="utf-8").splitlines()]


async def test_a_verified_new_payee_is_notified_and_journaled_without_a_code(live: Live) -> None:
    """After a VERIFIED add_beneficiary, the secure number gets the notice with date and time; journaled."""
    user_id = await enrolled(live)
    operation = _add("Jean DUPONT")
    challenge_id, code = await started(live, user_id, operation)
    assert (await verify(live, challenge_id, code, operation)).result == auth_pb.VERIFY_RESULT_VERIFIED
    await settled(live.store)  # the notice was queued by the verification; a dispatcher sends it
    [notice] = [message for message in _sent(live) if not message["challenge_id"]]
    assert notice["to"] == PHONE
    assert '"Jean DUPONT" (IBAN FR76...0189) a été ajouté le ' in notice["text"]
    assert re.search(r"le \d\d/\d\d/\d{4} à \d\d:\d\d UTC", notice["text"])
    assert code not in notice["text"]
    journal = await live.store.users.user_journal(user_id)
    notices = [(e["kind"], e["outcome"], e["phone"]) for e in journal if e["event"] == "user.notice"]
    assert notices == [("beneficiary_added", "sent", "+33*******78")]


async def test_a_cyrillic_or_greek_name_is_printed_romanized_and_verifies_as_sent(live: Live) -> None:
    """AR3, an outside audit's: a payee named in Cyrillic or Greek printed `"-"`, no name to check the payee
    by. It prints romanized (ICAO Doc 9303), the text GSM-7; the code verifies over the name as sent."""
    user_id = await enrolled(live)
    greek = "ΠΑΠΑΔΟΠΟΥΛΟΥ \u0391.\u0395."  # its initials are Greek capitals that look Latin
    for name, printed in (("Иванов Пётр", '"Ivanov Petr"'), (greek, '"PAPADOPOULOU A E"')):
        operation = transfer(name=name)
        challenge_id, code = await started(live, user_id, operation)
        text, _ = find_sms(live.sms_file, challenge_id) or ("", "")
        assert printed in text
        assert measure(text).encoding is Encoding.GSM7
        assert (await verify(live, challenge_id, code, operation)).result == auth_pb.VERIFY_RESULT_VERIFIED


async def test_a_name_outside_gsm7_is_sent_in_gsm7_within_two_parts_and_counted(live: Live) -> None:
    """François Œuvre is printed Francois OEuvre: the SMS stays GSM-7, 2 parts; the metric says so."""
    user_id = await enrolled(live)
    challenge_id, _ = await started(live, user_id, _add("François Œuvre"))
    text, _ = find_sms(live.sms_file, challenge_id) or ("", "")
    assert '"Francois OEuvre"' in text
    assert measure(text) == Segments(Encoding.GSM7, len(text), 2)
    count = await counted(live.metrics.registry, "sesame_sms_parts_count", {"encoding": "gsm7"})
    assert count == 1
    assert live.metrics.registry.get_sample_value("sesame_sms_parts_sum", {"encoding": "gsm7"}) == 2
