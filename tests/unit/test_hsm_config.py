"""Pkcs11Config and KeyInfo: what they show of themselves."""

from __future__ import annotations

from sesame.hsm.keys import KeyInfo
from sesame.hsm.pkcs11 import Pkcs11Config


def test_config_repr_hides_the_pin() -> None:
    """repr() and str() of a config name the module and token but not the PIN."""
    config = Pkcs11Config(module="/lib/x.so", token_label="sesame", pin="S3cretPin99")  # noqa: S106
    assert "S3cretPin99" not in repr(config)
    assert "S3cretPin99" not in str(config)
    assert "sesame" in repr(config)


def test_key_info_prints_attributes_only() -> None:
    """A listed key prints its label and protection flags."""
    info = KeyInfo(
        "sesame-otp-v2",
        2,
        256,
        sensitive=True,
        extractable=False,
        always_sensitive=True,
        never_extractable=True,
        generated_in_hsm=True,
    )
    text = str(info)
    assert text.startswith("sesame-otp-v2")
    assert "extractable=False" in text
