"""Every domain delivery state has its proto value; EXPIRED reads FAILED until the proto has EXPIRED."""

from __future__ import annotations

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.server.domain.model import DeliveryState
from sesame.server.grpc import translate


def test_every_delivery_state_translates() -> None:
    """No domain state is missing from the table (a new one would fail GetChallenge)."""
    assert {state: translate.delivery_state(state) for state in DeliveryState}[
        DeliveryState.EXPIRED
    ] == auth_pb.DELIVERY_STATE_FAILED
