"""The grpc.aio server: our three services, health (watched), reflection, the interceptors, its listeners.

The gRPC port is plaintext or TLS (with client certificates required when a client CA is given); an
optional second, plaintext listener serves only health, for probes that hold no client certificate. Both
listeners publish the statuses of the one health servicer the watcher sets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import evidence_service_pb2_grpc as evidence_grpc
from sesame.server.domain.challenges import ChallengeFlows
from sesame.server.domain.enrollment import EnrollmentFlows
from sesame.server.domain.errors import ConfigurationError
from sesame.server.domain.log_quota import LogQuota
from sesame.server.domain.ports import Clock, Probe
from sesame.server.domain.proofs import ProofFlows
from sesame.server.grpc.calls import CallInterceptor, Gate
from sesame.server.grpc.catalogue import API_SERVICES
from sesame.server.grpc.decoding import UNDECODABLE_EVERY_SECONDS, DecodingInterceptor
from sesame.server.grpc.header_bound import MAX_METADATA_BYTES, HeaderBound
from sesame.server.grpc.health import HealthNoting, HealthWatcher
from sesame.server.grpc.health_watchers import BoundedHealthServicer
from sesame.server.grpc.metering import ListenerMeter
from sesame.server.grpc.servicers import (
    AuthenticationServicer,
    ChallengeSeals,
    EnrollmentServicer,
    EvidenceServicer,
    UserEvidenceCall,
)
from sesame.server.metrics import Metrics
from sesame.server.port_claim import ensure_free
from sesame.server.transport_settings import PLAINTEXT, TlsSettings, TransportSettings

SERVICE_NAMES = API_SERVICES

# Our largest request (a transfer with every field at its maximum) is under 2 KiB: a 64 KiB cap refuses
# oversized messages before they are parsed, instead of gRPC's default of 4 MiB.
MAX_MESSAGE_BYTES = 64 * 1024
# A call's headers (its metadata and gRPC's own, ~0.5 KiB) are refused above this size, always. gRPC's own
# limits are a soft 8 KiB and a hard 16 KiB, and between them it refuses calls at random (RESOURCE_EXHAUSTED
# "exceeds soft limit"): the same 10 KiB call answered or refused by chance (found from outside, decision
# 0092). The same bound as soft and hard limit makes it one line, the same for every call.
# gRPC applies them only once the client acknowledged our SETTINGS: `header_bound` applies the same bound to
# the calls of a client that never does, and gRPC closes its connection after SETTINGS_TIMEOUT_MS (AK1).
SETTINGS_TIMEOUT_MS = 5000  # gRPC's default: 60 s; a client acknowledges within a round trip
_METADATA_OPTIONS = (
    ("grpc.max_metadata_size", MAX_METADATA_BYTES),
    ("grpc.absolute_max_metadata_size", MAX_METADATA_BYTES),
    ("grpc.http2.settings_timeout", SETTINGS_TIMEOUT_MS),
)
# The channel options of every listener of ours.
SERVER_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    *_METADATA_OPTIONS,
    # gRPC turns SO_REUSEPORT on by default: a second server on a taken port would bind without error and
    # take half the calls. Off, the second one fails to bind and says so.
    ("grpc.so_reuseport", 0),
)
# The same, for the workers of one `sesame serve`: they share the port on purpose, the supervisor having
# claimed it for them alone (sesame.server.port_claim, docs/decisions/0021).
WORKER_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    *_METADATA_OPTIONS,
    ("grpc.so_reuseport", 1),
)
DEFAULT_MAX_CONCURRENT_RPCS = 100
# A listener grpc's loop ended is bound again up to this many times, this far apart, while the port the ended
# one held is being released (decision 0161).
REBIND_TRIES = 20
REBIND_PAUSE_SECONDS = 0.05
# What grpc logs (its message formatted already), at ERROR with a traceback, when its core cannot send an
# answer because the call ended on the caller's side (deadline, cancel, connection gone) as the answer left.
_ANSWER_TOO_LATE = re.compile(r"ExecuteBatchError raised in core by servicer method \[(.*)\]")
# Each open connection holds a file descriptor and ~22 KB: without a bound, one client opening thousands of
# connections took the worker's last descriptors, and its HSM session, Redis connections and journal failed
# for every caller (decision 0055). Beyond it gRPC closes a new connection at once; the open ones go on.
DEFAULT_MAX_CONNECTIONS = 1000
# Streams open at once on one connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS; gRPC's own default is
# unbounded). A stream whose request message never comes holds ~16 KB and never reaches the shedding of calls
# in flight: 8,000 of them over 8 connections took a worker from 88 to 214 MB (decision 0055). A worker runs
# at most SESAME_MAX_CONCURRENT_RPCS (100) calls at once anyway: a client queues beyond, nothing fails.
MAX_STREAMS_PER_CONNECTION = 100
# A connection counts against the bound above from its accept, before its TLS and HTTP/2 handshake; gRPC
# gives that handshake 120 s by default, so connections that never finish it (TCP opened, TLS begun, and
# nothing more) filled the bound and kept every new caller out for two minutes at a time. Past this, gRPC
# closes a connection whose TLS handshake, HTTP/2 preface or SETTINGS has not come (decision 0057).
DEFAULT_HANDSHAKE_TIMEOUT = 5.0  # seconds
# A connection lives this long (gRPC adds +-10 % jitter), then gRPC sends GOAWAY: the caller's channel opens
# a new one for its next calls, which SO_REUSEPORT may hand to another worker, and the calls still in flight
# have the grace to finish before the connection closes. Without it a caller's connections stayed on the
# worker that took them for good (a restarted worker got none back; a caller with one connection used one
# core), and a stream whose request never came lived as long as its caller's deadline, maybe forever
# (decision 0067).
DEFAULT_CONNECTION_AGE = 300.0  # seconds
DEFAULT_CONNECTION_AGE_GRACE = 30.0  # seconds
# Callers' keepalive pings are taken this often, with or without calls in flight. gRPC's server default
# counts a ping within 5 minutes of the last one (2 hours without a call) as a strike and answers the third
# with GOAWAY ENHANCE_YOUR_CALM "too_many_pings": a Go or Java service that pings every 10-30 s, as services
# behind load balancers and NATs do, lost its connection every 30 s, its Health Watch streams and any call in
# flight with it (UNAVAILABLE "Too many pings"; decision 0081). 10 s is grpc-go's and grpc-java's shortest.
# Faster pings are still strikes (2 tolerated).
DEFAULT_MIN_CLIENT_PING_INTERVAL = 10.0  # seconds
# The server's own pings, so that a connection whose caller vanished (host lost, a NAT's entry dropped: no
# FIN, no RST) is closed within keepalive + timeout, its slot of the connection bound and its streams freed,
# rather than at its age and grace.
DEFAULT_KEEPALIVE = 60.0  # seconds without a frame before the server pings
DEFAULT_KEEPALIVE_TIMEOUT = 20.0  # seconds the ping's answer may take before the connection is closed


@dataclass(frozen=True, slots=True)
class Serving:
    """How many calls a server takes at once (beyond: shed), how many connections it keeps open (beyond:
    closed at accept), how long one may take to finish its handshake and how long it lives, how often its
    caller may ping and how soon a silent one is pinged, and whether it shares its ports with siblings."""

    max_concurrent_rpcs: int = DEFAULT_MAX_CONCURRENT_RPCS
    reuse_port: bool = False  # True for a worker: its supervisor claimed the ports (and checked them)
    max_connections: int = DEFAULT_MAX_CONNECTIONS  # per listener
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT  # seconds from accept to the client's SETTINGS
    connection_age: float = DEFAULT_CONNECTION_AGE  # seconds a connection takes new calls
    connection_age_grace: float = DEFAULT_CONNECTION_AGE_GRACE  # seconds its calls then have to finish
    min_client_ping_interval: float = DEFAULT_MIN_CLIENT_PING_INTERVAL  # seconds; faster pings are strikes
    keepalive: float = DEFAULT_KEEPALIVE  # seconds of silence before the server pings a caller
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT  # seconds for the answer, else the connection closes

    @property
    def options(self) -> tuple[tuple[str, int], ...]:
        """The channel options of every listener of this server."""
        shared = WORKER_OPTIONS if self.reuse_port else SERVER_OPTIONS
        return (
            *shared,
            ("grpc.max_allowed_incoming_connections", self.max_connections),
            ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION),
            # gRPC's server otherwise counts against that bound the streams it has not freed yet, and refused
            # (RST_STREAM) streams a client opened within it: 780 of a burst of 1,000 calls on one connection
            # answered UNAVAILABLE (decision 0057). Off, it counts what HTTP/2 counts, as the client does.
            ("grpc.http.overload_protection", 0),
            ("grpc.server_handshake_timeout_ms", round(self.handshake_timeout * 1000)),
            ("grpc.max_connection_age_ms", round(self.connection_age * 1000)),
            ("grpc.max_connection_age_grace_ms", round(self.connection_age_grace * 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", round(self.min_client_ping_interval * 1000)),
            ("grpc.keepalive_time_ms", round(self.keepalive * 1000)),
            ("grpc.keepalive_timeout_ms", round(self.keepalive_timeout * 1000)),
            # gRPC 1.85 closes on an unanswered ping after this one, not the above (its default: 1 minute).
            ("grpc.http2.ping_timeout_ms", round(self.keepalive_timeout * 1000)),
        )

    @property
    def health_options(self) -> tuple[tuple[str, int], ...]:
        """The channel options of the plaintext health-only listener: the above, with gRPC's overload
        protection back on (decision 0135). Without it a rapid reset there (HEADERS then RST_STREAM, again
        and again, CVE-2023-44487), from anyone who reaches the probes' port without a certificate, filled
        gRPC's queue of calls not yet taken by the server and it answered a probe's Check CANCELLED at
        random (14 of 100 in 10 s, 46 of 187 in 25 s), the worker's memory +78 MB in 10 s and kept. On, a
        stream the connection has not freed yet counts against its 100, so a reset one costs its sender a
        refused stream, not the server a queued call; a probe sends one Check at a time and never meets
        the refusal of bursts that keeps it off on the gRPC port (decision 0057)."""
        return tuple(
            (name, 1 if name == "grpc.http.overload_protection" else value) for name, value in self.options
        )


@dataclass(frozen=True, slots=True)
class Listener:
    """A started grpc.aio server and the port it bound."""

    server: grpc.aio.Server
    port: int


class GrpcServer:
    """A started server, the port it listens on (0 in the address picks a free one), its health watcher."""

    def __init__(
        self, main: _Kept, health_watcher: HealthWatcher, health_listener: _Kept | None = None
    ) -> None:
        self._main = main
        self.port = main.listener.port
        self.health = health_watcher
        self._health_listener = health_listener
        self._also: list[Callable[[], Awaitable[None]]] = []

    @property
    def server(self) -> grpc.aio.Server:
        """The grpc server of the gRPC port now (made again if grpc's loop ended it: `_Kept`)."""
        return self._main.listener.server

    @property
    def health_port(self) -> int | None:
        """The port of the plaintext health-only listener; None without one."""
        return None if self._health_listener is None else self._health_listener.listener.port

    @classmethod
    async def start(  # noqa: PLR0913 (keyword-only: the flows, what health watches and how often, the transport)
        cls,
        address: str,
        *,
        challenges: ChallengeFlows,
        enrollment: EnrollmentFlows,
        proofs: ProofFlows,
        clock: Clock,
        probes: Mapping[str, Probe],
        health_interval: float,
        metrics: Metrics,
        transport: TransportSettings = PLAINTEXT,
        advisories: Mapping[str, Callable[[], bool]] | None = None,
        serving: Serving = Serving(),
        seals: ChallengeSeals | None = None,
        user_evidence: UserEvidenceCall | None = None,
        health_notes: HealthNoting | None = None,
        gate: Gate | None = None,
    ) -> GrpcServer:
        """Bind `address` as `transport` says, register everything, start serving; health follows `probes`."""
        _GRPC_LOG.addFilter(_ANSWER_RACE)  # idempotent: a filter is added once
        _GRPC_LOG.addFilter(_UNDECODABLE_METADATA)
        _GRPC_LOG.addFilter(_LOOP_FAILED)
        logging.getLogger("asyncio").addFilter(_LOOP_FAILED)
        # One interceptor for every concern of a call (context, metering, error table, shedding, rights,
        # decoding), in one pass: decision 0039; the order of the concerns is in its docstring.
        interceptor = CallInterceptor(metrics, transport.policy, serving.max_concurrent_rpcs, gate)
        authentication = AuthenticationServicer(challenges, proofs, clock)
        enrolling = EnrollmentServicer(enrollment, clock)
        evidence = EvidenceServicer(proofs, clock, seals, user_evidence)
        health_servicer = BoundedHealthServicer()  # Watch streams bounded: health_watchers.py

        def registered() -> grpc.aio.Server:
            server = grpc.aio.server(interceptors=[interceptor], options=serving.options)
            auth_grpc.add_AuthenticationServiceServicer_to_server(authentication, server)
            enrol_grpc.add_EnrollmentServiceServicer_to_server(enrolling, server)
            evidence_grpc.add_EvidenceServiceServicer_to_server(evidence, server)
            health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
            reflection.enable_server_reflection(
                (
                    *SERVICE_NAMES,
                    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                    reflection.SERVICE_NAME,
                ),
                server,
            )
            return server

        watcher = HealthWatcher(
            health_servicer,
            ("", *SERVICE_NAMES),
            probes,
            interval=health_interval,
            advisories=advisories,
            metrics=metrics,
            notes=health_notes,
        )
        if transport.tls is not None:
            metrics.tls_certificate(transport.tls.cert_chain)
        # One round before the port opens: the first Check a balancer sends already tells the truth.
        await watcher.check_now()
        main = await _Kept.open(
            "the gRPC port",
            lambda bound: _listening(registered(), bound, "SESAME_GRPC_ADDR", transport.tls, serving),
            address,
        )
        health_listener = None
        if transport.health_addr is not None:
            health_listener = await _Kept.open(
                "the health-only port",
                lambda bound: _health_only(health_servicer, bound, serving, metrics),
                transport.health_addr,
            )
        watcher.start()
        return cls(main, watcher, health_listener)

    def also_stop(self, stop: Callable[[], Awaitable[None]]) -> None:
        """Call `stop` once the server has drained: work run beside the server (the dispatch loops)."""
        self._also.append(stop)

    async def stop(self, grace: float) -> None:
        """Drain: report NOT_SERVING, refuse new calls, let calls in flight finish within `grace`."""
        await self.health.enter_graceful_shutdown()
        await self.health.stop()
        await self._main.stop(grace)
        for stop in self._also:
            await stop()
        # Closed last: probes read NOT_SERVING for the whole drain, not a refused connection.
        if self._health_listener is not None:
            await self._health_listener.stop(0)


class _Kept:
    """A listener listening again whenever grpc's server loop ends it without a drain (decision 0161).

    grpc (1.85) decodes each call's method name as UTF-8 in its aio server's loop, outside any handler: one
    request whose `:path` is not UTF-8, from anyone who reaches the port (the health-only port takes no
    certificate), ended that loop, and the listener closed for good while the worker went on, SERVING to
    nobody (an outside audit). Its end is watched: the listener is made again on the same address, with the
    same servicers, and one ERROR line says so.
    """

    def __init__(self, name: str, make: Callable[[str], Awaitable[Listener]], address: str) -> None:
        self._name = name
        self._make = make
        self._address = address
        self._stopping = False
        self._grace: float | None = None
        self.listener: Listener
        self._watch: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, name: str, make: Callable[[str], Awaitable[Listener]], address: str) -> _Kept:
        """Listen on `address` (port 0: a free one, kept when made again) and watch the listener."""
        kept = cls(name, make, address)
        kept.listener = await make(address)
        kept._address = f"{address.rpartition(':')[0]}:{kept.listener.port}"
        kept._watch = asyncio.create_task(kept._keep(), name=f"keep {name}")
        return kept

    async def _keep(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # grpc raises the loop's own error here: said below
                await self.listener.server.wait_for_termination()
            if self._stopping:
                return
            _log.error(
                "%s stopped (grpc's server loop failed on a call it could not read): listening again",
                self._name,
            )
            try:
                self.listener = await self._again()
            except ConfigurationError as exc:  # the port taken meanwhile by another process: said, not lost
                if not self._stopping:  # a drain that came meanwhile ended the retries: nothing to say
                    _log.error("%s could not listen again: %s", self._name, exc)
                return
            if self._stopping:  # a drain came while it was made: the drain stopped the one that had ended
                await self.listener.server.stop(self._grace)
                return

    async def _again(self) -> Listener:
        """The listener made again; its port may take a moment to be free of the one that ended."""
        for _ in range(REBIND_TRIES - 1):
            with contextlib.suppress(ConfigurationError):
                return await self._make(self._address)
            if self._stopping:
                raise ConfigurationError(f"{self._address}: not listened on again, the worker is draining")
            await asyncio.sleep(REBIND_PAUSE_SECONDS)
        return await self._make(self._address)

    async def stop(self, grace: float | None) -> None:
        """Drain the listener within `grace`, then wait for its watch to end: never cancelled, so that a
        listener it was making as the drain came is stopped too (grpc's start, cancelled, may have
        started it), not left serving."""
        self._stopping, self._grace = True, grace
        await self.listener.server.stop(grace)
        if self._watch is not None:
            await self._watch


def _bind(
    server: grpc.aio.Server, address: str, setting: str, tls: TlsSettings | None, serving: Serving
) -> int:
    if not serving.reuse_port:
        # A worker's siblings hold the port already: its supervisor checked it before starting them.
        ensure_free(address, setting)
    try:
        if tls is None:
            return server.add_insecure_port(address)
        credentials = grpc.ssl_server_credentials(
            [(tls.private_key, tls.cert_chain)],
            root_certificates=tls.client_ca,
            # With a client CA, a caller without a certificate that chains to it fails the handshake.
            require_client_auth=tls.client_ca is not None,
        )
        return server.add_secure_port(address, credentials)
    # gRPC says only "Failed to bind" (a RuntimeError), after printing its own reason on stderr.
    except RuntimeError:
        raise ConfigurationError(f"cannot listen on {address} ({setting})") from None


async def _listening(
    server: grpc.aio.Server, address: str, setting: str, tls: TlsSettings | None, serving: Serving
) -> Listener:
    """`server` bound to `address` and started."""
    port = _bind(server, address, setting, tls, serving)
    await server.start()
    return Listener(server, port)


async def _health_only(
    servicer: BoundedHealthServicer, address: str, serving: Serving, metrics: Metrics
) -> Listener:
    """A plaintext listener serving only grpc.health.v1, the statuses of the gRPC port's servicer with Watch
    streams bounded apart (decision 0159), each call counted in sesame_health_listener_requests_total
    (decision 0114)."""
    server = grpc.aio.server(
        interceptors=[ListenerMeter(metrics), HeaderBound(), DecodingInterceptor()],
        options=serving.health_options,
    )
    health_pb2_grpc.add_HealthServicer_to_server(servicer.apart("the health-only port"), server)
    return await _listening(server, address, "SESAME_HEALTH_ADDR", None, serving)


class AnswerTooLate(logging.Filter):
    """grpc's ERROR, with its traceback, for an answer its core could not send because the call had ended on
    the caller's side: an INFO line naming the method, without the traceback. The call was decided and its
    state written (a retry of a Start answers the same challenge); only its answer was lost, which the caller
    saw as its own deadline or cancel. It came about once in 300 calls given deadlines of 0.3-6 ms
    (decision 0084), and an ERROR line is what an operator alerts on. Other grpc records pass unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        late = _ANSWER_TOO_LATE.fullmatch(str(record.msg)) if record.levelno == logging.ERROR else None
        if late is not None and not record.args:
            record.msg, record.args = (
                "an answer of %s was not sent: the call had ended on the caller's side",
                (late[1],),
            )
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info, record.exc_text = None, None
        return True


class UndecodableMetadata(logging.Filter):
    """grpc's ERROR, with its traceback and the bytes, for each metadata value of a call that is not UTF-8
    (HTTP/2 allows any octets; grpc passes the value on as bytes and answers the call): a WARNING once a
    minute naming neither the value nor the header, the next counting those held back. Any peer of either
    port, the health-only one included (no certificate), wrote an ERROR with a traceback per such header at
    will, and the value may be a caller's secret (an outside audit; decision 0160)."""

    def __init__(self, every: float = UNDECODABLE_EVERY_SECONDS) -> None:
        super().__init__()
        self._quota: LogQuota[None] = LogQuota(every)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.ERROR or not str(record.msg).startswith("Invalid encoding on"):
            return True
        held_back = self._quota.admit(None)
        if held_back is None:
            return False
        more = self._quota.held_back(held_back, "such calls")
        record.msg, record.args = (
            "a call's metadata held a value that is not UTF-8: passed on as bytes%s",
            (more,),
        )
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None
        return True


class ServerLoopFailed(logging.Filter):
    """Drops grpc's and asyncio's lines, each with a traceback and the caller's bytes, when grpc's aio server
    loop fails on a method name that is not UTF-8: `_Kept` says it in one ERROR line, and listens again."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, UnicodeDecodeError):
            return True
        frames = traceback.extract_tb(error.__traceback__)
        return not any(frame.filename.endswith("aio/server.pyx.pxi") for frame in frames)


_log = logging.getLogger("sesame.grpc")
_GRPC_LOG = logging.getLogger("grpc._cython.cygrpc")
_LOOP_FAILED = ServerLoopFailed()
_ANSWER_RACE = AnswerTooLate()
_UNDECODABLE_METADATA = UndecodableMetadata()
