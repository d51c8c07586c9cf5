"""Every HSM call is timed where calls funnel, and a call the HSM could not answer is counted as failed."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable

import pytest

from sesame.hsm.keys import import_secret
from sesame.hsm.pkcs11 import Pkcs11Config, Pkcs11KeyStore
from sesame.server.domain.errors import HsmUnavailable
from sesame.server.domain.model import MacAlgorithm
from sesame.server.metrics import DependencyMeter, Metrics

pytestmark = pytest.mark.integration


def _delete_token(label: str) -> None:
    """Remove a token from the session's SoftHSM directory, as pulling a card out would."""
    subprocess.run(
        ["softhsm2-util", "--delete-token", "--token", label], env=os.environ, check=True, capture_output=True
    )


def sample(metrics: Metrics, name: str, call: str) -> float:
    """One sample of the HSM's dependency metrics for `call`."""
    return metrics.registry.get_sample_value(name, {"dependency": "hsm", "call": call}) or 0.0


async def test_calls_are_timed_and_a_lost_token_counts_as_a_failure(
    make_token: Callable[[str], Pkcs11Config],
) -> None:
    """Two MACs through the metered view are timed; the second, on a deleted token, is also counted failed."""
    config = make_token("metered")
    key = import_secret(config, "metered-key", b"m" * 32)
    store = Pkcs11KeyStore.open(config)
    metrics = Metrics()
    metered = store.metered(DependencyMeter(metrics, "hsm"))
    try:
        await metered.mac(key, b"first", MacAlgorithm.SHA256)
        _delete_token("metered")
        token = store._live()
        session = store._worker.run(lambda: token.session)
        store._worker.run(session.close)  # as a token reset would
        with pytest.raises(HsmUnavailable):
            await metered.mac(key, b"second", MacAlgorithm.SHA256)
    finally:
        metered.close()
        store.close()
    assert sample(metrics, "sesame_dependency_duration_seconds_count", "mac") == 2
    assert sample(metrics, "sesame_dependency_failures_total", "mac") == 1
