"""SMS settings: the gateway, Kannel's account and the delivery-report listener, checked at boot."""

from __future__ import annotations

from pathlib import Path

import pytest

from sesame.server.config import Settings
from sesame.server.domain.errors import ConfigurationError
from tests.support.pki import Pki

TOKEN = "dlr-token_" + "x" * 33
KANNEL = {
    "SESAME_SMS_GATEWAY": "kannel",
    "SESAME_KANNEL_URL": "http://127.0.0.1:13013",
    "SESAME_KANNEL_USERNAME": "sesame",
    "SESAME_KANNEL_PASSWORD": "pa55word",
    "SESAME_DLR_TOKEN": TOKEN,
}


def _problems(env: dict[str, str]) -> str:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(env)
    return str(caught.value)


def test_the_console_is_the_default_and_needs_no_listener():
    """With no variable the console gateway is used, with neither Kannel nor delivery reports."""
    settings = Settings.from_env({})
    assert (settings.sms_gateway, settings.kannel, settings.dlr) == ("console", None, None)


def test_kannel_settings_are_read_with_their_defaults():
    """Sender = bank name, 5 s timeout, reports on 127.0.0.1:9465 called back at that address."""
    settings = Settings.from_env(KANNEL)
    assert settings.kannel is not None
    assert settings.dlr is not None
    assert (settings.kannel.url, settings.kannel.username, settings.kannel.password) == (
        "http://127.0.0.1:13013",
        "sesame",
        "pa55word",
    )
    assert (settings.kannel.sender, settings.kannel.timeout) == ("MaBanque", 5.0)
    assert (settings.dlr.address, settings.dlr.public_url, settings.dlr.token) == (
        "127.0.0.1:9465",
        None,
        TOKEN,
    )


def test_every_missing_kannel_setting_is_named_at_once():
    """Kannel chosen alone: URL, username, password and DLR token are all reported in one error."""
    message = _problems({"SESAME_SMS_GATEWAY": "kannel"})
    for name in ("SESAME_KANNEL_URL", "SESAME_KANNEL_USERNAME", "SESAME_KANNEL_PASSWORD", "SESAME_DLR_TOKEN"):
        assert name in message


def test_secrets_come_from_files_and_stay_out_of_repr_and_errors(tmp_path: Path):
    """Password and token files are read; neither secret shows in the repr or in a boot error."""
    (tmp_path / "password").write_text("from-a-file\n")
    (tmp_path / "token").write_text(TOKEN + "\n")
    env = KANNEL | {
        "SESAME_KANNEL_PASSWORD": "",
        "SESAME_KANNEL_PASSWORD_FILE": str(tmp_path / "password"),
        "SESAME_DLR_TOKEN": "",
        "SESAME_DLR_TOKEN_FILE": str(tmp_path / "token"),
    }
    settings = Settings.from_env(env)
    assert settings.kannel is not None
    assert settings.dlr is not None
    assert (settings.kannel.password, settings.dlr.token) == ("from-a-file", TOKEN)
    assert "from-a-file" not in repr(settings)
    assert TOKEN not in repr(settings)
    assert "pa55word" not in _problems(KANNEL | {"SESAME_KANNEL_TIMEOUT_SECONDS": "0"})


def test_a_password_and_a_password_file_are_exclusive(tmp_path: Path):
    """Both given is ambiguous and refused."""
    (tmp_path / "password").write_text("x")
    message = _problems(KANNEL | {"SESAME_KANNEL_PASSWORD_FILE": str(tmp_path / "password")})
    assert "SESAME_KANNEL_PASSWORD" in message


@pytest.mark.parametrize("sender", ["MaBanque-FR", "TwelveChars1", "Bank!"])
def test_a_sender_that_is_no_alphanumeric_id_is_refused(sender: str):
    """The sender id is 1 to 11 letters, digits or spaces."""
    assert "SESAME_SMS_SENDER" in _problems(KANNEL | {"SESAME_SMS_SENDER": sender})


def test_a_bank_name_that_cannot_be_the_sender_asks_for_one():
    """A bank name longer than 11 characters needs SESAME_SMS_SENDER; given, it is used."""
    env = KANNEL | {"SESAME_BANK_NAME": "Banque Populaire"}
    assert "SESAME_SMS_SENDER" in _problems(env)
    kannel = Settings.from_env(env | {"SESAME_SMS_SENDER": "BanquePop"}).kannel
    assert kannel is not None
    assert kannel.sender == "BanquePop"


@pytest.mark.parametrize("token", ["short", "x" * 31, "has%25escape" + "x" * 30, "with space " + "x" * 30])
def test_a_dlr_token_must_be_long_and_url_safe(token: str):
    """At least 32 characters, none needing percent-encoding (Kannel expands % in the dlr-url)."""
    assert "SESAME_DLR_TOKEN" in _problems(KANNEL | {"SESAME_DLR_TOKEN": token})


@pytest.mark.parametrize(
    "url", ["127.0.0.1:13013", "ftp://k", "http://k/?a=1", "http://", "http://k:0", "http://u:secret@k"]
)
def test_a_kannel_url_must_be_a_plain_http_url(url: str):
    """http(s), a host, no credentials, no query; the bad value is not echoed (it may hold a password)."""
    message = _problems(KANNEL | {"SESAME_KANNEL_URL": url})
    assert "SESAME_KANNEL_URL" in message
    assert "secret" not in message


def test_delivery_reports_can_be_turned_off():
    """SESAME_DLR_ADDR=off: no listener, no token needed."""
    env = {k: v for k, v in KANNEL.items() if k != "SESAME_DLR_TOKEN"} | {"SESAME_DLR_ADDR": "off"}
    assert Settings.from_env(env).dlr is None


def test_a_listener_on_every_interface_needs_a_public_url():
    """0.0.0.0 is no address to call back: SESAME_DLR_PUBLIC_URL is then required, and used."""
    env = KANNEL | {"SESAME_DLR_ADDR": "0.0.0.0:9465"}
    assert "SESAME_DLR_PUBLIC_URL" in _problems(env)
    dlr = Settings.from_env(env | {"SESAME_DLR_PUBLIC_URL": "http://sesame-1.internal:9465/"}).dlr
    assert dlr is not None
    assert dlr.public_url == "http://sesame-1.internal:9465"


def _production(tmp_path: Path, pki: Pki) -> dict[str, str]:
    """Production's settings but the SMS provider: Redis over TLS, an HSM module, mTLS and a policy."""
    module = tmp_path / "lib.so"
    module.write_bytes(b"")
    return {
        "SESAME_ENV": "production",
        "SESAME_REDIS_URL": "rediss://redis:6379/0",
        "SESAME_PKCS11_MODULE": str(module),
        "SESAME_HSM_TOKEN": "t",
        "SESAME_HSM_PIN": "1234",
        **pki.env,
    }


def test_production_refuses_the_console_and_accepts_kannel(tmp_path: Path, pki: Pki):
    """In production the console gateway is a boot error; Kannel, with real Redis, HSM and mTLS, boots."""
    production = _production(tmp_path, pki)
    assert "SESAME_SMS_GATEWAY" in _problems(production)
    assert Settings.from_env(production | KANNEL).sms_gateway == "kannel"


@pytest.mark.parametrize(
    ("links", "said"),
    [
        ({"SESAME_REDIS_URL": "redis://redis:6379/0"}, "SESAME_REDIS_URL (redis://, not rediss://)"),
        ({"SESAME_REDIS_URL": "redis+cluster://a:7000,b:7001"}, "SESAME_REDIS_URL (redis+cluster://"),
        # The host where the client finds it, not in the URL's look (an outside audit: these booted).
        ({"SESAME_REDIS_URL": "redis:///?host=10.9.9.9"}, "SESAME_REDIS_URL (redis://, not rediss://)"),
        ({"SESAME_REDIS_URL": "redis://:pw@/0?host=10.9.9.9&port=6379"}, "SESAME_REDIS_URL (redis://, not"),
        ({"SESAME_REDIS_URL": "redis://[::1:a]/0"}, "SESAME_REDIS_URL (redis://, not rediss://)"),
        # TLS that accepts any certificate, or any name, is no protection against who is between.
        ({"SESAME_REDIS_URL": "rediss://redis/0?ssl_cert_reqs=none"}, "SESAME_REDIS_URL (rediss:// without"),
        ({"SESAME_REDIS_URL": "rediss://redis/0?ssl_check_hostname=no"}, "SESAME_REDIS_URL (rediss://"),
        # Anonymous ciphers: a server without a certificate is let in (an audit of the check above).
        ({"SESAME_REDIS_URL": "rediss://redis/0?ssl_ciphers=aNULL"}, "SESAME_REDIS_URL (rediss:// without"),
        # A cluster client connects to the nodes the cluster names, not to its seeds only.
        ({"SESAME_REDIS_URL": "redis+cluster://127.0.0.1:7000"}, "SESAME_REDIS_URL (redis+cluster://"),
        ({"SESAME_KANNEL_URL": "http://kannel.internal:13013"}, "SESAME_KANNEL_URL (http://, not https://)"),
        (
            {
                "SESAME_SMS_GATEWAY": "",
                "SESAME_SMS_PROVIDERS": "smpp",
                "SESAME_SMPP_HOST": "smsc.example.net",
                "SESAME_SMPP_SYSTEM_ID": "sesame",
                "SESAME_SMPP_PASSWORD": "secret",
            },
            "SESAME_SMPP_HOST (SMPP without TLS)",
        ),
    ],
)
def test_production_refuses_links_in_clear_to_other_hosts(
    tmp_path: Path, pki: Pki, links: dict[str, str], said: str
) -> None:
    """Found by an outside audit: production booted with Redis, Kannel and SMPP reached in clear on other
    hosts, the code, amount and payee crossing the network readable and changeable (RTS Art. 22(1), 5(2)).
    Refused, naming the link; accepted once the operator says the network is protected."""
    production = _production(tmp_path, pki) | KANNEL | {"SESAME_KANNEL_URL": "https://kannel.internal:13013"}
    Settings.from_env(production)  # every link over TLS: boots
    for local in ("redis://127.0.0.1:6379/0", "redis://[::1]/0", "redis://", "unix:///run/redis.sock"):
        Settings.from_env(production | {"SESAME_REDIS_URL": local})  # crosses no network
    for checked in ("rediss://redis/0?ssl_ca_certs=/etc/ca.pem", "rediss://redis/0?ssl_cert_reqs=optional"):
        Settings.from_env(production | {"SESAME_REDIS_URL": checked})
    message = _problems(production | links)
    assert "in production no link to another host may carry codes in clear" in message
    assert said in message
    accepted = Settings.from_env(production | links | {"SESAME_PRIVATE_NETWORK": "1"})
    # Each link accepted in clear is kept, for the boot to say (an audit: the setting lifted every link's
    # check at once, a remote SMSC added later accepted unseen).
    assert len(accepted.clear_links) == 1
    assert accepted.clear_links[0].startswith(said)
