"""How callers reach Sésame: TLS on the gRPC port, client certificates, the caller policy, the probe port.

The files are read at boot and never again: new certificates or a new policy take a restart (rolling,
replica by replica). What gRPC would only discover at bind time or at the first handshake (a key that is
not the certificate's, an encrypted key, a CA file with no CA in it) is a boot problem instead, listed
with the others. The standard library's OpenSSL binding does the checks: no dependency of its own.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

from sesame.server.env_reader import EnvReader, read_setting_file
from sesame.server.grpc.policy import CallerPolicy, InvalidPolicy, parse_policy

_CERT, _KEY, _CLIENT_CA = "SESAME_TLS_CERT_FILE", "SESAME_TLS_KEY_FILE", "SESAME_TLS_CLIENT_CA_FILE"
_POLICY = "SESAME_AUTHZ_POLICY_FILE"


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """The server's PEM chain and key; with a client CA bundle, client certificates are required."""

    cert_chain: bytes
    private_key: bytes = field(repr=False)
    client_ca: bytes | None  # None: TLS only, callers are not identified


@dataclass(frozen=True, slots=True)
class TransportSettings:
    """TLS (None: plaintext), the caller policy (None: every caller may call every RPC), the probe port."""

    tls: TlsSettings | None = None
    policy: CallerPolicy | None = None
    health_addr: str | None = None  # a plaintext listener serving only grpc.health.v1


PLAINTEXT = TransportSettings()


def read_transport(reader: EnvReader) -> TransportSettings:
    """The transport settings; each bad or inconsistent one is a problem of `reader`."""
    tls = _tls(reader)
    policy = _policy(reader)
    if policy is not None and (tls is None or tls.client_ca is None):
        reader.problems.append(
            f"{_POLICY} needs {_CLIENT_CA}: without client certificates callers have no name"
        )
    # One port for it and the gRPC port is refused with the other listeners' (config._ports_shared).
    health_addr = reader.optional_address("SESAME_HEALTH_ADDR", "off")
    return TransportSettings(tls=tls, policy=policy, health_addr=health_addr)


def production_problems(transport: TransportSettings) -> list[str]:
    """What production refuses: a plaintext port, callers without certificates, no caller policy."""
    problems = []
    if transport.tls is None:
        problems.append(f"{_CERT} and {_KEY} are required in production (the gRPC port must be TLS)")
    if transport.tls is None or transport.tls.client_ca is None:
        problems.append(f"{_CLIENT_CA} is required in production (callers must present certificates)")
    if transport.policy is None:
        problems.append(f"{_POLICY} is required in production (which caller may call which RPC)")
    return problems


def _tls(reader: EnvReader) -> TlsSettings | None:
    cert_path, key_path = reader.optional(_CERT, "unset: plaintext"), reader.optional(_KEY)
    ca_path = reader.optional(_CLIENT_CA)
    if cert_path is None or key_path is None:
        if cert_path is not None or key_path is not None:
            reader.problems.append(f"{_CERT} and {_KEY} go together")
        elif ca_path is not None:
            reader.problems.append(f"{_CLIENT_CA} needs {_CERT} and {_KEY} (the server's own certificate)")
        return None
    cert, key = _read(reader, _CERT, cert_path), _read(reader, _KEY, key_path)
    if cert is not None and key is not None and _holds_certificates(reader, _CERT, cert):
        _check_key(reader, cert_path, key_path)
    client_ca = None if ca_path is None else _read(reader, _CLIENT_CA, ca_path)
    if client_ca is not None and _holds_certificates(reader, _CLIENT_CA, client_ca) and not _cas(client_ca):
        reader.problems.append(f"{_CLIENT_CA} holds no CA certificate (basicConstraints CA:TRUE)")
    # An unreadable file is already a problem: the placeholder never reaches a listener.
    return TlsSettings(cert_chain=cert or b"", private_key=key or b"", client_ca=client_ca)


def _read(reader: EnvReader, name: str, path: str) -> bytes | None:
    """The file's bytes; None (and a problem) when it cannot be read."""
    try:
        return read_setting_file(path)
    except OSError as exc:
        reader.problems.append(f"{name} cannot be read ({exc.strerror})")
        return None


def _encrypted_key() -> str:
    # Called by OpenSSL only for an encrypted key: gRPC cannot use one, and nobody is there to type it.
    raise ValueError


def _holds_certificates(reader: EnvReader, name: str, pem: bytes) -> bool:
    if _stats(pem).get("x509"):
        return True
    reader.problems.append(f"{name} holds no PEM certificate")
    return False


def _cas(pem: bytes) -> int:
    return _stats(pem).get("x509_ca", 0)


def _stats(pem: bytes) -> dict[str, int]:
    """How many certificates (`x509`) and CA certificates (`x509_ca`) `pem` holds; empty if it is no PEM."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cadata=pem.decode("ascii"))
    except (UnicodeDecodeError, ValueError, ssl.SSLError):
        return {}
    return context.cert_store_stats()


def _check_key(reader: EnvReader, cert_path: str, key_path: str) -> None:
    """The key is an unencrypted PEM key, the key of the chain's first certificate (OpenSSL reads both)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_path, key_path, password=_encrypted_key)
    except ValueError:
        reader.problems.append(f"{_KEY} is encrypted: give an unencrypted PEM key (protect the file)")
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            reader.problems.append(f"{_KEY} is not the key of the certificate in {_CERT}")
        else:
            reader.problems.append(f"{_KEY} holds no PEM private key usable with {_CERT}")


def _policy(reader: EnvReader) -> CallerPolicy | None:
    path = reader.optional(_POLICY)
    if path is None:
        return None
    try:
        return parse_policy(read_setting_file(path).decode("utf-8"))
    except OSError as exc:
        reader.problems.append(f"{_POLICY} cannot be read ({exc.strerror})")
    except UnicodeDecodeError:
        reader.problems.append(f"{_POLICY} is not UTF-8 text")
    except InvalidPolicy as invalid:
        reader.problems.extend(f"{_POLICY}: {problem}" for problem in invalid.problems)
    return None
