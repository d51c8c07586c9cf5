"""An SMSC refusing the bind for our account: logged once, then counted, and tried again slower (0117).

The gateway logged a WARNING for every attempt to bind, every 10 s for ever (six lines a minute per worker
of a night with a rotated password), and tried a password the SMSC had refused as often as a network that
failed, though only a changed setting clears it and an SMSC may lock an account after failed binds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest

from sesame.clients.smpp_pdu import Address
from sesame.clients.sms_smpp import SmppConfig, SmppSmsGateway
from tests.fakes.clock import ShiftedClock
from tests.support.bind_gate import ESME_RINVPASWD, BindGate

pytestmark = pytest.mark.integration

PASSWORD = "Wr0ng!pw"  # noqa: S105 (the test's own, refused)


def _lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "sesame.sms"]


async def _until(done: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    # The condition is the gate's or the session's: it sets no Event of ours.
    while not done() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)


async def test_a_refused_bind_is_logged_once_then_counted_and_its_end_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Four refused binds within a window of 2 s: the first WARNING names the SMSC and the status, the next
    (past the window) counts the two held back; once bound, one INFO line says after how many. The password
    is in no line."""
    with BindGate(refuse_with=ESME_RINVPASWD) as gate, caplog.at_level(logging.INFO, logger="sesame.sms"):
        config = SmppConfig(
            "127.0.0.1", gate.port, "sesame", PASSWORD, Address(5, 0, "MaBanque"), bind_warning_every=2.0
        )
        gateway = SmppSmsGateway(config, ShiftedClock())
        await gateway.start()
        try:
            await _until(lambda: len(gate.attempts) >= 4, 10)  # at 0, 0.5, 1.5 and 3.5 s
            assert len(gate.attempts) == 4
            gate.refusing = False
            await _until(lambda: gateway.bound, 10)  # the next attempt, at 7.5 s
            assert gateway.bound
        finally:
            await gateway.close()
    lines = _lines(caplog)
    warnings = [text for level, text in lines if level == logging.WARNING]
    where = f"SMPP bind to 127.0.0.1:{gate.port} failed: the SMSC refused the bind"
    assert warnings == [
        f"{where} (status 0x0000000e, ESME_RINVPASWD)",
        f"{where} (status 0x0000000e, ESME_RINVPASWD); 2 more such attempts were not logged in the last 2 s",
    ], lines
    infos = [text for level, text in lines if level == logging.INFO]
    assert len(infos) == 1, lines
    again = f"SMPP bound to 127.0.0.1:{gate.port} as 'sesame' again, after 4 failed attempt(s) to bind in"
    assert infos[0].startswith(again), infos
    assert not any(PASSWORD in text for _, text in lines)


async def test_a_bind_refused_for_the_account_is_tried_again_at_most_a_minute_apart() -> None:
    """Refused with ESME_RINVPASWD, the attempts double past 10 s: 0, 0.5, 1.5, 3.5, 7.5, 15.5, then 31.5
    (a network failure is tried every 10 s once there: 25.5)."""
    with BindGate(refuse_with=ESME_RINVPASWD) as gate:
        config = SmppConfig("127.0.0.1", gate.port, "sesame", PASSWORD, Address(5, 0, "MaBanque"))
        gateway = SmppSmsGateway(config, ShiftedClock())
        await gateway.start()
        try:
            await _until(lambda: len(gate.attempts) >= 6, 20)
            assert len(gate.attempts) == 6
            await asyncio.sleep(13)  # past where a 10 s ceiling would have tried again (25.5 s)
            assert len(gate.attempts) == 6, [round(t - gate.attempts[0], 1) for t in gate.attempts]
        finally:
            await gateway.close()
