"""Many threads and many coroutines share one SoftHSM token without corrupting it (HSM thread design).

The load runs in a child process: a heap corruption in SoftHSM would crash it (a failed test) instead of
killing pytest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import asyncio, hmac, json, sys, threading
    from pathlib import Path

    from sesame.hsm.keys import import_secret
    from sesame.hsm.pkcs11 import Pkcs11KeyStore
    from sesame.hsm.softhsm import bootstrap_token
    from sesame.server.domain.model import MacAlgorithm

    THREADS, CALLS, GATHERED = 32, 500, 500
    secret = bytes(range(64))
    config = bootstrap_token(Path(sys.argv[1]), label="stress", pin="stress-pin")
    key = import_secret(config, "stress-key", secret)
    store = Pkcs11KeyStore.open(config)
    counts = {"ok": 0, "wrong": 0, "errors": 0}
    lock = threading.Lock()

    def expected(i):
        return hmac.new(secret, i.to_bytes(8, "big"), "sha256").digest()

    def tally(macs, base):
        with lock:
            for i, mac in enumerate(macs):
                counts["ok" if mac == expected(base + i) else "wrong"] += 1

    def worker(n):
        async def run():
            base = n * CALLS
            data = [(base + i).to_bytes(8, "big") for i in range(CALLS)]
            return [await store.mac(key, item, MacAlgorithm.SHA256) for item in data]
        try:
            tally(asyncio.run(run()), n * CALLS)
        except Exception:
            with lock:
                counts["errors"] += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    threaded = dict(counts)

    async def gathered():
        return await asyncio.gather(
            *(store.mac(key, i.to_bytes(8, "big"), MacAlgorithm.SHA256) for i in range(GATHERED))
        )

    counts.update(ok=0, wrong=0)
    tally(asyncio.run(gathered()), 0)
    store.close()
    print(json.dumps({"threaded": threaded, "gathered": counts}))
    """
)


def test_32_threads_and_500_coroutines_get_correct_macs(tmp_path: Path) -> None:
    """32 threads x 500 MACs, then 500 gathered MACs, all equal the stdlib HMAC and the child exits 0."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(ROOT / root) for root in ("server", "hsm", "clients", "gen")),
    }
    env.pop("SOFTHSM2_CONF", None)
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["threaded"] == {"ok": 32 * 500, "wrong": 0, "errors": 0}
    assert report["gathered"] == {"ok": 500, "wrong": 0, "errors": 0}
