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


def test_key_info_names_every_way_a_key_was_exposed() -> None:
    """A key not sensitive, extractable, or once so gives each reason; a protected key gives none."""
    protected = KeyInfo("sesame-otp-v1", 1, 256, True, False, True, True, True, copyable=False)
    assert (protected.exposures, protected.may_be_copied) == ((), False)
    exposed = KeyInfo("sesame-otp-v1", 1, 256, False, True, False, False, True, copyable=None)
    assert exposed.exposures == ("not sensitive", "extractable", "not always sensitive", "once extractable")
    assert exposed.may_be_copied  # a token that does not know CKA_COPYABLE may copy it
    assert "copyable=unknown" in str(exposed)
