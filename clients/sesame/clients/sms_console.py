"""`ConsoleSmsGateway`: the development SMS gateway, one JSON line per message in a local file.

It exists so that a developer (and the end-to-end tests) can read the codes a real phone would get. It
refuses to run in production: there, codes must only ever reach the secure phone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import UTC
from pathlib import Path

from sesame.server.domain.errors import ConfigurationError, DeliveryFailed
from sesame.server.domain.model import SentSms, SmsMessage
from sesame.server.domain.ports import Clock, SmsGateway
from sesame.server.domain.privacy import mask_phone, redact

_log = logging.getLogger("sesame.sms")


class ConsoleSmsGateway:
    """Appends each message to a JSON-lines file instead of sending it."""

    def __init__(self, path: Path, clock: Clock, environment: str) -> None:
        """Write to `path`; ConfigurationError when `environment` is production."""
        if environment == "production":
            raise ConfigurationError("the console SMS gateway writes codes to a file: not in production")
        self._path = path
        self._clock = clock
        self._lock = asyncio.Lock()

    async def send(self, message: SmsMessage) -> SentSms:
        """Append the message as one JSON line; DeliveryFailed when the file cannot be written."""
        sent_at = self._clock.now()
        ref = f"console-{uuid.uuid4().hex}"
        line = json.dumps(
            {
                "to": message.to,
                "text": message.text,
                "challenge_id": message.challenge_id,
                "sent_at": sent_at.astimezone(UTC).isoformat(),
            },
            ensure_ascii=False,
        )
        async with self._lock:
            try:
                await asyncio.to_thread(self._append, line)
            except OSError as exc:
                raise DeliveryFailed(f"console SMS file not writable: {type(exc).__name__}") from exc
        _log.info(
            "SMS %s to %s for %s: %s", ref, mask_phone(message.to), message.challenge_id, redact(message.text)
        )
        return SentSms(provider_ref=ref, sent_at=sent_at)

    def _append(self, line: str) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")
            out.flush()


_: type[SmsGateway] = ConsoleSmsGateway
