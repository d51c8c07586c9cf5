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
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import pkcs11

from sesame.hsm.direct import DirectSigner, direct_signer

if TYPE_CHECKING:
    from sesame.hsm.session import TokenSession

T = TypeVar("T")

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
            self._lib = pkcs11.lib(self.module)
            self._direct = direct_signer(self.module)
        return self._lib

    @property
    def direct(self) -> DirectSigner | None:
        """MACs and signatures with the GIL held (`sesame.hsm.direct`), once the module is loaded; None
        when the module exports no C_SignInit/C_Sign."""
        return self._direct

    def reinitialize(self) -> None:
        """C_Finalize then C_Initialize (HSM thread): every session of this module in the process ends."""
        self.lib.reinitialize()
        self.generation += 1

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
