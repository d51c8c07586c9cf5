"""Settings from the environment (`SESAME_` prefix), validated at boot with every problem listed at once."""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import itertools
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from sesame.clients.redis_connect import reach as redis_reach
from sesame.clients.redis_keys import FEED_RESIDUES, SHARDS
from sesame.server.dispatch_loop import DispatchSettings, read_dispatch
from sesame.server.domain.budgets import SendBudget
from sesame.server.domain.challenges import ChallengePolicy
from sesame.server.domain.destinations import DEFAULT_COUNTRIES, unknown_regions
from sesame.server.domain.errors import ConfigurationError, RedisUrlUnusable
from sesame.server.domain.lifecycle import LifecyclePolicy
from sesame.server.domain.model import LockoutPolicy
from sesame.server.domain.noops import NoopLimits
from sesame.server.domain.proofs import FIRST_PAGES_AT_ONCE, MAX_SEALED_LEAVES
from sesame.server.env_reader import EnvReader
from sesame.server.risk_settings import RiskSettings, read_risk
from sesame.server.smpp_settings import SmppSettings, read_smpp
from sesame.server.sms_settings import (
    DlrSettings,
    KannelSettings,
    ReliabilitySettings,
    read_dlr,
    read_kannel,
    read_providers,
    read_reliability,
)
from sesame.server.sms_template_settings import read_sms_templates
from sesame.server.telemetry_settings import TelemetrySettings, read_telemetry
from sesame.server.transport_settings import TransportSettings, production_problems, read_transport

ENVIRONMENTS = ("development", "production")
# A default under SESAME_VAR_DIR, as `sesame serve --help` shows it (the path itself follows that setting).
_UNDER_VAR_DIR = "<SESAME_VAR_DIR>/{}"
MAX_WORKERS: Final = 64


def cores() -> int:
    """The cores this process may run on (a container's CPU set, not the host's count): one worker each."""
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True, slots=True)
class HsmSettings:
    """A PKCS#11 token given by the operator; the PIN never appears in repr or logs."""

    module: str
    token_label: str
    pin: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything `sesame serve` needs; `None` for Redis or the HSM means the embedded default."""

    environment: str
    grpc_addr: str
    var_dir: Path
    redis_url: str | None
    hsm: HsmSettings | None
    sms_providers: tuple[str, ...]  # from sms_settings.PROVIDERS, in failover order
    sms_console_file: Path
    kannel: KannelSettings | None  # set with the kannel provider
    dlr: DlrSettings | None  # the delivery-report listener: kannel only, unless SESAME_DLR_ADDR=off
    smpp: SmppSettings | None  # set with the smpp provider
    policy: ChallengePolicy
    lifecycle: LifecyclePolicy  # the cooling period after a change of the secure number
    retention: timedelta
    shutdown_grace: float
    health_interval: float
    metrics_addr: str | None  # None: no /metrics endpoint
    transport: TransportSettings  # TLS, client certificates, caller policy, probe listener
    # Boot on a token that lost keys Redis saw, making new ones above every version seen (decision 0015).
    keys_start_afresh: bool = False
    # Make keys without CKA_COPYABLE false: an HSM older than PKCS#11 2.40 refuses it (decision 0079).
    hsm_omit_copyable: bool = False
    # Seconds between reads of the newest keys on the token: a rotation is taken up within them.
    hsm_key_reread: float = 60.0  # sesame.hsm.pkcs11.CURRENT_KEY_TTL_SECONDS
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)  # logs and traces
    workers: int = 1  # worker processes sharing the gRPC port (docs/decisions/0021)
    worker_hang: float = 30.0  # a worker whose loop gave no sign of life this long is replaced (0138)
    max_concurrent_rpcs: int = 100  # per worker; calls beyond it are shed with UNAVAILABLE, not queued
    max_connections: int = 1000  # per worker and listener; a connection beyond it is closed at accept (0055)
    # A connection that has not finished its TLS and HTTP/2 handshake by then is closed (decision 0057).
    handshake_timeout: float = 5.0
    # A connection takes new calls this long, then its calls have the grace to finish (decision 0067).
    connection_age: float = 300.0
    connection_age_grace: float = 30.0
    # Callers may ping this often, with or without calls; the server pings a silent caller after `keepalive`
    # and closes the connection when no answer comes within `keepalive_timeout` (decision 0081).
    min_client_ping_interval: float = 10.0
    keepalive: float = 60.0
    keepalive_timeout: float = 20.0
    # How long the journal's seals are kept (CMF L.133-24: 13 months; docs/decisions/0027).
    evidence_retention: timedelta = timedelta(days=396)
    # The journal entries (leaves) the seals of a user's evidence page may hold (decision 0145).
    evidence_max_leaves: int = MAX_SEALED_LEAVES
    # The first pages of users' evidence a worker gathers at once; one more is shed (decision 0146).
    evidence_reads_at_once: int = FIRST_PAGES_AT_ONCE
    journal_archive_dir: Path = Path("var/journal")  # the archive's segment files (decision 0027)
    dispatch: DispatchSettings = field(default_factory=DispatchSettings)  # the SMS outbox (decision 0025)
    sms_reliability: ReliabilitySettings = field(default_factory=ReliabilitySettings)  # retries, breakers
    risk: RiskSettings = field(default_factory=RiskSettings)  # rules, memory, SIM-swap API (docs/risk.md)
    # The places Redis keys are spread over, fixed for a deployment's life: checked at start (decision 0058).
    redis_shards: int = SHARDS
    noops: NoopLimits = field(default_factory=NoopLimits)  # back-office no-ops' bounds (decision 0058)
    # The links to other hosts production reaches in clear because SESAME_PRIVATE_NETWORK=1 says the network
    # is protected: each said at boot (decision 0166), so that one added later is not accepted unseen.
    clear_links: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | EnvReader | None = None) -> Settings:
        """Read and check the settings; ConfigurationError names every bad or missing one."""
        reader = env if isinstance(env, EnvReader) else EnvReader(os.environ if env is None else env)
        var_dir = Path(reader.text("SESAME_VAR_DIR", "var"))
        policy = ChallengePolicy(
            digits=reader.integer("SESAME_CODE_DIGITS", 6, 6, 8),
            lifetime=timedelta(seconds=reader.integer("SESAME_CODE_TTL_SECONDS", 300, 30, 600)),
            max_attempts=reader.integer("SESAME_MAX_ATTEMPTS", 3, 1, 5),
            max_resends=reader.integer("SESAME_MAX_RESENDS", 3, 0, 5),
            resend_spacing=timedelta(seconds=reader.integer("SESAME_RESEND_SPACING_SECONDS", 30, 0, 300)),
            first_factor_max_age=timedelta(
                seconds=reader.integer("SESAME_FIRST_FACTOR_MAX_AGE_SECONDS", 3600, 60, 86400)
            ),
            lockout=_lockout(reader),
            bank_name=_bank_name(reader),
            send_budget=_send_budget(reader),
            countries=_countries(reader),
        )
        policy = dataclasses.replace(policy, sms_templates=read_sms_templates(reader, policy))
        providers = read_providers(reader)
        grpc_addr = reader.address("SESAME_GRPC_ADDR", "127.0.0.1:50051")
        # A blank SESAME_ENV (a ConfigMap's `SESAME_ENV: ""` over the image's production) booted in
        # development, every production check off, without a word (an outside audit): refused.
        environment = reader.choice("SESAME_ENV", "development", ENVIRONMENTS, blank_is_default=False)
        settings = cls(
            environment=environment,
            grpc_addr=grpc_addr,
            var_dir=var_dir,
            redis_url=_redis_url(reader),
            hsm=_hsm(reader),
            sms_providers=providers,
            sms_console_file=Path(
                reader.text(
                    "SESAME_SMS_CONSOLE_FILE", str(var_dir / "sms.jsonl"), _UNDER_VAR_DIR.format("sms.jsonl")
                )
            ),
            kannel=read_kannel(reader, policy.bank_name) if "kannel" in providers else None,
            dlr=read_dlr(reader) if "kannel" in providers else None,
            smpp=read_smpp(reader, policy.bank_name) if "smpp" in providers else None,
            policy=policy,
            lifecycle=LifecyclePolicy(
                # 0 turns the refusal off (the bank's risk rules still see cooling_until); at most 30 days.
                cooling=timedelta(
                    seconds=reader.integer("SESAME_PHONE_CHANGE_COOLING_SECONDS", 72 * 3600, 0, 30 * 86400)
                ),
                bank_name=policy.bank_name,
                countries=policy.countries,
                sms_templates=policy.sms_templates,
            ),
            retention=timedelta(
                seconds=reader.integer("SESAME_CHALLENGE_RETENTION_SECONDS", 86400, 0, 10**8)
            ),
            journal_archive_dir=Path(
                reader.directory(
                    "SESAME_JOURNAL_ARCHIVE_DIR", str(var_dir / "journal"), _UNDER_VAR_DIR.format("journal")
                )
            ),
            evidence_retention=timedelta(
                days=reader.integer("SESAME_EVIDENCE_RETENTION_DAYS", 396, 1, 36500)
            ),
            evidence_max_leaves=reader.integer("SESAME_EVIDENCE_MAX_LEAVES", MAX_SEALED_LEAVES, 1000, 10**8),
            evidence_reads_at_once=reader.integer(
                "SESAME_EVIDENCE_READS_AT_ONCE", FIRST_PAGES_AT_ONCE, 1, 64
            ),
            shutdown_grace=float(reader.integer("SESAME_SHUTDOWN_GRACE_SECONDS", 10, 0, 300)),
            health_interval=float(reader.integer("SESAME_HEALTH_INTERVAL_SECONDS", 1, 1, 60)),
            metrics_addr=reader.optional_address("SESAME_METRICS_ADDR", "127.0.0.1:9464"),
            transport=read_transport(reader),
            keys_start_afresh=reader.choice("SESAME_KEYS_START_AFRESH", "0", ("0", "1")) == "1",
            hsm_omit_copyable=reader.choice("SESAME_HSM_OMIT_COPYABLE", "0", ("0", "1")) == "1",
            hsm_key_reread=float(reader.integer("SESAME_HSM_KEY_REREAD_SECONDS", 60, 1, 3600)),
            telemetry=read_telemetry(reader, environment),
            workers=reader.integer("SESAME_WORKERS", cores(), 1, MAX_WORKERS),
            worker_hang=float(reader.integer("SESAME_WORKER_HANG_SECONDS", 30, 5, 600)),
            max_concurrent_rpcs=reader.integer("SESAME_MAX_CONCURRENT_RPCS", 100, 1, 100_000),
            max_connections=reader.integer("SESAME_MAX_CONNECTIONS", 1000, 1, 1_000_000),
            handshake_timeout=float(reader.integer("SESAME_HANDSHAKE_TIMEOUT_SECONDS", 5, 1, 120)),
            connection_age=float(reader.integer("SESAME_MAX_CONNECTION_AGE_SECONDS", 300, 1, 86400)),
            connection_age_grace=float(
                reader.integer("SESAME_MAX_CONNECTION_AGE_GRACE_SECONDS", 30, 1, 3600)
            ),
            min_client_ping_interval=float(
                reader.integer("SESAME_MIN_CLIENT_PING_INTERVAL_SECONDS", 10, 1, 7200)
            ),
            keepalive=float(reader.integer("SESAME_KEEPALIVE_SECONDS", 60, 10, 7200)),
            keepalive_timeout=float(reader.integer("SESAME_KEEPALIVE_TIMEOUT_SECONDS", 20, 1, 600)),
            dispatch=read_dispatch(reader),
            sms_reliability=read_reliability(reader),
            risk=read_risk(reader),
            redis_shards=reader.integer("SESAME_REDIS_SHARDS", SHARDS, 1, FEED_RESIDUES),
            noops=_noops(reader),
        )
        reader.problems.extend(_ports_shared(settings))
        open_beyond_loopback = reader.choice("SESAME_OPEN_BEYOND_LOOPBACK", "0", ("0", "1")) == "1"
        private_network = reader.choice("SESAME_PRIVATE_NETWORK", "0", ("0", "1")) == "1"
        if settings.environment == "production":
            _production(settings, reader.problems)
            in_clear = _links_in_clear(settings)
            if private_network:
                settings = dataclasses.replace(settings, clear_links=in_clear)
            elif in_clear:
                reader.problems.append(_refusal(in_clear))
        elif not open_beyond_loopback:
            _development_port(settings, reader.problems)
        if reader.problems:
            # Each problem once: a setting two providers read (the sender of kannel and smpp) is one mistake.
            problems = dict.fromkeys(reader.problems)
            raise ConfigurationError("invalid settings:\n  - " + "\n  - ".join(problems))
        return settings

    @property
    def sms_gateway(self) -> str:
        """The providers as the settings spell them, for the boot log (`kannel`, `smpp,console`)."""
        return ",".join(self.sms_providers)


def _ports_shared(settings: Settings) -> list[str]:
    """Two listeners given one port on one interface (or every interface): the second failed to bind at
    boot, its error naming SESAME_GRPC_ADDR whichever it was (an outside audit: SESAME_METRICS_ADDR on the
    gRPC port). Port 0 picks a free one: never shared. A host is compared by the addresses it names
    (`localhost` and `127.0.0.1` are one interface), a port by its number (`09464` is 9464)."""
    listeners = {
        "SESAME_GRPC_ADDR": settings.grpc_addr,
        "SESAME_HEALTH_ADDR": settings.transport.health_addr,
        "SESAME_METRICS_ADDR": settings.metrics_addr,
        "SESAME_DLR_ADDR": settings.dlr.address if settings.dlr is not None else None,
    }
    bound = [(name, *_listened(address)) for name, address in listeners.items() if address]
    return [
        f"{first} and {second} name the same port {port}: give each its own"
        for (first, host, port), (second, other, same) in itertools.combinations(bound, 2)
        if port == same and port != 0 and (not host or not other or host & other)
    ]


def _listened(address: str) -> tuple[frozenset[str], int | str]:
    """The addresses a listener's `host:port` binds (none: every interface) and its port, a number when it is
    one (what is not is another setting's error). Each address as one spelling: `[::0]`, `0` and `0.0.0.0`
    are every interface, `::ffff:127.0.0.1` is `127.0.0.1` (an outside audit found them compared as
    written)."""
    host, _, port = address.rpartition(":")
    bare = host.removeprefix("[").removesuffix("]")
    number = int(port) if port.isascii() and port.isdigit() else port
    if not bare:
        return frozenset(), number
    try:
        found = [ipaddress.ip_address(bare)]
    except ValueError:  # a name (or a short form, `0`): what it resolves to here, as the listener will bind
        try:
            infos = socket.getaddrinfo(bare, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return frozenset({bare}), number
        found = [ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos]
    if any(ip.is_unspecified for ip in found):
        return frozenset(), number
    return frozenset(str(getattr(ip, "ipv4_mapped", None) or ip) for ip in found), number


def _bank_name(reader: EnvReader) -> str:
    """The name every SMS starts with: printable, on one line (a line break in it was in every SMS, an
    outside audit's)."""
    name = reader.text("SESAME_BANK_NAME", "MaBanque")
    if not name.isprintable():
        reader.problems.append("SESAME_BANK_NAME must be printable text on one line")
    return name


def _lockout(reader: EnvReader) -> LockoutPolicy:
    first = reader.integer("SESAME_LOCKOUT_SECONDS", 900, 60, 86400)
    longest = reader.integer("SESAME_LOCKOUT_MAX_SECONDS", 86400, 60, 7 * 86400)
    if longest < first:
        reader.problems.append("SESAME_LOCKOUT_MAX_SECONDS must not be shorter than SESAME_LOCKOUT_SECONDS")
    return LockoutPolicy(
        # RTS Art. 4(3)(b): a block comes after at most five consecutive failures.
        max_failures=reader.integer("SESAME_LOCKOUT_FAILURES", 5, 1, 5),
        first_block=timedelta(seconds=first),
        longest_block=timedelta(seconds=longest),
    )


def _send_budget(reader: EnvReader) -> SendBudget:
    """SMS per user and per number in a rolling window; per calling service and over all in another
    (anti-pumping, docs/decisions/0011, 0014)."""
    return SendBudget(
        per_user=reader.integer("SESAME_SEND_BUDGET_USER", 10, 1, 1_000_000),
        per_phone=reader.integer("SESAME_SEND_BUDGET_PHONE", 10, 1, 1_000_000),
        window=timedelta(seconds=reader.integer("SESAME_SEND_BUDGET_WINDOW_SECONDS", 3600, 60, 7 * 86400)),
        per_caller=reader.integer("SESAME_SEND_CEILING_CALLER", 3000, 1, 10_000_000),
        overall=reader.integer("SESAME_SEND_CEILING_GLOBAL", 6000, 1, 10_000_000),
        ceiling_window=timedelta(seconds=reader.integer("SESAME_SEND_CEILING_WINDOW_SECONDS", 60, 1, 86400)),
        hold_grace=timedelta(seconds=reader.integer("SESAME_SEND_HOLD_GRACE_SECONDS", 10, 1, 600)),
    )


def _noops(reader: EnvReader) -> NoopLimits:
    """How far back-office calls that change nothing may grow Redis (decisions 0054, 0058)."""
    return NoopLimits(
        journaled_per_hour=reader.integer("SESAME_NOOPS_JOURNALED_PER_HOUR", 20, 1, 10_000),
        ids_kept=reader.integer("SESAME_NOOP_IDS_KEPT", 64, 1, 100_000),
        ids_for=timedelta(seconds=reader.integer("SESAME_NOOP_IDS_KEPT_SECONDS", 86400, 60, 30 * 86400)),
    )


def _countries(reader: EnvReader) -> frozenset[str]:
    """The destination countries, comma-separated ISO 3166-1 alpha-2 codes (default: the EEA and more)."""
    raw = reader.optional("SESAME_SMS_COUNTRIES", "unset: EU/EEA, French overseas, MC")
    if raw is None:
        return DEFAULT_COUNTRIES
    codes = frozenset(code.strip().upper() for code in raw.split(",") if code.strip())
    unknown = unknown_regions(codes)
    if not codes or unknown:
        reader.problems.append(
            "SESAME_SMS_COUNTRIES must be comma-separated ISO 3166-1 alpha-2 codes"
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
        )
    return codes


def _hsm(reader: EnvReader) -> HsmSettings | None:
    names = ("SESAME_PKCS11_MODULE", "SESAME_HSM_TOKEN", "SESAME_HSM_PIN", "SESAME_HSM_PIN_FILE")
    if all(reader.optional(name, "unset: a SoftHSM token under SESAME_VAR_DIR") is None for name in names):
        return None
    module = reader.optional("SESAME_PKCS11_MODULE")
    token = reader.optional("SESAME_HSM_TOKEN")
    pin = reader.secret("SESAME_HSM_PIN")
    if module is None or token is None:
        reader.problems.append("SESAME_PKCS11_MODULE and SESAME_HSM_TOKEN go together")
    if module is not None and not Path(module).is_file():
        reader.problems.append(f"SESAME_PKCS11_MODULE {module!r} is not a file")
    return HsmSettings(module or "", token or "", pin)


def _redis_url(reader: EnvReader) -> str | None:
    """SESAME_REDIS_URL, when it parses as a URL at all (its scheme, host and port are the client's to judge).

    `redis://[::1/0` (a bracket left open) made every command that reads Redis end in a traceback, `sesame
    keys rotate` after its ceremony: refused here, before anything is done. The parser's message never quotes
    the URL, which may hold the password.
    """
    url = reader.optional("SESAME_REDIS_URL", "unset: a redis-server child under SESAME_VAR_DIR")
    if url is not None:
        try:
            urlsplit(url)
        except ValueError as exc:
            reader.problems.append(f"SESAME_REDIS_URL cannot be read as a URL: {exc}")
    return url


def _production(settings: Settings, problems: list[str]) -> None:
    """What production refuses: the embedded Redis, the development token, codes written to a file.

    And a gRPC port without mTLS and a caller policy (RTS Art. 4(3)(c): sessions protected against capture).
    """
    if settings.redis_url is None:
        problems.append("SESAME_REDIS_URL is required in production (no embedded Redis)")
    if settings.hsm is None:
        problems.append("SESAME_PKCS11_MODULE is required in production (no dev token)")
    if "console" in settings.sms_providers:
        problems.append(
            "SESAME_SMS_PROVIDERS (or SESAME_SMS_GATEWAY) has console, which writes codes to a file: "
            "use kannel or smpp in production"
        )
    problems.extend(production_problems(settings.transport))


def _links_in_clear(settings: Settings) -> tuple[str, ...]:
    """The links to other hosts that would carry codes, or the operations they authorise, in clear: the SMS
    text (the code, the amount, the payee) to the gateway, the challenges to Redis. RTS Art. 22(1) keeps a
    code confidential in all phases, Art. 5(2) the amount and payee whole: production booted with
    `redis://` to another host, Kannel over `http://` and SMPP (no TLS here) without a word (an outside
    audit). Refused unless the network between is the bank's protected one (SESAME_PRIVATE_NETWORK=1)."""
    found = []
    if settings.redis_url is not None:
        found.extend(_redis_in_clear(settings.redis_url))
    if settings.kannel is not None:
        parts = urlsplit(settings.kannel.url)
        if parts.scheme == "http" and not _local(parts.hostname or ""):
            found.append("SESAME_KANNEL_URL (http://, not https://)")
    if settings.smpp is not None and not _local(settings.smpp.host):
        found.append("SESAME_SMPP_HOST (SMPP without TLS)")
    return tuple(found)


def _refusal(in_clear: Sequence[str]) -> str:
    return (
        f"in production no link to another host may carry codes in clear: {', '.join(in_clear)}. Reach it "
        "over TLS (rediss://, https://; for SMPP, a TLS tunnel ending on this host), or, when the network "
        "between is protected (IPsec, a mesh with mTLS, a private link), say so with SESAME_PRIVATE_NETWORK=1"
    )


def _redis_in_clear(url: str) -> list[str]:
    """The Redis link, when it reaches another host without TLS that checks the server, as the client reads
    the URL (`redis:///?host=10.9.9.9` names no host in its look; an outside audit)."""
    try:
        link = redis_reach(url)
    except RedisUrlUnusable:
        return []  # the client refuses it too: the boot stops on it, and nothing is sent
    if all(_local(host) for host in link.hosts):
        return []
    scheme = urlsplit(url).scheme.lower()
    if not link.tls:
        return [f"SESAME_REDIS_URL ({scheme}://, not rediss://)"]
    if not link.checked:
        return [f"SESAME_REDIS_URL ({scheme}:// without checking the server's certificate and name)"]
    return []


def _local(host: str) -> bool:
    """Whether `host` is this host (`localhost`, a loopback address): a link that crosses no network."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a wildcard is an address (0.0.0.0, ::); any other name may resolve anywhere
        return False


def _development_port(settings: Settings, problems: list[str]) -> None:
    """A gRPC port open to every caller (no caller policy) only where no other host reaches it.

    Without SESAME_AUTHZ_POLICY_FILE every caller may call every RPC, OverrideSecurePhone and TerminateClient
    among them, and development writes codes to a file: `SESAME_GRPC_ADDR=0.0.0.0:50051 make run` served all
    of it to the network with one WARNING (decision 0082). A container whose port is published on purpose
    says SESAME_OPEN_BEYOND_LOOPBACK=1 (the image does: its wildcard is the container's own network).
    """
    if any(problem.startswith("SESAME_GRPC_ADDR must be") for problem in problems):
        return  # not an address at all (`nohost`): that problem alone, not also "reached from other hosts"
    if settings.transport.policy is None and not _loopback(settings.grpc_addr):
        problems.append(
            f"SESAME_GRPC_ADDR {settings.grpc_addr} may be reached from other hosts, and without "
            "SESAME_AUTHZ_POLICY_FILE every caller may call every RPC: listen on a loopback address "
            "(127.0.0.1), give mTLS and a caller policy, or set SESAME_OPEN_BEYOND_LOOPBACK=1 to accept it"
        )


def _loopback(address: str) -> bool:
    """Whether `host:port` names this host only: `localhost`, or an IP literal in 127.0.0.0/8 or ::1."""
    return _local(address.rpartition(":")[0].strip("[]"))


# Turns on every part that reads settings of its own (Kannel and its delivery reports, SMPP), for
# `settings_read`.
# Every provider and the SIM-swap check on, so that the settings only they read are listed too.
_EVERY_PART: Final = {
    "SESAME_SMS_PROVIDERS": "kannel,smpp",
    "SESAME_SIM_SWAP_URL": "https://operator.invalid/sim-swap",
}


def settings_read() -> dict[str, str]:
    """Every SESAME_* variable `from_env` reads, in reading order, with its default (for `serve --help`)."""
    reader = EnvReader(_EVERY_PART)
    # Settings that depend on others are read all the same; the problems of this made-up env are ignored.
    with contextlib.suppress(ConfigurationError):
        Settings.from_env(reader)
    return reader.asked
