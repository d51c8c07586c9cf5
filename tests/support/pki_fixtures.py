"""The test PKI, made once per session."""

from __future__ import annotations

import pytest

from tests.support.pki import Pki, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, a server certificate for localhost and 127.0.0.1, four clients, a foreign client, a policy."""
    return make_pki(tmp_path_factory.mktemp("pki"))
