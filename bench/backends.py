"""The private Redis and HSM a bench tool runs against: `sesame serve`'s, in a temporary directory."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sesame.clients.redis_server import EmbeddedRedis
from sesame.hsm.keys import init_keys
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.hsm.softhsm import bootstrap_token


@contextlib.contextmanager
def backends(prefix: str) -> Iterator[tuple[Path, EmbeddedRedis, Pkcs11KeyStore]]:
    """A temporary directory (`prefix`), a redis-server in its `redis/` (AOF on, as `sesame serve` runs it)
    and a SoftHSM token in its `softhsm/` with the service's keys, open; all gone on exit."""
    with tempfile.TemporaryDirectory(prefix=prefix) as directory:
        root = Path(directory)
        (root / "redis").mkdir()
        config = bootstrap_token(root / "softhsm", label="bench", pin="bench-pin")
        init_keys(config)
        keystore = Pkcs11KeyStore.open(config)
        try:
            with EmbeddedRedis(root / "redis") as server:
                yield root, server, keystore
        finally:
            keystore.close()
