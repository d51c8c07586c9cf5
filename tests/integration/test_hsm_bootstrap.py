"""SoftHSM bootstrap: the module is found, tokens are created once, one token directory per process."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from sesame.hsm.pkcs11 import Pkcs11Config, Pkcs11KeyStore
from sesame.hsm.softhsm import bootstrap_token, find_softhsm_module
from sesame.server.domain.errors import ConfigurationError

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

DEV_TOKEN_CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from sesame.hsm.keys import list_keys
    from sesame.hsm.softhsm import bootstrap_dev_token
    first = bootstrap_dev_token(Path(sys.argv[1]))
    second = bootstrap_dev_token(Path(sys.argv[1]))
    print(json.dumps({"same": first == second, "keys": [k.label for k in list_keys(second)]}))
    """
)


def test_the_module_is_found() -> None:
    """find_softhsm_module() returns an existing shared object."""
    assert Path(find_softhsm_module()).is_file()


def test_bootstrap_is_idempotent(make_token: Callable[[str], Pkcs11Config], hsm_dir: Path) -> None:
    """Bootstrapping an existing token keeps it (and its PIN) instead of failing or re-creating it."""
    config = make_token("twice")
    again = bootstrap_token(hsm_dir, label="twice", pin=config.pin)
    assert again == config
    Pkcs11KeyStore.open(again).close()


def test_a_second_token_directory_is_refused(keystore: Pkcs11KeyStore, tmp_path: Path) -> None:
    """Once SoftHSM is loaded, pointing the process at another token directory is a ConfigurationError."""
    before = os.environ["SOFTHSM2_CONF"]
    with pytest.raises(ConfigurationError):
        bootstrap_token(tmp_path, label="elsewhere", pin="1234")
    assert os.environ["SOFTHSM2_CONF"] == before


def test_the_dev_token_is_created_once_with_a_private_pin_file(tmp_path: Path) -> None:
    """bootstrap_dev_token writes a 0600 PIN file, makes no key (serve does), gives the same config twice."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / r) for r in ("server", "hsm", "clients"))}
    env.pop("SOFTHSM2_CONF", None)
    for _ in range(2):  # a second process reuses the token and the PIN
        result = subprocess.run(
            [sys.executable, "-c", DEV_TOKEN_CHILD, str(tmp_path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert json.loads(result.stdout) == {"same": True, "keys": []}
    pin_file = tmp_path / "softhsm" / "pin"
    assert stat.S_IMODE(pin_file.stat().st_mode) == 0o600
    assert pin_file.read_text().strip() not in result.stdout + result.stderr


def test_processes_bootstrapping_one_new_directory_at_once_make_one_token(tmp_path: Path) -> None:
    """RACE: eight processes bootstrap one new development directory at once (`sesame keys rotate` run twice
    at once, a CLI beside `make run`): one token, one PIN, every process served. Each rewrote softhsm2.conf
    while another's softhsm2-util read it and each made its token when it saw none: two tokens under one
    label (every later use: MultipleTokensReturned) and `softhsm2-util --init-token failed`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / r) for r in ("server", "hsm", "clients"))}
    env.pop("SOFTHSM2_CONF", None)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", DEV_TOKEN_CHILD, str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err[-2000:]
        assert json.loads(out) == {"same": True, "keys": []}
    assert len(list((tmp_path / "softhsm" / "tokens").iterdir())) == 1
    assert sorted(p.name for p in (tmp_path / "softhsm").iterdir() if p.name.startswith(".pin")) == []
