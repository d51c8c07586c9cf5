"""SoftHSM2 tokens for development and tests: find the module, create a token directory, a token, a PIN.

SoftHSM reads `SOFTHSM2_CONF` once, when the module is loaded; a process therefore works with one token
directory (which may hold several tokens). `bootstrap_token` sets the variable for this process and refuses
to point it elsewhere once the HSM thread has loaded the module.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from sesame.hsm.pkcs11 import Pkcs11Config
from sesame.hsm.worker import hsm_worker
from sesame.server.domain.errors import ConfigurationError

MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)
DEV_TOKEN_LABEL = "sesame"  # noqa: S105 - a token label, not a secret


def find_softhsm_module() -> str:
    """Path of the SoftHSM2 PKCS#11 module. ConfigurationError if it is not installed."""
    for candidate in MODULE_CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    raise ConfigurationError(
        "SoftHSM2 is not installed (looked for " + ", ".join(MODULE_CANDIDATES) + "); "
        "install it with `apt-get install softhsm2`, or configure a PKCS#11 module and token"
    )


def bootstrap_token(
    directory: Path, *, label: str = DEV_TOKEN_LABEL, pin: str, so_pin: str | None = None
) -> Pkcs11Config:
    """Make sure `directory` holds a SoftHSM token store with a token `label`; point this process at it.

    Idempotent: an existing token is kept as it is (its PIN must be `pin`). Without `so_pin` a random one
    is used and forgotten (a development token is thrown away, not recovered).
    """
    module = find_softhsm_module()
    directory = directory.resolve()
    conf = directory / "softhsm2.conf"
    _point_process_at(module, conf)
    (directory / "tokens").mkdir(parents=True, exist_ok=True, mode=0o700)
    # mkdir leaves an existing directory's mode alone: the token objects inside are owner-only either way.
    (directory / "tokens").chmod(0o700)
    # Processes bootstrapping one directory at once (`sesame keys rotate` run twice, a CLI beside `make run`)
    # take turns: one that rewrote the file while another's softhsm2-util read it made that one find no
    # token, and it made a second token under the same label (every later use: MultipleTokensReturned).
    with _turn(directory):
        _write_if_changed(
            conf,
            f"directories.tokendir = {directory / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n",
        )
        # SoftHSM's own list is no proof that a token is missing: a token another process reads (its lock
        # held) can be left out of it, and a second token was made under the label. What this function made
        # is marked, under the lock; the list is asked only of a directory made before the mark.
        made = directory / f".token-{label.encode().hex()}"
        marked = made.exists() and any((directory / "tokens").iterdir())  # not a store emptied since
        if not marked and label not in _token_labels(conf):
            _softhsm_util(
                conf,
                "--init-token",
                "--free",
                "--label",
                label,
                "--pin",
                pin,
                "--so-pin",
                so_pin or secrets.token_urlsafe(24),
            )
        made.touch()
    return Pkcs11Config(module=module, token_label=label, pin=pin)


@contextlib.contextmanager
def _turn(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on `directory`'s bootstrap for the block (released by the kernel however its
    holder ends)."""
    fd = os.open(directory / ".bootstrap.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_if_changed(path: Path, text: str) -> None:
    """Write `path` whole (a rename: a reader never sees it half-written) unless it already says `text`."""
    with contextlib.suppress(FileNotFoundError):
        if path.read_text() == text:
            return
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    partial.replace(path)


def bootstrap_dev_token(var_dir: Path, *, create: bool = True) -> Pkcs11Config:
    """The development token in `var_dir/softhsm`, PIN generated once into `pin` (0600); with `create`
    False (a command that only reads it), ConfigurationError when there is none yet.

    No key is made here: `sesame serve` makes them at boot once it has compared the token with what Redis
    saw (a lost token must not silently get new keys under old labels), and `sesame keys init` on demand.
    """
    directory = var_dir / "softhsm"
    if not create and not (directory / "pin").is_file():
        raise ConfigurationError(
            f"no development token under {var_dir.resolve()}: no `sesame serve` or `sesame keys init` ran "
            "with this SESAME_VAR_DIR; run where the server's settings are (SESAME_HSM_* or that directory)"
        )
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.chmod(0o700)
    pin_file = directory / "pin"
    if not pin_file.exists():
        # Written aside, then linked in: a process bootstrapping at the same time never reads it empty, and
        # of two made at once the first linked is the token's (the other's is dropped).
        partial = directory / f".pin.{os.getpid()}"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(24))
        try:
            with contextlib.suppress(FileExistsError):
                os.link(partial, pin_file)
        finally:
            partial.unlink()
    # A PIN file left readable by others (copied, restored from a backup) is tightened, not trusted as is.
    pin_file.chmod(0o600)
    return bootstrap_token(directory, label=DEV_TOKEN_LABEL, pin=pin_file.read_text().strip())


def _point_process_at(module: str, conf: Path) -> None:
    loaded = hsm_worker(module).loaded_softhsm_conf
    if hsm_worker(module).is_loaded and loaded != str(conf):
        raise ConfigurationError(
            f"SoftHSM was already loaded in this process with SOFTHSM2_CONF={loaded}; "
            f"one process serves one token directory, not also {conf}"
        )
    os.environ["SOFTHSM2_CONF"] = str(conf)


def _token_labels(conf: Path) -> set[str]:
    shown = _softhsm_util(conf, "--show-slots")
    return {line.split(":", 1)[1].strip() for line in shown.splitlines() if line.strip().startswith("Label:")}


def _softhsm_util(conf: Path, *args: str) -> str:
    tool = shutil.which("softhsm2-util")
    if tool is None:
        raise ConfigurationError("softhsm2-util is not installed (`apt-get install softhsm2`)")
    result = subprocess.run(  # noqa: S603 - fixed tool, arguments are ours
        [tool, *args],
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        # The command line holds PINs: report the exit status and the tool's own message only.
        raise ConfigurationError(
            f"softhsm2-util {args[0]} failed ({result.returncode}): {result.stderr.strip()}"
        )
    return result.stdout
