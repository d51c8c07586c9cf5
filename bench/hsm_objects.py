"""CPU per HSM call by where the key object lives and how it is called, on a fresh SoftHSM token.

Variants, each the HMAC-SHA256 of an OCRA-sized input (the code derivation) and the ECDSA P-256 signature of a
digest (a proof or a journal block), back to back on the HSM thread:
  token     the token object, through python-pkcs11 (`key.sign`), as shipped
  session   a session copy of the key (C_CopyObject, CKA_TOKEN false), through python-pkcs11. SoftHSM refuses
            to copy a key whose CKA_MODIFIABLE is false (AttributeReadOnly), as Sésame's keys are: the copies
            are made of twin keys generated here with CKA_MODIFIABLE true, their other attributes as ours
  twin      the twin's token object (CKA_MODIFIABLE itself costs nothing: the baseline of `session`)
  token-b   the token object, through python-pkcs11 with `buffer_size` the output's size (not 8 KiB)
  token-c   the token object, C_SignInit + one C_Sign through ctypes, as Sésame signs (`sesame.hsm.direct`)
  session-c the session copy, the same way
  keystore  `Pkcs11KeyStore.mac/sign` as shipped (unmetered), awaited on an event loop: the call runs inline
`token-c` against `token` is python-pkcs11's own share per call (it makes C_SignInit, C_Sign for the length,
C_Sign; it allocates an 8 KiB buffer); `session` against `twin` is SoftHSM's file object store's share.

CPU is the HSM thread's own (CLOCK_THREAD_CPUTIME_ID: user + kernel), per call; the variants are alternated
in every round, in a rotating order; the median of the rounds is printed, then the change of each variant
against its baseline paired round by round (the machine is noisy). Decision 0077 holds the figures.

    .venv/bin/python -m bench.hsm_objects --calls 1000 --rounds 15
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag

from sesame.hsm.direct import DirectSigner
from sesame.hsm.keys import _PRIVATE_KEY_TEMPLATE, _PUBLIC_KEY_TEMPLATE, _SECRET_KEY_TEMPLATE, init_keys
from sesame.hsm.pkcs11 import P256_PARAMS, Pkcs11KeyStore
from sesame.hsm.session import acquire_token, release_token
from sesame.hsm.softhsm import bootstrap_token
from sesame.hsm.worker import hsm_worker
from sesame.server.domain.model import MacAlgorithm

CKM_SHA256_HMAC = 0x251
CKM_ECDSA = 0x1041
# (variant, baseline) compared round by round: the file store's share, python-pkcs11's, ours.
PAIRS = (
    ("session", "twin"),
    ("session-c", "token-c"),
    ("twin", "token"),
    ("token-c", "token"),
    ("token-b", "token"),
    ("keystore", "token"),
)
OCRA_INPUT = b"OCRA-1:HOTP-SHA256-8:QH32-T30S\x00" + bytes(32) + bytes(8)


def direct(module: str, session: Any, key: Any, *, mechanism: int, data: bytes) -> Callable[[], bytes]:
    """A sign call made straight through the module's C functions, as `TokenSession.signed` makes it
    (`sesame.hsm.direct`: C_SignInit, then C_Sign once, the GIL held)."""
    signer = DirectSigner(module)  # the library python-pkcs11 loaded (dlopen: the same, initialised copy)
    handle_session, handle_key = session.handle, key.handle

    def call() -> bytes:
        signature = signer.sign(handle_session, handle_key, mechanism, data)
        if signature is None:
            raise RuntimeError("the module refused C_SignInit or C_Sign")
        return signature

    return call


def _modifiable_twins(session: Any) -> tuple[Any, Any]:
    """An HMAC key and a P-256 key pair made as Sésame makes its own, but with CKA_MODIFIABLE true."""
    both = MechanismFlag.SIGN | MechanismFlag.VERIFY
    secret = session.generate_key(
        KeyType.GENERIC_SECRET,
        256,
        label="bench-twin-otp",
        store=True,
        capabilities=both,
        template={**_SECRET_KEY_TEMPLATE, Attribute.MODIFIABLE: True},
    )
    parameters = session.create_domain_parameters(KeyType.EC, {Attribute.EC_PARAMS: P256_PARAMS}, local=True)
    _, private = parameters.generate_keypair(
        store=True,
        label="bench-twin-proof",
        capabilities=both,
        public_template=_PUBLIC_KEY_TEMPLATE,
        private_template={**_PRIVATE_KEY_TEMPLATE, Attribute.MODIFIABLE: True},
    )
    return secret, private


def cpu_per_call(fn: Callable[[], bytes], calls: int) -> tuple[float, float]:
    """(CPU µs, wall µs) per call of `calls` calls of `fn` on this thread."""
    cpu, wall = time.thread_time(), time.perf_counter()
    for _ in range(calls):
        fn()
    return 1e6 * (time.thread_time() - cpu) / calls, 1e6 * (time.perf_counter() - wall) / calls


async def _awaited(call: Callable[[], Awaitable[bytes]], calls: int) -> tuple[float, float]:
    """(CPU µs, wall µs) per call of `calls` awaited calls on this thread's event loop."""
    cpu, wall = time.thread_time(), time.perf_counter()
    for _ in range(calls):
        await call()
    return 1e6 * (time.thread_time() - cpu) / calls, 1e6 * (time.perf_counter() - wall) / calls


def main() -> None:
    """Make a token and its keys, copy them into session objects, time every variant, print the medians."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=1000, help="calls per variant per round")
    parser.add_argument("--rounds", type=int, default=15, help="rounds, the variants alternated in each")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sesame-hsm-objects-") as directory:
        config = bootstrap_token(Path(directory), label="bench", pin="bench-pin")
        current = init_keys(config)
        worker = hsm_worker(config.module)
        token = worker.run(lambda: acquire_token(worker, config.token_label, config.pin))

        def setup() -> dict[str, Callable[[], bytes]]:
            session = token.session
            mac_key, signer = token.secret_key(current.otp.label), token.private_key(current.proof.label)
            mac_twin, signer_twin = _modifiable_twins(session)
            mac_copy, signer_copy = (key.copy({Attribute.TOKEN: False}) for key in (mac_twin, signer_twin))
            digest = hashlib.sha256(b"bench").digest()
            hmac: dict[str, Any] = {"mechanism": CKM_SHA256_HMAC, "data": OCRA_INPUT}
            ecdsa_args: dict[str, Any] = {"mechanism": CKM_ECDSA, "data": digest}

            def mac(key: Any) -> Callable[[], bytes]:
                return lambda: bytes(key.sign(OCRA_INPUT, mechanism=Mechanism.SHA256_HMAC))

            def ecdsa(key: Any) -> Callable[[], bytes]:
                return lambda: bytes(key.sign(digest, mechanism=Mechanism.ECDSA))

            variants = {
                "mac token": mac(mac_key),
                "mac session": mac(mac_copy),
                "mac token-c": direct(config.module, session, mac_key, **hmac),
                "mac session-c": direct(config.module, session, mac_copy, **hmac),
                "sign token": ecdsa(signer),
                "sign session": ecdsa(signer_copy),
                "sign token-c": direct(config.module, session, signer, **ecdsa_args),
                "sign session-c": direct(config.module, session, signer_copy, **ecdsa_args),
                "mac token-b": lambda: bytes(
                    mac_key.sign(OCRA_INPUT, mechanism=Mechanism.SHA256_HMAC, buffer_size=32)
                ),
                "sign token-b": lambda: bytes(signer.sign(digest, mechanism=Mechanism.ECDSA, buffer_size=64)),
                "mac twin": mac(mac_twin),
                "sign twin": ecdsa(signer_twin),
            }
            assert variants["mac token"]() == variants["mac token-c"]()
            assert variants["mac twin"]() == variants["mac session"]() == variants["mac session-c"]()
            return variants

        on_thread = worker.run(setup)

        def on_hsm_thread(fn: Callable[[], bytes]) -> Callable[[int], tuple[float, float]]:
            return lambda calls: worker.run(lambda: cpu_per_call(fn, calls))

        runners = {name: on_hsm_thread(fn) for name, fn in on_thread.items()}
        store = Pkcs11KeyStore.open(config)
        runners["mac keystore"] = lambda calls: asyncio.run(
            _awaited(lambda: store.mac(current.otp, OCRA_INPUT, MacAlgorithm.SHA256), calls)
        )
        runners["sign keystore"] = lambda calls: asyncio.run(
            _awaited(lambda: store.sign(current.proof, b"bench"), calls)
        )
        names = sorted(runners)
        cpu: dict[str, list[float]] = {name: [] for name in names}
        wall: dict[str, list[float]] = {name: [] for name in names}
        for round_ in range(args.rounds):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                used, took = runners[name](args.calls)
                cpu[name].append(used)
                wall[name].append(took)
        print(f"{'variant':15} {'CPU µs/call':>12} {'(min-max)':>15} {'wall µs/call':>13}")
        for name in names:
            print(
                f"{name:15} {statistics.median(cpu[name]):12.1f} "
                f"{f'({min(cpu[name]):.1f}-{max(cpu[name]):.1f})':>15} {statistics.median(wall[name]):13.1f}"
            )
        print("paired, the same round: median CPU change (min-max)")
        for call in ("mac", "sign"):
            for variant, base in PAIRS:
                change = [
                    100 * (a / b - 1)
                    for a, b in zip(cpu[f"{call} {variant}"], cpu[f"{call} {base}"], strict=True)
                ]
                print(
                    f"  {call} {variant} against {base}: {statistics.median(change):+.0f} % "
                    f"({min(change):+.0f} to {max(change):+.0f})"
                )
        store.close()
        worker.run(lambda: release_token(token))


if __name__ == "__main__":
    main()
