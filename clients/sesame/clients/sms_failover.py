"""`FailoverSmsGateway`: the SmsGateway port over several providers, tried in the order the settings give.

A provider that raises DeliveryFailed hands the message to the next; the first acknowledgement wins.
Nothing is retried and no provider is skipped for having failed before: retries, breakers and the rule
that a provider which accepted a message is never asked again belong to the outbox (issue 7, item 2).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sesame.server.domain.errors import DeliveryFailed
from sesame.server.domain.model import SentSms, SmsMessage
from sesame.server.domain.ports import SmsGateway

_log = logging.getLogger("sesame.sms")


@dataclass(frozen=True, slots=True)
class Provider:
    """A gateway and the name the settings and the logs give it (`console`, `kannel`, `smpp`)."""

    name: str
    gateway: SmsGateway


class FailoverSmsGateway:
    """Each message goes to the first provider that takes it."""

    def __init__(self, providers: Sequence[Provider]) -> None:
        """Try `providers` in this order; at least one."""
        if not providers:
            raise ValueError("at least one SMS provider")
        self._providers = tuple(providers)

    async def send(self, message: SmsMessage) -> SentSms:
        """The first acknowledgement; DeliveryFailed naming every provider's failure when none took it."""
        failures: list[str] = []
        last: DeliveryFailed | None = None
        for provider in self._providers:
            try:
                return await provider.gateway.send(message)
            except DeliveryFailed as exc:
                failures.append(f"{provider.name}: {exc}")
                last = exc
                if provider is not self._providers[-1]:
                    _log.warning(
                        "SMS for %s: %s failed (%s), trying the next provider",
                        message.challenge_id,
                        provider.name,
                        exc,
                    )
        raise DeliveryFailed("; ".join(failures), last.reason if last else "error")


_: type[SmsGateway] = FailoverSmsGateway
