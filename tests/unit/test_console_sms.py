"""The console SMS gateway: one JSON line per message, never in production, never a code in the logs."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from pathlib import Path

import pytest

from sesame.clients.sms_console import ConsoleSmsGateway
from sesame.server.domain.errors import ConfigurationError
from sesame.server.domain.model import SmsMessage
from sesame.server.domain.privacy import redact
from tests.fakes.clock import FixedClock

PHONE = "+33612345678"
TEXT = "Banque: code 482913 pour VIREMENT de 1 250,00 EUR vers Jean DUPONT FR76...0189. Valable 5 min."
MESSAGE = SmsMessage(PHONE, TEXT, "00ff.k1.d6")


def _lines(path: Path) -> list[dict[str, str]]:
    """The file's JSON lines, parsed."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def sms_file(tmp_path: Path) -> Path:
    """Where the gateway writes, in a directory that does not exist yet."""
    return tmp_path / "var" / "sms.jsonl"


async def test_each_message_is_one_json_line(sms_file: Path):
    """A message becomes one line holding exactly to, text, challenge_id and sent_at."""
    clock = FixedClock()
    await ConsoleSmsGateway(sms_file, clock, "development").send(MESSAGE)
    [line] = _lines(sms_file)
    assert line == {
        "to": PHONE,
        "text": TEXT,
        "challenge_id": "00ff.k1.d6",
        "sent_at": "2026-11-25T12:00:00+00:00",
    }


async def test_sent_at_is_the_clock_time_in_utc(sms_file: Path):
    """The acknowledgement and the line carry the injected clock's instant, timezone-aware."""
    clock = FixedClock()
    sent = await ConsoleSmsGateway(sms_file, clock, "development").send(MESSAGE)
    [line] = _lines(sms_file)
    assert sent.sent_at == clock.now() == datetime.fromisoformat(line["sent_at"])


async def test_messages_are_appended(sms_file: Path):
    """Later messages are added after earlier ones, in order, with distinct provider references."""
    gateway = ConsoleSmsGateway(sms_file, FixedClock(), "development")
    refs = [(await gateway.send(SmsMessage(PHONE, f"message {n}", f"c{n}"))).provider_ref for n in range(3)]
    lines = _lines(sms_file)
    assert [line["challenge_id"] for line in lines] == ["c0", "c1", "c2"]
    assert len(set(refs)) == 3
    assert all(ref.startswith("console-") for ref in refs)


async def test_concurrent_sends_do_not_interleave(sms_file: Path):
    """Fifty simultaneous sends leave fifty whole, parseable lines."""
    gateway = ConsoleSmsGateway(sms_file, FixedClock(), "development")
    await asyncio.gather(*(gateway.send(SmsMessage(PHONE, "x" * 2000, f"c{n}")) for n in range(50)))
    lines = _lines(sms_file)
    assert sorted(line["challenge_id"] for line in lines) == sorted(f"c{n}" for n in range(50))


def test_refuses_production(sms_file: Path):
    """Constructing the console gateway for production raises ConfigurationError."""
    with pytest.raises(ConfigurationError):
        ConsoleSmsGateway(sms_file, FixedClock(), "production")


async def test_log_line_hides_code_and_phone(sms_file: Path, caplog: pytest.LogCaptureFixture):
    """The sesame.sms log line carries neither the code nor the full phone number."""
    with caplog.at_level(logging.INFO, logger="sesame.sms"):
        await ConsoleSmsGateway(sms_file, FixedClock(), "development").send(MESSAGE)
    [record] = [r for r in caplog.records if r.name == "sesame.sms"]
    logged = record.getMessage()
    assert "482913" not in logged
    assert PHONE not in logged
    assert PHONE[1:] not in logged
    assert "+33*******78" in logged


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("code 4829 ok", "code ****** ok"),
        ("code 12345678.", "code ******."),
        ("1 250,00 EUR, 5 min", "1 250,00 EUR, 5 min"),
    ],
)
def test_redact_hides_runs_of_four_or_more_digits(text: str, shown: str):
    """Runs of four or more digits are replaced; amounts and durations in shorter groups stay."""
    assert redact(text) == shown
