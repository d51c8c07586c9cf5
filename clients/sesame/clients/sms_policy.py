"""What the reliable gateway does after each kind of delivery failure (docs/decisions/0030).

A provider is asked again for the same message only when it failed before taking it (it was unreachable,
throttled us, or said it was temporarily unavailable): then a second answer cannot be a second SMS. A
timeout or a connection lost while waiting leaves it unknown whether the provider took the message, so
it is never asked again; the message goes to the next provider. The provider's final word on the message
(refused number, invalid content, refused account) is not retried either, and also goes to the next
provider, whose routes and checks may differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sesame.server.domain.errors import DeliveryFailure

# Failed before the provider took the message: asking it again cannot make a second SMS.
BEFORE_ACCEPTANCE: Final[frozenset[DeliveryFailure]] = frozenset({"unreachable", "throttled", "unavailable"})
# The provider's final word on the message: asking it again later would get the same answer.
FINAL_WORDS: Final[frozenset[DeliveryFailure]] = frozenset({"bad_number", "bad_content", "refused"})
# The provider's own fault: counted by its circuit breaker. A refused number or text is about the message;
# a throttle is the provider asking us to slow down, which retrying with backoff does: counted, five of a
# burst opened the breaker and every code failed at once for SESAME_SMS_BREAKER_OPEN_SECONDS (decision 0125).
PROVIDER_FAULTS: Final[frozenset[DeliveryFailure]] = frozenset(
    {"unreachable", "unavailable", "timeout", "lost", "partial", "refused", "error"}
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times one provider is asked again after a failure before acceptance, and how far apart."""

    retries: int = 2
    base_seconds: float = 0.2  # the first retry waits up to this, doubling each time
    cap_seconds: float = 2.0

    def delay(self, retry: int, draw: float) -> float:
        """Seconds before retry number `retry` (0 first), `draw` in [0, 1): full jitter, so that the
        workers that all saw one provider stumble do not all come back at the same instant."""
        return draw * min(self.cap_seconds, self.base_seconds * float(2**retry))
