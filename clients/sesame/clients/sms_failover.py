"""`FailoverSmsGateway`: the SmsGateway port over several providers, each behind a retry policy and a
circuit breaker, tried in the order the settings give (docs/decisions/0018, 0030).

For each provider in turn: while its breaker lets an attempt through, ask it; a failure before it took
the message is retried after a jittered backoff (`sms_policy`), any other failure hands the message to
the next provider. The first acknowledgement wins. An open breaker skips its provider at once, so a
provider that is down costs the messages nothing once its breaker has opened.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sesame.clients.sms_breaker import BreakerSettings, BreakerState, CircuitBreaker
from sesame.clients.sms_policy import BEFORE_ACCEPTANCE, FINAL_WORDS, PROVIDER_FAULTS, RetryPolicy
from sesame.clients.sms_reference import provider_ref
from sesame.server.domain.dispatching import UNCONFIRMED
from sesame.server.domain.errors import DeliveryFailed, DeliveryFailure, DeliveryRefused, NothingSent
from sesame.server.domain.model import DeliveryState, SentSms, SmsMessage
from sesame.server.domain.ports import SmsGateway
from sesame.server.domain.privacy import mask_challenge

_log = logging.getLogger("sesame.sms")


@dataclass(frozen=True, slots=True)
class Provider:
    """A gateway and the name the settings and the logs give it (`console`, `kannel`, `smpp`)."""

    name: str
    gateway: SmsGateway


class BreakerOpen(DeliveryFailed):
    """The provider's breaker let no attempt through; `reason` is the fault that opened it."""


class ProviderObserver(Protocol):
    """Hears what each provider did: metrics, logs and health listen here."""

    def attempted(self, provider: str, outcome: str) -> None:
        """One attempt ended: `sent`, a DeliveryFailure reason, or `open` (the breaker let none go)."""

    def breaker_changed(self, provider: str, state: BreakerState) -> None:
        """The provider's breaker moved to `state`."""

    def reported(self, provider: str, state: DeliveryState) -> None:
        """The provider reported what became of a message (a Kannel DLR, an SMPP receipt), once recorded: the
        report moved its message forward (a repeat or a late one is not told)."""

    def bind_changed(self, provider: str, bound: bool) -> None:  # noqa: FBT001 (the observer's event)
        """A provider that keeps a session (SMPP) bound it (True), or its attempt to bind failed (False):
        while not bound it takes no message (decision 0122)."""


class _Unobserved:
    """An observer that hears nothing: tests and tools without metrics."""

    def attempted(self, provider: str, outcome: str) -> None:
        pass

    def breaker_changed(self, provider: str, state: BreakerState) -> None:
        pass

    def reported(self, provider: str, state: DeliveryState) -> None:
        pass

    def bind_changed(self, provider: str, bound: bool) -> None:  # noqa: FBT001 (the observer's event)
        pass


UNOBSERVED: ProviderObserver = _Unobserved()


@dataclass(frozen=True, slots=True)
class Reliability:
    """The retry policy and breaker thresholds every provider gets, and the seams tests replace."""

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    draw: Callable[[], float] = random.random  # jitter only: no secret
    monotonic: Callable[[], float] = time.monotonic  # the breakers' clock


class FailoverSmsGateway:
    """Each message goes to the first provider that takes it, retried and guarded per provider."""

    def __init__(
        self,
        providers: Sequence[Provider],
        reliability: Reliability | None = None,
        observer: ProviderObserver | None = None,
    ) -> None:
        """Try `providers` in this order; at least one."""
        if not providers:
            raise ValueError("at least one SMS provider")
        self._providers = tuple(providers)
        self._reliability = reliability or Reliability()
        self._observer = observer or UNOBSERVED
        self._breakers = {
            provider.name: CircuitBreaker(
                provider.name,
                self._reliability.breaker,
                self._observer.breaker_changed,
                self._reliability.monotonic,
            )
            for provider in self._providers
        }

    def breaker_states(self) -> dict[str, BreakerState]:
        """Each provider's breaker, by name, in failover order."""
        return {name: breaker.state for name, breaker in self._breakers.items()}

    async def send(self, message: SmsMessage) -> SentSms:
        """The first acknowledgement; DeliveryFailed naming every provider's failure when none took it
        (DeliveryRefused when each gave its final word, BreakerOpen when every breaker was open)."""
        failures: list[str] = []
        failed_with: list[DeliveryFailed] = []
        # Earlier providers that may have taken the message (decision 0096): named with the one that did.
        unconfirmed: list[str] = []
        every_open = every_final = True
        for provider in self._providers:
            try:
                sent = await self._through(provider, message)
            except DeliveryFailed as exc:
                if exc.reason in UNCONFIRMED and not isinstance(exc, BreakerOpen):
                    unconfirmed.append(f"{provider_ref(provider.name, message)}:{exc.reason}")
                failures.append(f"{provider.name}: {exc}")
                failed_with.append(exc)
                every_open = every_open and isinstance(exc, BreakerOpen)
                every_final = every_final and not isinstance(exc, BreakerOpen) and exc.reason in FINAL_WORDS
                if provider is not self._providers[-1] and not isinstance(exc, BreakerOpen):
                    _log.info(
                        "SMS for %s: %s failed (%s), trying the next provider",
                        mask_challenge(message.challenge_id),
                        provider.name,
                        exc.reason,
                    )
            else:
                return dataclasses.replace(sent, unconfirmed=(*sent.unconfirmed, *unconfirmed))
        failed = BreakerOpen if every_open else DeliveryRefused if every_final else DeliveryFailed
        raise failed("; ".join(failures), _failure_of(failed_with))

    async def _through(self, provider: Provider, message: SmsMessage) -> SentSms:
        """One provider's attempts: retried only while the failure came before it took the message."""
        breaker = self._breakers[provider.name]
        retry = self._reliability.retry
        retries = 0
        while True:
            if not breaker.allow():
                self._observer.attempted(provider.name, "open")
                # The message's failure is the provider's, as its breaker learnt it: the metrics by reason
                # keep saying `unreachable` while the breaker spares the provider the attempts. But a held
                # message was taken by nobody: a fault that says it may have been (0096) reads `unavailable`.
                fault = breaker.last_fault
                raise BreakerOpen(
                    f"{provider.name} circuit breaker open", "unavailable" if fault in UNCONFIRMED else fault
                )
            try:
                sent = await provider.gateway.send(message)
            except asyncio.CancelledError:
                breaker.released()  # a half-open trial cut short must not hold the breaker half-open
                raise
            except DeliveryFailed as exc:
                self._observer.attempted(provider.name, exc.reason)
                # A session that ended under the message is no fault of the provider's (an outside audit: five
                # parts paced behind one unbind opened the breaker right after the rebind).
                if exc.reason in PROVIDER_FAULTS and not isinstance(exc, NothingSent):
                    breaker.failed(exc.reason)
                else:
                    breaker.released()
                if exc.reason not in BEFORE_ACCEPTANCE or retries == retry.retries:
                    raise
                await self._reliability.sleep(retry.delay(retries, self._reliability.draw()))
                retries += 1
                continue
            breaker.succeeded()
            # Taken and held for later (no SMSC connected behind the provider) is told apart: 0124.
            self._observer.attempted(provider.name, "queued" if sent.queued else "sent")
            return sent


def _failure_of(failed_with: list[DeliveryFailed]) -> DeliveryFailure:
    """The message's failure over its providers: the first that may have reached the phone (decision 0096:
    the dead letter then says `unconfirmed`), else the last one's."""
    maybe = [exc.reason for exc in failed_with if exc.reason in UNCONFIRMED]
    return maybe[0] if maybe else failed_with[-1].reason if failed_with else "error"


_: type[SmsGateway] = FailoverSmsGateway
