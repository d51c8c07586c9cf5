"""The demo's own inputs are ones the server accepts."""

from __future__ import annotations

from sesame.server.domain import validation
from sesame.server.grpc.demo import demo_phone


def test_every_demo_phone_is_a_valid_french_mobile() -> None:
    """Two thousand draws all pass the enrolment check (a random +336 number fails one time in twelve)."""
    for _ in range(2000):
        phone = demo_phone()
        assert validation.mobile_phone(phone) == phone
