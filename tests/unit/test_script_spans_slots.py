"""A script a Redis Cluster cannot run on one slot is a broken installation, not a store to retry
(docs/decisions/0047): INTERNAL, logged at ERROR, its message naming the script and nothing else."""

from __future__ import annotations

from google.rpc import code_pb2

from sesame.server.domain.errors import ConfigurationError, ScriptSpansSlots, StoreUnavailable
from sesame.server.grpc.status import to_status


def test_a_script_across_slots_answers_internal_not_unavailable() -> None:
    refused = ScriptSpansSlots("open_challenge")
    assert isinstance(refused, ConfigurationError)
    assert not isinstance(refused, StoreUnavailable)  # UNAVAILABLE would invite the caller to retry
    status = to_status(refused)
    assert status.code == code_pb2.INTERNAL
    assert status.message == "server misconfigured"


def test_its_message_names_the_script() -> None:
    assert str(ScriptSpansSlots("open_challenge")) == (
        "script open_challenge touches keys in several hash slots (a cluster runs one slot)"
    )
