"""An SMS gateway that keeps what it was asked to send, and can be told to fail."""

from __future__ import annotations

from sesame.server.domain.errors import DeliveryFailed, DeliveryFailure, DeliveryRefused
from sesame.server.domain.model import SentSms, SmsMessage
from sesame.server.domain.ports import Clock, SmsGateway


class RecordingSmsGateway:
    """Records every message; raises DeliveryFailed while `failing` is set."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.sent: list[SmsMessage] = []
        self.failing = False
        self.refusal: DeliveryFailure | None = None

    def fail(self) -> None:
        """Refuse every message from now on, as a gateway that is down would."""
        self.failing = True

    def refuse(self, reason: DeliveryFailure) -> None:
        """Refuse every message from now on with every provider's final word (DeliveryRefused)."""
        self.refusal = reason

    def recover(self) -> None:
        """Accept messages again."""
        self.failing = False
        self.refusal = None

    async def send(self, message: SmsMessage) -> SentSms:
        if self.refusal is not None:
            raise DeliveryRefused("recording gateway told to refuse", self.refusal)
        if self.failing:
            raise DeliveryFailed("recording gateway told to fail")
        self.sent.append(message)
        ref = f"recorded-{message.reference or len(self.sent)}"
        return SentSms(provider_ref=ref, sent_at=self._clock.now())


_: type[SmsGateway] = RecordingSmsGateway
