"""What the SMS gateway's sends say about it: a rate-limited WARNING per kind of failure, and a health flag.

A failed send does not fail the call (StartChallenge answers FAILED and the caller may resend), so without
this a gateway that is down or refusing everything would show only in a counter. The watch is passive: it
learns from the sends themselves, since Kannel's sendsms interface has no side-effect-free probe. The
gateway reads as failing from a failed send until the next send that succeeds, and while every provider's
circuit breaker is open (decision 0030); each breaker's changes are logged, at most one line a minute per
provider, the next line counting those held back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Final

from sesame.clients.sms_breaker import BreakerState
from sesame.server.domain.errors import DeliveryFailed, DeliveryFailure
from sesame.server.domain.log_quota import LogQuota

_log = logging.getLogger("sesame.sms")

# The name under which grpc.health.v1 reports the gateway, apart from the server's own status.
SMS_HEALTH_SERVICE: Final = "sesame.SmsGateway"
# At most one WARNING per reason in this many seconds; the next one counts those held back.
WARNING_EVERY_SECONDS: Final = 60.0


class SmsWatch:
    """Told of every send's outcome by the metered gateway; logs failures sparingly, tells health."""

    def __init__(
        self,
        gateway: str,
        *,
        every: float = WARNING_EVERY_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
        providers: tuple[str, ...] = (),
    ) -> None:
        """Watch the gateway named `gateway` (for the logs) over `providers` (their breakers);
        `monotonic` is the clock of the rate limit."""
        self._gateway = gateway
        self._quiet: LogQuota[DeliveryFailure] = LogQuota(every, monotonic)
        self._failing = False
        self._breakers = dict.fromkeys(providers, BreakerState.CLOSED)
        self._breaker_quiet: LogQuota[str] = LogQuota(every, monotonic)
        self._unbound: set[str] = set()  # providers whose last attempt to bind failed (SMPP)
        self._queued_quiet: LogQuota[None] = LogQuota(every, monotonic)
        self._read_breakers: Callable[[], Mapping[str, BreakerState]] | None = None

    def follow(self, breakers: Callable[[], Mapping[str, BreakerState]]) -> None:
        """Read the breakers' states now (`breakers`) at each health check: an open breaker's period ends
        with no attempt to say so (an outside audit: a worker with nothing to send read the gateway down
        long after the period)."""
        self._read_breakers = breakers

    def healthy(self) -> bool:
        """False from a failed send until the next send that succeeds, and while every provider is held:
        its breaker open, or its session not bound since its last attempt to bind failed (decision 0122)."""
        if self._read_breakers is not None:
            self._breakers.update(self._read_breakers())
        every_held = bool(self._breakers) and all(
            state is BreakerState.OPEN or provider in self._unbound
            for provider, state in self._breakers.items()
        )
        return not self._failing and not every_held

    def bind_changed(self, provider: str, bound: bool) -> None:  # noqa: FBT001 (the observer's event)
        """A provider bound its session, or failed to (the gateway logs each attempt itself)."""
        if bound:
            self._unbound.discard(provider)
        else:
            self._unbound.add(provider)

    def breaker_changed(self, provider: str, state: BreakerState) -> None:
        """A provider's breaker changed: one line, unless one for that provider was logged less than
        `every` ago (the next one then says how many changes it held back)."""
        self._breakers[provider] = state
        held_back = self._breaker_quiet.admit(provider)
        if held_back is None:
            return
        _log.log(
            logging.WARNING if state is BreakerState.OPEN else logging.INFO,
            "SMS provider %s circuit breaker %s%s",
            provider,
            state.value,
            self._breaker_quiet.held_back(held_back, "changes"),
        )

    def sent(self) -> None:
        """A send succeeded."""
        self._failing = False

    def queued(self) -> None:
        """A provider took a send but holds it, with no SMSC connected (decision 0124): the gateway reads as
        failing until a send goes; a WARNING, at most one per `every`, the next counting those held back."""
        self._failing = True
        held_back = self._queued_quiet.admit(None)
        if held_back is None:
            return
        _log.warning(
            "SMS gateway %s queuing: a provider holds the SMS with no SMSC connected%s",
            self._gateway,
            self._queued_quiet.held_back(held_back, "such sends"),
        )

    def failed(self, error: DeliveryFailed) -> None:
        """A send failed: a WARNING unless one for the same reason was logged less than `every` ago."""
        self._failing = True
        held_back = self._quiet.admit(error.reason)
        if held_back is None:
            return
        # The error's message names the class of problem only (never the URL, the text or the number).
        _log.warning(
            "SMS gateway %s failing: %s (%s)%s",
            self._gateway,
            error.reason,
            error,
            self._quiet.held_back(held_back, "such failures"),
        )
