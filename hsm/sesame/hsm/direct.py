"""MACs and signatures through the module's own C_SignInit and C_Sign, with the GIL held (decision 0086).

python-pkcs11 releases the GIL around every call into the module (`with nogil`). A MAC or a signature on a
worker's event loop takes 25-90 µs of CPU: too short for another thread to do anything useful with the GIL,
and once let go it comes back only when the thread that took it lets go in turn (after up to the switch
interval, 5 ms, if that thread runs Python; later if the system has descheduled it). Decision 0086 has the
figures: with one busy Python thread beside the loop a MAC took 42 µs on average this way against 154
through python-pkcs11; `sesame serve` did 10 % more flows a second on average over nine alternated pairs.

`ctypes.PyDLL` calls a C function without releasing the GIL. The library is the one python-pkcs11 loaded
and initialised (`dlopen` of the same file returns the same copy); the session and key handles are
python-pkcs11's; the caller holds the module's lock, as around every call (`sesame.hsm.worker`). Only the
two calls a signature needs are made here: C_SignInit, then one C_Sign into a buffer larger than any output,
so never CKR_BUFFER_TOO_SMALL, the one failure of C_Sign that leaves the operation active (PKCS#11 2.40).
Any other failure answers None, nothing left active, and the caller makes the call again through
python-pkcs11, which raises its error by class: the reconnect policy (`TokenSession.call`) reads those.
"""

from __future__ import annotations

import contextlib
import ctypes
from typing import Final

CKR_OK: Final = 0
_OUT: Final = 512  # bytes: an HMAC-SHA512 is 64, an ECDSA P-256 signature 64, a P-521 one 132


class _Mechanism(ctypes.Structure):
    """CK_MECHANISM without a parameter (HMACs, CKM_ECDSA)."""

    _fields_ = (
        ("mechanism", ctypes.c_ulong),
        ("parameter", ctypes.c_void_p),
        ("parameter_len", ctypes.c_ulong),
    )


class DirectSigner:
    """C_SignInit + C_Sign of a loaded PKCS#11 module, called with the GIL held."""

    def __init__(self, module: str) -> None:
        """Bind the module's exported C_SignInit and C_Sign. OSError, AttributeError if it has none."""
        library = ctypes.PyDLL(module)
        self._init = library.C_SignInit
        self._init.argtypes = (ctypes.c_ulong, ctypes.POINTER(_Mechanism), ctypes.c_ulong)
        self._init.restype = ctypes.c_ulong
        self._sign = library.C_Sign
        self._sign.argtypes = (
            ctypes.c_ulong,
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_char_p,
            ctypes.POINTER(ctypes.c_ulong),
        )
        self._sign.restype = ctypes.c_ulong

    def sign(self, session: int, key: int, mechanism: int, data: bytes) -> bytes | None:
        """The signature (or MAC) of `data` by the key `key` of `session`; None when the module refused."""
        step = _Mechanism(mechanism, None, 0)
        if self._init(session, ctypes.byref(step), key) != CKR_OK:
            return None
        out = ctypes.create_string_buffer(_OUT)
        length = ctypes.c_ulong(_OUT)
        if self._sign(session, data, len(data), out, ctypes.byref(length)) != CKR_OK or length.value > _OUT:
            return None
        return out.raw[: length.value]


def direct_signer(module: str) -> DirectSigner | None:
    """The module's direct signer, or None when it exports no C_SignInit/C_Sign (python-pkcs11 then signs)."""
    with contextlib.suppress(OSError, AttributeError):
        return DirectSigner(module)
    return None
