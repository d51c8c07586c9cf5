"""Transport settings: TLS files checked at boot, the caller policy, the probe port, production rules."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from sesame.server.app import log_open_policy
from sesame.server.config import Settings
from sesame.server.domain.errors import ConfigurationError
from sesame.server.transport_settings import PLAINTEXT
from tests.support.pki import PAYMENTS, Pki

TLS_NAMES = (
    "SESAME_TLS_CERT_FILE",
    "SESAME_TLS_KEY_FILE",
    "SESAME_TLS_CLIENT_CA_FILE",
    "SESAME_AUTHZ_POLICY_FILE",
)


def refused(env: dict[str, str]) -> str:
    """The message of the ConfigurationError `env` gives at boot."""
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(env)
    return str(caught.value)


def test_development_is_plaintext_with_no_policy_by_default() -> None:
    """With no transport variable: plaintext, every caller allowed, no probe listener."""
    assert Settings.from_env({}).transport == PLAINTEXT


def test_production_without_tls_lists_every_missing_setting() -> None:
    """Production without TLS names the three TLS files and the policy, with the other missing backends."""
    message = refused({"SESAME_ENV": "production"})
    for name in (*TLS_NAMES, "SESAME_REDIS_URL", "SESAME_PKCS11_MODULE", "SESAME_SMS_GATEWAY"):
        assert name in message


def test_mtls_settings_are_read_once_into_memory(pki: Pki) -> None:
    """The chain, key, CA bundle and policy are loaded at boot; the key never shows in a repr."""
    transport = Settings.from_env(pki.env).transport
    assert transport.tls is not None
    assert transport.tls.cert_chain == pki.server.cert.read_bytes()
    assert transport.tls.client_ca == pki.ca.read_bytes()
    assert transport.tls.private_key == pki.server.key.read_bytes()
    assert b"PRIVATE KEY" not in repr(transport).encode()
    assert transport.policy is not None
    assert transport.policy.allows(PAYMENTS, "sesame.api.v1.AuthenticationService/StartChallenge")


def test_production_accepts_mtls_with_a_policy(pki: Pki) -> None:
    """With mTLS and a policy, production raises no transport problem (only the missing backends)."""
    message = refused({"SESAME_ENV": "production", **pki.env})
    assert not any(name in message for name in TLS_NAMES)


def test_a_key_that_is_not_the_certificates_is_refused(pki: Pki) -> None:
    """A key of another certificate is a boot error naming the key's variable."""
    message = refused({**pki.env, "SESAME_TLS_KEY_FILE": str(pki.other_key)})
    assert "SESAME_TLS_KEY_FILE is not the key" in message


def test_an_encrypted_key_is_refused(pki: Pki, tmp_path: Path) -> None:
    """gRPC cannot use an encrypted key: refused at boot, and nothing waits for a passphrase."""
    encrypted = tmp_path / "encrypted.key"
    # `cryptography`, not the openssl command: the tests call no tool that `make test` does not install.
    key = serialization.load_pem_private_key(pki.server.key.read_bytes(), password=None)
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"x"),
        )
    )
    message = refused({**pki.env, "SESAME_TLS_KEY_FILE": str(encrypted)})
    assert "SESAME_TLS_KEY_FILE is encrypted" in message


def test_files_that_are_not_pem_or_not_there_are_refused(pki: Pki, tmp_path: Path) -> None:
    """A certificate file with no certificate and a missing CA bundle are two problems in one error."""
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"\x00not a certificate")
    message = refused(
        {
            **pki.env,
            "SESAME_TLS_CERT_FILE": str(garbage),
            "SESAME_TLS_CLIENT_CA_FILE": str(tmp_path / "missing.pem"),
        }
    )
    assert "SESAME_TLS_CERT_FILE holds no PEM certificate" in message
    assert "SESAME_TLS_CLIENT_CA_FILE cannot be read" in message


def test_a_client_ca_file_without_a_ca_is_refused(pki: Pki) -> None:
    """A bundle holding only a leaf certificate cannot verify any client: refused."""
    message = refused({**pki.env, "SESAME_TLS_CLIENT_CA_FILE": str(pki.payments.cert)})
    assert "SESAME_TLS_CLIENT_CA_FILE holds no CA certificate" in message


def test_half_a_tls_setting_is_refused(pki: Pki) -> None:
    """A certificate without its key, and a client CA without a server certificate, are refused."""
    assert "go together" in refused({"SESAME_TLS_CERT_FILE": str(pki.server.cert)})
    assert "SESAME_TLS_CLIENT_CA_FILE needs" in refused({"SESAME_TLS_CLIENT_CA_FILE": str(pki.ca)})


def test_a_policy_needs_client_certificates(pki: Pki) -> None:
    """Without a client CA no caller has a name, so a policy would refuse every call: a boot error."""
    message = refused({"SESAME_AUTHZ_POLICY_FILE": str(pki.policy)})
    assert "SESAME_AUTHZ_POLICY_FILE needs SESAME_TLS_CLIENT_CA_FILE" in message


def test_policy_problems_are_listed_with_the_others(pki: Pki, tmp_path: Path) -> None:
    """A bad rule in the policy file and a bad variable are reported in the same error."""
    policy = tmp_path / "policy.toml"
    policy.write_text('[callers."a"]\nallow = ["sesame.api.v1.EnrollmentService/Nope"]\n')
    message = refused({**pki.env, "SESAME_AUTHZ_POLICY_FILE": str(policy), "SESAME_CODE_DIGITS": "5"})
    assert "SESAME_AUTHZ_POLICY_FILE: " in message
    assert "'Nope'" in message
    assert "SESAME_CODE_DIGITS" in message


def test_the_probe_listener_is_off_unless_asked() -> None:
    """SESAME_HEALTH_ADDR is off by default, read when set, and may not be the gRPC address."""
    assert Settings.from_env({"SESAME_HEALTH_ADDR": "off"}).transport.health_addr is None
    addr = Settings.from_env({"SESAME_HEALTH_ADDR": "127.0.0.1:50052"}).transport.health_addr
    assert addr == "127.0.0.1:50052"
    assert "SESAME_HEALTH_ADDR" in refused({"SESAME_HEALTH_ADDR": "127.0.0.1:50051"})
    assert "SESAME_HEALTH_ADDR" in refused({"SESAME_HEALTH_ADDR": "nowhere"})


def test_an_open_policy_is_a_boot_warning(caplog: pytest.LogCaptureFixture, pki: Pki) -> None:
    """Without a policy the boot log warns that every caller may call every RPC; with one it does not."""
    with caplog.at_level(logging.WARNING, logger="sesame"):
        log_open_policy(PLAINTEXT)
        log_open_policy(Settings.from_env(pki.env).transport)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "every caller may call every RPC" in warnings[0].getMessage()


def test_empty_files_are_refused(pki: Pki, tmp_path: Path) -> None:
    """An empty certificate file and an empty CA bundle are problems, not a server that trusts nothing."""
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    message = refused(
        {**pki.env, "SESAME_TLS_CERT_FILE": str(empty), "SESAME_TLS_CLIENT_CA_FILE": str(empty)}
    )
    assert "SESAME_TLS_CERT_FILE holds no PEM certificate" in message
    assert "SESAME_TLS_CLIENT_CA_FILE holds no PEM certificate" in message


def test_tls_without_client_certificates_is_allowed_in_development(pki: Pki) -> None:
    """Certificate and key alone give a TLS port that asks callers for nothing (development only)."""
    env = {"SESAME_TLS_CERT_FILE": str(pki.server.cert), "SESAME_TLS_KEY_FILE": str(pki.server.key)}
    tls = Settings.from_env(env).transport.tls
    assert tls is not None
    assert tls.client_ca is None
    assert "SESAME_TLS_CLIENT_CA_FILE" in refused({**env, "SESAME_ENV": "production"})


@pytest.mark.parametrize(
    "address", ["0.0.0.0:50051", "[::]:50051", "192.0.2.10:50051", "sesame.internal:50051"]
)
def test_a_port_open_to_every_caller_beyond_loopback_is_refused(address: str) -> None:
    """Outside production, a gRPC port without a caller policy must listen on loopback: a wildcard, another
    host's address or a name that may resolve anywhere is a boot error naming the way out (decision 0082)."""
    message = refused({"SESAME_GRPC_ADDR": address})
    assert f"SESAME_GRPC_ADDR {address} may be reached from other hosts" in message
    assert "SESAME_OPEN_BEYOND_LOOPBACK=1" in message


@pytest.mark.parametrize("address", ["127.0.0.1:50051", "127.0.0.2:0", "[::1]:50051", "localhost:50051"])
def test_a_loopback_port_needs_no_policy(address: str) -> None:
    """127.0.0.0/8, ::1 and localhost: reached from this host only, served open as before."""
    assert Settings.from_env({"SESAME_GRPC_ADDR": address}).transport.policy is None


def test_an_open_port_beyond_loopback_is_served_when_asked_for() -> None:
    """SESAME_OPEN_BEYOND_LOOPBACK=1 (the image's setting: its port is published on purpose) accepts it."""
    settings = Settings.from_env({"SESAME_GRPC_ADDR": "0.0.0.0:50051", "SESAME_OPEN_BEYOND_LOOPBACK": "1"})
    assert settings.grpc_addr == "0.0.0.0:50051"


def test_a_port_beyond_loopback_with_mtls_and_a_policy_needs_no_opt_in(pki: Pki) -> None:
    """With mTLS and a caller policy, callers are named and limited: any address is served."""
    settings = Settings.from_env({**pki.env, "SESAME_GRPC_ADDR": "0.0.0.0:50051"})
    assert settings.transport.policy is not None
