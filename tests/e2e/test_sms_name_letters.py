"""The payee's name in an SMS whose bank words are UCS-2, through the real server: only a name's letters.

A template with one character outside GSM-7 (a typographic apostrophe, as an operator's editor writes it)
sends the whole text in UCS-2, and the name then keeps its letters untransliterated (`ç` stays `ç`). It
kept every character Unicode calls a Latin letter, among them letters no name is written with that read as
the punctuation and digits the printed name drops: U+01C3 (a click, read `!`), U+0294 (a glottal stop, read
`?`), U+01C0 (read `|` or `1`), U+01BB (read `2`), U+01BC (read `5`). Now a UCS-2 text keeps the letters a
GSM-7 text writes in its alphabet, as themselves, and nothing else (docs/sms.md).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.server.domain.challenges import ChallengePolicy
from sesame.server.domain.segments import Encoding, measure
from sesame.server.domain.sms_templates import load
from sesame.server.grpc.demo import read_code
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, enrolled, transfer

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

DEFAULTS = Path(__file__).parents[2] / "server" / "sesame" / "server" / "sms_templates"
# U+2019, the apostrophe of typeset French: not in GSM 03.38.
TYPESET = "{bank}: code {code} pour l\u2019opération PAYER {amount} à {payee} (IBAN {iban}). {warning}"
# And its alert: a name in the bank's voice (`ANNULATION`, `Code`) is warned by the default rules (0098).
TYPESET_ALERT = "{bank}: code {code} pour l\u2019opération PAYER {amount} à {payee} (IBAN {iban}). ALERTE."


@pytest.fixture
def policy(tmp_path_factory: pytest.TempPathFactory) -> ChallengePolicy:
    """The server's policy, with an operator's French transfer templates in UCS-2 (6 parts allowed)."""
    folder = tmp_path_factory.mktemp("operator") / "templates"
    shutil.copytree(DEFAULTS, folder)
    (folder / "fr" / "credit_transfer.txt").write_text(TYPESET, encoding="utf-8")
    (folder / "fr" / "credit_transfer_alert.txt").write_text(TYPESET_ALERT, encoding="utf-8")
    return ChallengePolicy(sms_templates=load(folder, 6))


async def _printed(live: Live, user_id: str, name: str) -> str:
    """The SMS text the real server sends for a transfer to `name`."""
    reply = await live.auth.StartChallenge(
        auth_pb.StartChallengeRequest(user_id=user_id, operation=transfer(name=name), context=CONTEXT)
    )
    text, _ = await read_code(live.sms_file, reply.challenge_id)
    assert measure(text).encoding is Encoding.UCS2
    return text


async def test_a_ucs2_text_prints_no_letter_that_reads_as_punctuation_or_a_digit(live: Live) -> None:
    """Clicks, glottal stops, tone letters, small capitals: spaces, as in a GSM-7 text; real letters stay."""
    user_id = await enrolled(live)
    spoof = "ANNULATION\u01c3 Code de blocage \u01c0\u01bb\u01bc\u0294 Jean DUPONT"
    text = await _printed(live, user_id, spoof)
    assert 'à "ANNULATION Code de blocage Jean DUPONT" (IBAN' in text
    for lookalike in "\u01c3\u01c0\u01bb\u01bc\u0294":
        assert lookalike not in text
    small_capitals = await _printed(live, user_id, "\u1d0a\u1d07\u1d00\u0274 François Łukasz")
    assert 'à "François Łukasz" (IBAN' in small_capitals


async def test_a_ucs2_text_prints_a_cyrillic_name_romanized(live: Live) -> None:
    """AR3: a UCS-2 text could print Cyrillic, but prints the name as a GSM-7 text does (`Ivanov`), so that a
    Cyrillic letter never passes for the Latin one it looks like (`\u0420` for `P`) in either encoding."""
    user_id = await enrolled(live)
    text = await _printed(live, user_id, "Иванов Пётр")
    assert 'à "Ivanov Petr" (IBAN' in text
