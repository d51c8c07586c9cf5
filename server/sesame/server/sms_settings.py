"""The SMS settings: which providers in which order, Kannel's sendsms account, the delivery-report
listener, the SMPP account."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from sesame.server.env_reader import EnvReader

PROVIDERS: Final = ("console", "kannel", "smpp")
DEFAULT_DLR_ADDR: Final = "127.0.0.1:9465"
# An alphanumeric sender id (TP-OA): at most 11 characters, and operators accept letters, digits, spaces.
_SENDER: Final = re.compile(r"[A-Za-z0-9 ]{1,11}")
# Kannel expands `%` escapes in a dlr-url: a token that needs no percent-encoding stays intact. 32 chars
# at least (`secrets.token_urlsafe(32)` gives 43).
_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{32,256}")
# Not a place to call back: a listener there needs SESAME_DLR_PUBLIC_URL.
_ALL_INTERFACES: Final = ("0.0.0.0", "::", "[::]", "")  # noqa: S104 (compared, not bound)


@dataclass(frozen=True, slots=True)
class KannelSettings:
    """Kannel's sendsms interface; the password never appears in repr or logs."""

    url: str
    username: str
    password: str = field(repr=False)
    sender: str
    timeout: float


@dataclass(frozen=True, slots=True)
class DlrSettings:
    """Where delivery reports are received, the URL Kannel is told to call, and the shared token."""

    address: str  # host:port to listen on
    public_url: str | None  # None: http://<address>, with the port actually bound
    token: str = field(repr=False)
    # Connections to the listener open at once (a worker's descriptors; Kannel needs few at once): the one
    # beyond is closed as it is accepted. Counted out of the descriptors left to gRPC connections.
    max_connections: int = 128


def read_providers(reader: EnvReader) -> tuple[str, ...]:
    """SESAME_SMS_PROVIDERS in failover order; SESAME_SMS_GATEWAY (one name) is its older spelling."""
    listed = reader.optional(
        "SESAME_SMS_PROVIDERS", "console (in failover order, among console, kannel, smpp)"
    )
    single = reader.optional("SESAME_SMS_GATEWAY", "unset (the older name of SESAME_SMS_PROVIDERS)")
    if listed is not None and single is not None:
        reader.problems.append("give SESAME_SMS_PROVIDERS or SESAME_SMS_GATEWAY (its older name), not both")
    names = tuple(name.strip() for name in (listed or single or "console").split(","))
    unknown = [name for name in names if name not in PROVIDERS]
    if unknown or len(set(names)) != len(names):
        reader.problems.append(
            f"SESAME_SMS_PROVIDERS must list distinct providers among {', '.join(PROVIDERS)}, "
            f"comma-separated, not {listed or single!r}"
        )
    return names


def read_sender(reader: EnvReader, bank_name: str) -> str:
    """The alphanumeric sender id: SESAME_SMS_SENDER, else the bank's name when it can be one."""
    sender = reader.optional("SESAME_SMS_SENDER", "unset: SESAME_BANK_NAME")
    if sender is None and not _SENDER.fullmatch(bank_name):
        reader.problems.append("SESAME_SMS_SENDER is required: SESAME_BANK_NAME is no alphanumeric sender id")
        return ""
    return reader.matching(
        "SESAME_SMS_SENDER", sender or bank_name, _SENDER, "1 to 11 letters, digits or spaces"
    )


def read_kannel(reader: EnvReader, bank_name: str) -> KannelSettings:
    """Kannel's settings; every missing one is a problem."""
    url = reader.url("SESAME_KANNEL_URL")
    if url is None:
        reader.problems.append("SESAME_KANNEL_URL is required with the kannel SMS provider")
    username = reader.optional("SESAME_KANNEL_USERNAME")
    if username is None:
        reader.problems.append("SESAME_KANNEL_USERNAME is required with the kannel SMS provider")
    password = reader.secret("SESAME_KANNEL_PASSWORD")
    return KannelSettings(
        url=url or "",
        username=username or "",
        password=password,
        sender=read_sender(reader, bank_name),
        timeout=float(reader.integer("SESAME_KANNEL_TIMEOUT_SECONDS", 5, 1, 30)),
    )


def read_dlr(reader: EnvReader) -> DlrSettings | None:
    """The delivery-report listener, or None when SESAME_DLR_ADDR is `off`."""
    address = reader.optional_address("SESAME_DLR_ADDR", DEFAULT_DLR_ADDR)
    if address is None:
        return None
    public_url = reader.url("SESAME_DLR_PUBLIC_URL", "unset: http://<SESAME_DLR_ADDR>")
    if public_url is None and address.rpartition(":")[0] in _ALL_INTERFACES:
        reader.problems.append(
            "SESAME_DLR_PUBLIC_URL is required when SESAME_DLR_ADDR listens on every interface"
        )
    token = reader.secret("SESAME_DLR_TOKEN")  # a blank token file is a problem of its own (decision 0080)
    if token:
        reader.matching("SESAME_DLR_TOKEN", token, _TOKEN, "32 to 256 characters among A-Z a-z 0-9 _ -")
    return DlrSettings(address=address, public_url=public_url, token=token)


@dataclass(frozen=True, slots=True)
class ReliabilitySettings:
    """How often a provider is asked again, how far apart, and when its circuit breaker opens (0030)."""

    retries: int = 2  # further attempts at one provider after a failure before it took the message
    backoff_seconds: float = 0.2  # the first retry's longest wait (jittered), doubling each time
    breaker_failures: int = 5  # provider faults in a row that open its breaker
    breaker_open_seconds: float = 30.0  # how long an open breaker skips its provider before a trial


def read_reliability(reader: EnvReader) -> ReliabilitySettings:
    """The retry and circuit-breaker settings every provider gets."""
    return ReliabilitySettings(
        retries=reader.integer("SESAME_SMS_RETRIES", 2, 0, 5),
        backoff_seconds=reader.integer("SESAME_SMS_RETRY_BACKOFF_MS", 200, 1, 10_000) / 1000,
        breaker_failures=reader.integer("SESAME_SMS_BREAKER_FAILURES", 5, 1, 1000),
        breaker_open_seconds=float(reader.integer("SESAME_SMS_BREAKER_OPEN_SECONDS", 30, 1, 3600)),
    )
