"""SMS providers in failover order, the older single-gateway variable, and the SMPP settings."""

from __future__ import annotations

import pytest

from sesame.server.config import Settings
from sesame.server.domain.errors import ConfigurationError

SMPP = {
    "SESAME_SMS_PROVIDERS": "smpp",
    "SESAME_SMPP_HOST": "smsc.example.net",
    "SESAME_SMPP_SYSTEM_ID": "sesame",
    "SESAME_SMPP_PASSWORD": "secret",
}


def _problems(env: dict[str, str]) -> str:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(env)
    return str(caught.value)


def test_providers_are_read_in_failover_order():
    """`smpp,console` gives the SMPP settings and the console behind it, in that order."""
    settings = Settings.from_env(SMPP | {"SESAME_SMS_PROVIDERS": "smpp, console"})
    assert settings.sms_providers == ("smpp", "console")
    assert (settings.kannel, settings.dlr) == (None, None)
    assert settings.smpp is not None


def test_the_older_gateway_variable_still_chooses_one_provider():
    """SESAME_SMS_GATEWAY=console, as deployments set it today, is the providers list `console`."""
    assert Settings.from_env({"SESAME_SMS_GATEWAY": "console"}).sms_providers == ("console",)


def test_both_variables_at_once_are_refused():
    """Setting SESAME_SMS_PROVIDERS and SESAME_SMS_GATEWAY together is ambiguous: refused."""
    message = _problems({"SESAME_SMS_PROVIDERS": "console", "SESAME_SMS_GATEWAY": "console"})
    assert "SESAME_SMS_GATEWAY" in message


@pytest.mark.parametrize("value", ["twilio", "console,console", "smpp,,console"])
def test_unknown_or_repeated_providers_are_refused(value: str):
    """A name outside console, kannel, smpp, or one given twice, is refused."""
    assert "SESAME_SMS_PROVIDERS" in _problems({"SESAME_SMS_PROVIDERS": value})


def test_smpp_defaults():
    """Port 2775, the bank's name as alphanumeric sender (TON 5, NPI 0), window 10, 10/s, 30 s keep-alive."""
    smpp = Settings.from_env(SMPP).smpp
    assert smpp is not None
    assert (smpp.host, smpp.port, smpp.system_id, smpp.system_type) == (
        "smsc.example.net",
        2775,
        "sesame",
        "",
    )
    assert (smpp.source, smpp.source_ton, smpp.source_npi) == ("MaBanque", 5, 0)
    assert (smpp.window, smpp.rate, smpp.enquire_link) == (10, 10, 30.0)
    assert (smpp.connect_timeout, smpp.response_timeout) == (5.0, 5.0)
    assert "secret" not in repr(smpp)


def test_a_numeric_source_address_is_international():
    """A sender given as digits is sent with TON 1 (international) and NPI 1 (E.164)."""
    smpp = Settings.from_env(SMPP | {"SESAME_SMPP_SOURCE_ADDR": "33612000000"}).smpp
    assert smpp is not None
    assert (smpp.source, smpp.source_ton, smpp.source_npi) == ("33612000000", 1, 1)


def test_smpp_without_its_account_names_every_missing_setting():
    """The smpp provider without host, system id and password lists all three."""
    message = _problems({"SESAME_SMS_PROVIDERS": "smpp"})
    for name in ("SESAME_SMPP_HOST", "SESAME_SMPP_SYSTEM_ID", "SESAME_SMPP_PASSWORD"):
        assert name in message


def test_an_smpp_password_longer_than_8_is_refused():
    """SMPP 3.4 carries at most 8 password characters: a longer one would be cut by the SMSC."""
    assert "SESAME_SMPP_PASSWORD" in _problems(SMPP | {"SESAME_SMPP_PASSWORD": "123456789"})


def test_production_refuses_the_console_anywhere_in_the_list():
    """`smpp,console` in production is refused: the console would write codes to a file."""
    message = _problems(SMPP | {"SESAME_ENV": "production", "SESAME_SMS_PROVIDERS": "smpp,console"})
    assert "console" in message
