"""The proof flows over fakes, as the server wires them (`app.py`): proofs checked with `cryptography`."""

from __future__ import annotations

from sesame.server.domain.ports import Clock, KeyStore, State
from sesame.server.domain.proofs import ProofFlows
from sesame.server.jwk_keys import proof_verifies


def proof_flows(keys: KeyStore, store: State, clock: Clock, issuer: str = "MaBanque") -> ProofFlows:
    """ProofFlows over `keys`, `store` and `clock`, signing as `issuer`."""
    return ProofFlows(keys=keys, store=store, clock=clock, issuer=issuer, verifies=proof_verifies)
