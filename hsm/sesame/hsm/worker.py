"""The one thread per process that makes the slow PKCS#11 calls, and the lock every call holds.

python-pkcs11 0.10.1 initialises the module with `C_Initialize(NULL)`, so SoftHSM2 runs without mutexes and
two calls at once corrupt its heap. Every PKCS#11 call of this process holds the module's lock. The slow and
rare ones (loading the library, sessions, logins, searches, key generation, reconnects) run on one dedicated
thread per module (docs/decisions/0001-hsm-concurrency.md); the hot ones (MAC, signature, random) run on the
caller's own thread when the lock is free and the session ready, because the hop costs more than the call
(docs/decisions/0020-hsm-calls-inline.md); MACs and signatures keep the GIL while the module computes them
(`sesame.hsm.direct`, docs/decisions/0086-hsm-calls-keep-the-gil.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pkcs11

from sesame.hsm.direct import DirectSigner, direct_signer
from sesame.hsm.token_files import ObjectFile, mend_token_objects, object_files, softhsm_token_dir
from sesame.server.domain.errors import HsmUnavailable

if TYPE_CHECKING:
    from sesame.hsm.session import TokenSession

T = TypeVar("T")

_log = logging.getLogger("sesame.hsm")
# A key not found makes the worker look at the token's key files at most this often (decision 0087).
LOOK_PAUSE_SECONDS = 1.0

_registry_lock = threading.Lock()
_workers: dict[str, HsmWorker] = {}


class HsmWorker:
    """One PKCS#11 module in this process: its thread, its loaded library, its shared token sessions."""

    def __init__(self, module: str) -> None:
        self.module = module
        self._thread_id: int | None = None
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="sesame-hsm", initializer=self._mark_thread
        )
        self._lib: Any = None
        self._direct: DirectSigner | None = None
        self._softhsm_conf: str | None = None
        # SoftHSM's token directory (None for another module), and its key object files as they were when
        # the module last read them (C_Initialize), to tell a restore it did not see (decision 0087).
        self._token_dir: Path | None = None
        self._files_read: frozenset[ObjectFile] | None = None
        self._looked_at = float("-inf")
        # Bumped by every C_Finalize/C_Initialize: sessions opened under an older generation are dead, and
        # their handle numbers may already belong to new sessions (SoftHSM numbers them from 1 again).
        self.generation = 0
        # Touched only on the HSM thread: one logged-in session per token label, shared by every user.
        self.tokens: dict[str, TokenSession] = {}
        # Held around every call into the module, on whatever thread. Reentrant: a step on the HSM thread
        # may run another through `run`.
        self.lock = threading.RLock()

    def _mark_thread(self) -> None:
        self._thread_id = threading.get_ident()

    def on_thread(self) -> bool:
        """Whether the caller is this worker's HSM thread."""
        return self._thread_id == threading.get_ident()

    def run(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the HSM thread and wait for its result (for sync callers: the CLI, `open`)."""
        if self.on_thread():
            return self._locked(fn)
        return self._executor.submit(self._locked, fn).result()

    async def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the HSM thread without blocking the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._locked, fn)

    def _locked(self, fn: Callable[[], T]) -> T:
        with self.lock:
            return fn()

    @property
    def lib(self) -> Any:
        """The loaded and initialised module; loaded on first use, on the HSM thread only."""
        if not self.on_thread():
            raise RuntimeError("PKCS#11 is only called from the HSM thread")
        if self._lib is None:
            self._softhsm_conf = os.environ.get("SOFTHSM2_CONF")
            token_dir = softhsm_token_dir(self._softhsm_conf)
            mend_token_objects(token_dir)
            files = object_files(token_dir)  # before C_Initialize: a change while it reads is seen later
            try:
                self._lib = pkcs11.lib(self.module)
            except pkcs11.PKCS11Error as exc:
                # Not a session lost: nothing to reconnect. Say which setting and why, once.
                raise HsmUnavailable(
                    f"the PKCS#11 module {self.module} (SESAME_PKCS11_MODULE) could not be loaded: "
                    f"{_load_failure(self.module, exc)}"
                ) from None
            self._direct = direct_signer(self.module)
            if self._lib.manufacturer_id == "SoftHSM":
                self._token_dir, self._files_read = token_dir, files
        return self._lib

    @property
    def direct(self) -> DirectSigner | None:
        """MACs and signatures with the GIL held (`sesame.hsm.direct`), once the module is loaded; None
        when the module exports no C_SignInit/C_Sign."""
        return self._direct

    def reinitialize(self) -> None:
        """C_Finalize then C_Initialize (HSM thread): every session of this module in the process ends."""
        lib = self.lib
        files = object_files(self._token_dir)
        lib.reinitialize()
        self.generation += 1
        self._files_read = files

    def reread_if_restored(self) -> bool:
        """After a key was not found (HSM thread): re-initialise the module if the token's key files changed
        since it last read them, and say whether it did (then search again).

        SoftHSM's index of a token can miss keys restored while this process searched (`sesame.hsm.
        token_files`); C_Initialize reads the directory afresh. Only on that failure path, never when keys
        are found; the files are looked at once a second at most, and unchanged ones (a key really gone, an
        old version retired) cost no HSM call. Another module than SoftHSM: never (False).
        """
        now = time.monotonic()
        if self._token_dir is None or now - self._looked_at < LOOK_PAUSE_SECONDS:
            return False
        self._looked_at = now
        files = object_files(self._token_dir)
        if files is None:
            # The token directory gone (moved away, a volume unmounted): SoftHSM drops the keys it no longer
            # finds and does not find them again when the same files come back, so the files read then would
            # look unchanged, and a process without a health round (the sealer) never found its key again (an
            # outside audit). Whatever is there next is read afresh.
            self._files_read = None
            return False
        if files == self._files_read:
            return False
        _log.warning(
            "HSM key not found, and the token's key files changed since the module read them (keys deleted "
            "or restored?): re-initialising it to read them again"
        )
        self.reinitialize()
        return True

    @property
    def loaded_softhsm_conf(self) -> str | None:
        """The SOFTHSM2_CONF the library read when it was loaded, or None if it is not loaded yet."""
        return self._softhsm_conf if self._lib is not None else None

    @property
    def is_loaded(self) -> bool:
        """Whether the library was loaded in this process."""
        return self._lib is not None


def hsm_worker(module: str) -> HsmWorker:
    """The process-wide worker of a module (created on first use, kept for the life of the process)."""
    key = os.path.realpath(module)
    with _registry_lock:
        worker = _workers.get(key)
        if worker is None:
            worker = _workers[key] = HsmWorker(key)
        return worker


def _load_failure(module: str, exc: Exception) -> str:
    """Why the dynamic loader refused `module` (`invalid ELF header`, `undefined symbol: C_GetFunctionList`,
    ...): python-pkcs11's text without its prefix and the paths in front of the loader's reason."""
    text = str(exc).removeprefix(f"OS exception while loading {module}: ")
    while text.startswith("/") and ": " in text:
        text = text.split(": ", 1)[1]
    return text[:200] or type(exc).__name__
