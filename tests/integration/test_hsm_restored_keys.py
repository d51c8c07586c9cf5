"""Keys restored on disk behind SoftHSM's back are found again; a missing key costs no more when nothing
changed, and a found one never looks at the files (decision 0087)."""

from __future__ import annotations

import asyncio
import hmac
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sesame.hsm import worker as hsm_worker_module
from sesame.hsm.keys import import_secret, init_keys
from sesame.hsm.pkcs11 import Pkcs11Config, Pkcs11KeyStore
from sesame.server.domain.errors import KeyNotFound
from sesame.server.domain.model import KeyRef, MacAlgorithm

pytestmark = pytest.mark.integration

SECRET = b"s" * 32


def _key_files(hsm_dir: Path) -> set[Path]:
    return {path for path in (hsm_dir / "tokens").glob("*/*.object") if path.name != "token.object"}


def _destroy(store: Pkcs11KeyStore, label: str) -> None:
    """Destroy a secret key through the store's own session (the module then no longer indexes it)."""
    token = store._live()

    def run() -> None:
        token.call(lambda live: live.secret_key(label).destroy())
        token.forget_key(label)

    store._worker.run(run)


@pytest.fixture
def look_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The files are looked at on every key not found (not once a second), so tests need not wait."""
    monkeypatch.setattr(hsm_worker_module, "LOOK_PAUSE_SECONDS", 0.0)


@pytest.mark.usefixtures("look_at_once")
async def test_a_key_file_put_back_without_the_generation_file_is_found_again(
    make_token: Callable[[str], Pkcs11Config], hsm_dir: Path, tmp_path: Path
) -> None:
    """A key deleted, then its object file copied back (the token's generation file untouched, so SoftHSM
    never re-reads the directory by itself): the next MAC finds it, the module re-initialised once."""
    config = make_token("restored")
    before = _key_files(hsm_dir)
    key = import_secret(config, "restored-key", SECRET)
    [key_file] = _key_files(hsm_dir) - before
    shutil.copy2(key_file, tmp_path / key_file.name)
    store = Pkcs11KeyStore.open(config)
    try:
        assert await store.mac(key, b"before", MacAlgorithm.SHA256)
        await asyncio.to_thread(_destroy, store, key.label)
        with pytest.raises(KeyNotFound):
            await store.mac(key, b"gone", MacAlgorithm.SHA256)

        shutil.copy2(tmp_path / key_file.name, key_file)
        generation = store._worker.generation
        mac = await store.mac(key, b"back", MacAlgorithm.SHA256)
        assert mac == hmac.new(SECRET, b"back", "sha256").digest()
        assert store._worker.generation == generation + 1
    finally:
        store.close()


@pytest.mark.usefixtures("look_at_once")
async def test_a_key_really_missing_costs_no_re_initialisation(
    make_token: Callable[[str], Pkcs11Config],
) -> None:
    """A label the token never held: KeyNotFound, and once the module has read the files as they are, no
    more re-initialisation however often it is asked (a retired key version, say)."""
    store = Pkcs11KeyStore.open(make_token("never-held"))
    try:
        with pytest.raises(KeyNotFound):  # may re-read once: other tests changed the files since
            await store.mac(KeyRef("no-such-key"), b"x", MacAlgorithm.SHA256)
        generation = store._worker.generation
        for _ in range(3):
            with pytest.raises(KeyNotFound):
                await store.mac(KeyRef("no-such-key"), b"x", MacAlgorithm.SHA256)
        assert store._worker.generation == generation
    finally:
        store.close()


async def test_keys_found_never_look_at_the_files(
    make_token: Callable[[str], Pkcs11Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the keys there, MACs, signatures and the current keys never read the token's files."""
    config = make_token("hot-path")
    init_keys(config)
    store = Pkcs11KeyStore.open(config)
    try:
        otp, proof = await store.current_otp_key(), await store.current_proof_key()
        await store.mac(otp, b"warm", MacAlgorithm.SHA256)
        await store.sign(proof, b"warm")

        def looked(_: object) -> None:
            raise AssertionError("the token's files were read")

        monkeypatch.setattr(hsm_worker_module, "object_files", looked)
        await store.refresh_keys()  # the re-read every 60 s finds every kind: no look either
        for _ in range(3):
            assert await store.current_otp_key() == otp
            assert len(await store.mac(otp, b"hot", MacAlgorithm.SHA256)) == 32
            assert len(await store.sign(proof, b"hot")) == 64
    finally:
        store.close()


# Run in another process (its own SoftHSM configuration, `sys.argv[1]`): keys made, the module read afresh as
# a process started then reads it; the whole token directory moved away while a key is looked for, then
# back; what the key store finds then, one line a look.
_MOVED_AWAY_AND_BACK = """
import asyncio, os, sys, time
from pathlib import Path
from sesame.hsm import worker as hsm_worker_module
from sesame.hsm.keys import init_keys
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.hsm.softhsm import bootstrap_token
from sesame.server.domain.errors import KeyNotFound

async def main():
    base = Path(sys.argv[1])
    config = bootstrap_token(base, label="moved", pin="1234")
    init_keys(config)
    worker = hsm_worker_module.hsm_worker(config.module)
    worker.run(worker.reinitialize)
    hsm_worker_module.LOOK_PAUSE_SECONDS = 0.0
    store = Pkcs11KeyStore.open(config)
    await store.refresh_keys()
    os.rename(base / "tokens", base / "away")
    try:
        await store.refresh_keys()
        print("away:", (await store.current_proof_key()).label)
    except KeyNotFound:
        print("away: none")
    os.rename(base / "away", base / "tokens")
    for _ in range(2):
        try:
            await store.refresh_keys()
            print("back:", (await store.current_proof_key()).label)
        except KeyNotFound:
            print("back: none")
    store.close()

asyncio.run(main())
"""


def test_keys_are_found_again_after_the_token_directory_came_back(tmp_path: Path) -> None:
    """Found from outside (AM1): the directory moved away for a moment, SoftHSM forgot its keys and did not
    find them again when the same files came back; a process without a health round (the sealer) looked for
    its key for good."""
    done = subprocess.run(
        [sys.executable, "-c", _MOVED_AWAY_AND_BACK, str(tmp_path / "hsm")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.splitlines() == ["away: none", "back: sesame-proof-v1", "back: sesame-proof-v1"]
