"""The keys at boot: `sesame serve` starts only with a current OTP key and proof key that work.

A token that answers but holds no OTP key (or a damaged one) would serve: every StartChallenge would then
fail INTERNAL and every verification would be refused. The boot runs the key self-test (one MAC, one
signature, each checked) and refuses with a message that says what to do.
"""

from __future__ import annotations

from sesame.hsm.self_test import prove_current_keys
from sesame.server.domain.errors import ConfigurationError, HsmUnavailable, KeyNotFound
from sesame.server.domain.ports import KeyStore


async def check_usable_keys(keys: KeyStore, token_label: str) -> None:
    """Return when the current OTP and proof keys pass the self-test. ConfigurationError otherwise."""
    try:
        await prove_current_keys(keys)
    except (KeyNotFound, HsmUnavailable) as exc:
        raise ConfigurationError(
            f"the HSM token {token_label!r} has no usable current OTP key and proof key ({exc}): "
            "create them with `sesame keys init`, or restore the token that holds them"
        ) from None
