"""Every domain delivery state has its own proto value (QUEUED and EXPIRED since decision 0025)."""

from __future__ import annotations

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.server.domain.model import DeliveryState
from sesame.server.grpc import translate


def test_every_delivery_state_translates() -> None:
    """No domain state is missing from the table (a new one would fail GetChallenge), none shares a value."""
    table = {state: translate.delivery_state(state) for state in DeliveryState}
    assert table[DeliveryState.QUEUED] == auth_pb.DELIVERY_STATE_QUEUED
    assert table[DeliveryState.EXPIRED] == auth_pb.DELIVERY_STATE_EXPIRED
    assert len(set(table.values())) == len(DeliveryState)
