"""The private Kannel of the tests takes a message the moment it is said to be running, however late
smsbox links to bearerbox (tests/support/kannel.py): smsbox serves sendsms before that link is up, and a
message in between makes it panic and exit, so every message of the test failed over (a flaky drill)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from sesame.server.domain.model import SmsMessage
from tests.support.failover import kannel_gateway
from tests.support.kannel import running_kannel
from tests.support.late_door import late_door

pytestmark = pytest.mark.integration

LATE = 1.5  # seconds smsbox's connect to bearerbox is held (its SYN retried after 1 s, then 3 s)


async def test_a_message_sent_as_soon_as_kannel_runs_arrives_though_smsbox_linked_late(tmp_path: Path):
    marker, started = f"r{uuid.uuid4().hex[:8]}", time.monotonic()
    with running_kannel(tmp_path, lambda port: late_door(port, LATE)) as kannel:
        assert time.monotonic() - started >= LATE  # the fixture waited for the link, not for the port
        gateway = kannel_gateway(kannel)
        try:
            await gateway.send(SmsMessage("+33612345678", f"MaBanque: code 482913 {marker}.", "ch.k1.d6"))
        finally:
            await gateway.close()
        arrived = await asyncio.to_thread(kannel.wait_for_message, marker)
        assert [process.poll() for process in kannel.front] == [None]  # smsbox still runs
    assert arrived.receiver == "+33612345678"
