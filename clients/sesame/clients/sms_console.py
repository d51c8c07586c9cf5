"""`ConsoleSmsGateway`: the development SMS gateway, one JSON line per message in a local file.

It exists so that a developer (and the end-to-end tests) can read the codes a real phone would get. It
refuses to run in production: there, codes must only ever reach the secure phone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import stat
from datetime import UTC
from pathlib import Path

from sesame.clients.sms_reference import provider_ref
from sesame.server.domain.errors import ConfigurationError, DeliveryFailed
from sesame.server.domain.model import SentSms, SmsMessage
from sesame.server.domain.ports import Clock, SmsGateway
from sesame.server.domain.privacy import mask_challenge, mask_phone, redact

_log = logging.getLogger("sesame.sms")


class ConsoleSmsGateway:
    """Appends each message to a JSON-lines file instead of sending it."""

    def __init__(self, path: Path, clock: Clock, environment: str) -> None:
        """Write to `path`, created now (so readers find it before the first SMS) and kept owner-only.

        ConfigurationError when `environment` is production or the file cannot be created.
        """
        if environment == "production":
            raise ConfigurationError("the console SMS gateway writes codes to a file: not in production")
        self._path = path
        self._clock = clock
        try:
            # The file holds codes and phone numbers: 0600, and an existing looser file is tightened.
            descriptor = self._open()
            try:
                if stat.S_ISFIFO(os.fstat(descriptor).st_mode):
                    raise OSError(errno.EINVAL, "a FIFO, not a file")
            finally:
                os.close(descriptor)
            path.chmod(0o600)
        except OSError as exc:
            raise ConfigurationError(f"console SMS file {path} cannot be written ({exc.strerror})") from exc

    async def send(self, message: SmsMessage) -> SentSms:
        """Append the message as one JSON line; DeliveryFailed when the file cannot be written."""
        sent_at = self._clock.now()
        ref = provider_ref("console", message)
        line = json.dumps(
            {
                "to": message.to,
                "text": message.text,
                "challenge_id": message.challenge_id,
                "sent_at": sent_at.astimezone(UTC).isoformat(),
            },
            ensure_ascii=False,
        )
        try:
            self._append(line)
        except OSError as exc:
            raise DeliveryFailed(f"console SMS file not writable: {type(exc).__name__}") from exc
        # The text (payee, amount) stays out of INFO lines: the file above is the development sink.
        _log.info("SMS %s to %s for %s", ref, mask_phone(message.to), mask_challenge(message.challenge_id))
        if _log.isEnabledFor(logging.DEBUG):  # the redaction is a regex over the text: only when logged
            _log.debug("SMS %s text: %s", ref, redact(message.text))
        return SentSms(provider_ref=ref, sent_at=sent_at)

    def _append(self, line: str) -> None:
        """One `write` of the whole line on the event loop: an append to a local file takes microseconds, and
        O_APPEND keeps lines whole between coroutines and between worker processes without a lock (a lock
        around a thread hop put every SMS of the process in one queue: docs/benchmarks.md).

        A line the disk took only part of (full, failing) is cut off again: left there, the next SMS written
        once there is room would be appended to it, one line no reader parses (the send failed anyway)."""
        data = memoryview((line + "\n").encode())
        fd = self._open()
        began, written = -1, 0
        try:
            while data:
                count = os.write(fd, data)
                if began < 0:  # O_APPEND: the write went to the end, the offset is now just after it
                    began = os.lseek(fd, 0, os.SEEK_CUR) - count
                written += count
                data = data[count:]
        except OSError:
            self._cut_back(fd, began, written)
            raise
        finally:
            os.close(fd)

    @staticmethod
    def _cut_back(fd: int, began: int, written: int) -> None:
        """Take back the part of a line written from `began`, unless another line was appended after it."""
        if began < 0:
            return
        with contextlib.suppress(OSError):
            if os.fstat(fd).st_size == began + written:
                os.ftruncate(fd, began)

    def _open(self) -> int:
        """The file for appending, created 0600 (its directory 0700) when missing; opened for each message,
        so that a file moved away or replaced is seen at once."""
        # O_NONBLOCK: a FIFO with no reader fails at once (ENXIO) instead of holding the worker's start, or
        # each SMS, for ever (decision 0084); a regular file's writes do not block either way.
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            return os.open(self._path, flags, 0o600)
        except FileNotFoundError:
            self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            return os.open(self._path, flags, 0o600)


_: type[SmsGateway] = ConsoleSmsGateway
