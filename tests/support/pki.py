"""A throwaway PKI for the transport tests: a CA, a server certificate, client certificates, a foreign CA.

Certificates are made with `cryptography` (P-256 keys: milliseconds each) into a directory of the test
session's own, as PEM files, the form Sésame reads. They are valid for a day.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

BACKOFFICE = "backoffice.mabanque.internal"
PAYMENTS = "payments.mabanque.internal"
ONLINE = "online.mabanque.internal"
STRANGER = "stranger.mabanque.internal"

# The backoffice enrols and reads users and may explore the API; payments runs challenges only; the
# stranger holds a good certificate and no entry.
POLICY = f"""
[callers."{BACKOFFICE}"]
allow = [
  "sesame.api.v1.EnrollmentService/*",
  "sesame.api.v1.AuthenticationService/GetChallenge",
  "grpc.reflection.v1alpha.ServerReflection/*",
]

[callers."{PAYMENTS}"]
allow = ["sesame.api.v1.AuthenticationService/*"]
"""


@dataclass(frozen=True, slots=True)
class Identity:
    """A PEM certificate file and the file of its private key."""

    cert: Path
    key: Path

    def credentials(self, ca: Path) -> grpc.ChannelCredentials:
        """Channel credentials presenting this identity and trusting `ca`."""
        return grpc.ssl_channel_credentials(ca.read_bytes(), self.key.read_bytes(), self.cert.read_bytes())


@dataclass(frozen=True, slots=True)
class Pki:
    """The files of the test PKI."""

    ca: Path
    server: Identity
    backoffice: Identity
    payments: Identity
    online: Identity  # the policy above does not name it; docs/examples/caller-policy.toml does
    stranger: Identity
    foreign: Identity  # names BACKOFFICE, but signed by another CA
    other_key: Path  # a key that belongs to no certificate
    policy: Path

    @property
    def env(self) -> dict[str, str]:
        """The settings of an mTLS server with the test policy."""
        return {
            "SESAME_TLS_CERT_FILE": str(self.server.cert),
            "SESAME_TLS_KEY_FILE": str(self.server.key),
            "SESAME_TLS_CLIENT_CA_FILE": str(self.ca),
            "SESAME_AUTHZ_POLICY_FILE": str(self.policy),
        }


class _Issuer:
    """A self-signed CA that signs leaf certificates into `directory`."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        constraints = x509.BasicConstraints(ca=True, path_length=0)
        self.cert = _builder(self.name, self.name, self.key).add_extension(constraints, critical=True)
        self.cert = self.cert.sign(self.key, hashes.SHA256())

    def write_ca(self, file_name: str) -> Path:
        path = self.directory / file_name
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return path

    def issue(self, stem: str, common_name: str, names: list[x509.GeneralName]) -> Identity:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        builder = _builder(subject, self.name, key).add_extension(
            x509.BasicConstraints(ca=False, path_length=None), critical=True
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        identity = Identity(self.directory / f"{stem}.pem", self.directory / f"{stem}.key")
        identity.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        identity.key.write_bytes(_key_pem(key))
        return identity


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_pki(directory: Path) -> Pki:
    """Write the test PKI into `directory`."""
    issuer = _Issuer(directory, "Sésame test CA")
    foreign = _Issuer(directory, "Someone else's CA")
    other_key = directory / "other.key"
    other_key.write_bytes(_key_pem(ec.generate_private_key(ec.SECP256R1())))
    policy = directory / "policy.toml"
    policy.write_text(POLICY)
    return Pki(
        ca=issuer.write_ca("ca.pem"),
        server=issuer.issue(
            "server",
            "sesame",
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        ),
        backoffice=issuer.issue("backoffice", "backoffice", [x509.DNSName(BACKOFFICE)]),
        payments=issuer.issue("payments", "payments", [x509.DNSName(PAYMENTS)]),
        online=issuer.issue("online", "online", [x509.DNSName(ONLINE)]),
        stranger=issuer.issue("stranger", "stranger", [x509.DNSName(STRANGER)]),
        foreign=foreign.issue("foreign", BACKOFFICE, [x509.DNSName(BACKOFFICE)]),
        other_key=other_key,
        policy=policy,
    )
