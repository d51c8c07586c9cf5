"""Prometheus metrics: what the service does, never for whom.

Labels name RPC methods, status codes, outcomes, operation types, dependencies and gateways: never a user, a
phone number, a challenge id or a code. Cardinality stays bounded and a scrape leaks nothing.

The flows stay pure: they tell a `MetricsTally` what they decided (`sesame.server.domain.tally`); each adapter
times its own calls at its one funnel and reports them to a `DependencyMeter` (Redis: `Scripts.call`; HSM:
`Pkcs11KeyStore._call`); the gateway is still wrapped (`MeteredSmsGateway`); the gRPC layer counts calls by
status code (`sesame.server.grpc.metering`). Docs/decisions/0026.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import TypeVar, cast, get_args

from cryptography import x509
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from sesame.server.domain.budgets import BudgetKind
from sesame.server.domain.call_meter import HsmCall
from sesame.server.domain.dispatching import DEAD_LETTER_REASONS, WITHHELD_REASONS, Outcome
from sesame.server.domain.errors import (
    ConfigurationError,
    DeliveryFailed,
    DeliveryFailure,
    HsmUnavailable,
    StoreUnavailable,
)
from sesame.server.domain.lifecycle import VoidReason
from sesame.server.domain.model import (
    SentSms,
    SmsMessage,
    VerificationOutcome,
    VerifyResult,
)
from sesame.server.domain.operation import Operation, OperationType, kind
from sesame.server.domain.ports import SmsGateway
from sesame.server.domain.segments import measure
from sesame.server.domain.tally import RESEND_OUTCOMES, USER_CHANGES, Tally
from sesame.server.metrics_http import BoundedMetricsServer
from sesame.server.sms_watch import SmsWatch

T = TypeVar("T")
M = TypeVar("M", bound=MetricWrapperBase)

# From a fast HSM call (tens of µs) to a slow SMS gateway: SESAME_KANNEL_TIMEOUT_SECONDS is up to 30 s, the
# SMPP timeouts up to 60, and a failover tries each provider in turn. A last finite bucket of 5 s read every
# slower call as 5 s in histogram_quantile (decision 0112).
_LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
)

# From an SMS queued to its handing over: milliseconds with a dispatcher free, the outbox's retries and a
# backlog past them, up to the code's expiry (minutes), after which it is not handed at all (decision 0112).
_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

# A loop held 1 ms is noise (uvloop's timers are in ms); 10 ms is the p99 target of a whole RPC; seconds are a
# stuck worker, which a last bucket of 2.5 s read as 2.5 s in every quantile (decision 0112).
_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """Every metric of one running service, in its own registry (so tests can run several servers)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[MetricWrapperBase, tuple[str, ...]], MetricWrapperBase] = {}
        self.rpc_requests = Counter(
            "sesame_rpc_requests",
            "gRPC calls answered, by method and status code.",
            ["method", "code"],
            registry=self.registry,
        )
        # The plaintext health-only listener's calls (SESAME_HEALTH_ADDR), apart from the gRPC port's: any
        # peer of the probes' network may call it, and its probes would drown the API's rates (decision 0114).
        self.health_listener_requests = Counter(
            "sesame_health_listener_requests",
            "Calls answered on the health-only listener, by method (Check, Watch, List, unknown) and status"
            " code.",
            ["method", "code"],
            registry=self.registry,
        )
        self.rpc_shed = Counter(
            "sesame_rpc_shed",
            "gRPC calls shed because the worker already ran its maximum of calls at once (GetUserEvidence:"
            " or gathered its maximum of first pages), by method.",
            ["method"],
            registry=self.registry,
        )
        self.rpc_clock_refused = Counter(
            "sesame_rpc_clock_refused",
            "gRPC calls refused because this worker's clock was out of step with the state store's, by"
            " method.",
            ["method"],
            registry=self.registry,
        )
        # A gauge, so that the multiprocess scrape keeps one series per live worker (a `pid` label): how
        # the kernel spreads connections over the workers. Totals over restarts: sesame_rpc_requests_total.
        self.worker_rpcs = Gauge(
            "sesame_worker_rpcs",
            "gRPC calls answered by this worker process since it started (one series per live worker).",
            registry=self.registry,
            multiprocess_mode="liveall",
        )
        self.rpc_seconds = Histogram(
            "sesame_rpc_duration_seconds",
            "Time to answer a gRPC call, by method.",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.dependency_seconds = Histogram(
            "sesame_dependency_duration_seconds",
            "Time spent in one call to a dependency (hsm, store, sms), by call.",
            ["dependency", "call"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.dependency_failures = Counter(
            "sesame_dependency_failures",
            "Calls to a dependency that failed because it was unavailable, by call.",
            ["dependency", "call"],
            registry=self.registry,
        )
        self.challenges_opened = Counter(
            "sesame_challenges_opened",
            "Challenges opened, by operation type.",
            ["operation"],
            registry=self.registry,
        )
        self.verifications = Counter(
            "sesame_verifications",
            "Submitted codes, by outcome (verified, wrong_code, locked, operation_mismatch, ...).",
            ["result"],
            registry=self.registry,
        )
        self.resends = Counter(
            "sesame_resends",
            "Resend requests, by outcome (resent, too_soon, exhausted, closed).",
            ["outcome"],
            registry=self.registry,
        )
        self.user_blocks = Counter(
            "sesame_user_blocks",
            "Users blocked after too many wrong codes in a row (RTS Art. 4(3)(b)).",
            registry=self.registry,
        )
        self.user_changes = Counter(
            "sesame_user_changes",
            "Lifecycle changes made (not a retry, nor a change in force): suspend, reinstate, unblock,"
            " revoke, change_phone, terminate_client.",
            ["change"],
            registry=self.registry,
        )
        self.challenges_voided = Counter(
            "sesame_challenges_voided",
            "Open challenges voided by a suspension or revocation of their user, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.send_budget_refusals = Counter(
            "sesame_send_budget_refusals",
            "SMS sends refused because a send budget was spent, by subject (user, phone, caller, global).",
            ["subject"],
            registry=self.registry,
        )
        self.sms = Counter(
            "sesame_sms",
            "SMS handed to a gateway, by gateway and outcome (sent, failed).",
            ["gateway", "outcome"],
            registry=self.registry,
        )
        self.sms_failures = Counter(
            "sesame_sms_failures",
            f"SMS a gateway did not take, by gateway and reason ({', '.join(get_args(DeliveryFailure))}).",
            ["gateway", "reason"],
            registry=self.registry,
        )
        self.sms_reports = Counter(
            "sesame_sms_delivery_reports",
            "Delivery reports recorded, by provider and the state they report (sent, delivered, failed,"
            " expired): what became of the SMS after the provider took it.",
            ["provider", "state"],
            registry=self.registry,
        )
        self.sms_parts = Histogram(
            "sesame_sms_parts",
            "Parts of each SMS a gateway took, by encoding (gsm7, ucs2): what the operator bills.",
            ["encoding"],
            buckets=(1, 2, 3, 4, 5, 6, 8, 10),
            registry=self.registry,
        )
        self._outbox_metrics()
        self._sms_provider_metrics()
        self._journal_metrics()
        self._operational_gauges()
        self._zeroed()

    def _zeroed(self) -> None:
        """Every outcome the flows and the outbox can count, and each HSM call's failures, read 0 from boot.

        A series is born at its first increment, and rate() and increase() take a series' first sample as its
        start: a wrong code, a failed SMS or an HSM failure that made a series went uncounted, and a burst
        of HSM failures between two scrapes, then none, never fired SesameHsmErrors (decision 0119).
        """
        zeroed: list[tuple[Counter, tuple[str, ...]]] = [
            *((self.verifications, (result.value,)) for result in VerifyResult),
            *((self.challenges_opened, (operation.name.lower(),)) for operation in OperationType),
            *((self.resends, (outcome,)) for outcome in RESEND_OUTCOMES),
            *((self.send_budget_refusals, (subject.value,)) for subject in BudgetKind),
            *((self.user_changes, (change,)) for change in USER_CHANGES),
            *((self.challenges_voided, (reason.value,)) for reason in VoidReason),
            *((self.dispatches, (outcome.value,)) for outcome in Outcome),
            *((self.dead_letters, (reason,)) for reason in DEAD_LETTER_REASONS + WITHHELD_REASONS),
            *((self.dependency_failures, ("hsm", call)) for call in get_args(HsmCall)),
        ]
        for counter, values in zeroed:
            counter.labels(*values).inc(0)

    def zero_failures(self, dependency: str, calls: Iterable[str]) -> None:
        """Each of `calls` (a closed list: the store's scripts and reads) reads 0 failures of `dependency`
        from boot, so that its first failure is an increase an alert sees (decision 0119)."""
        for call in calls:
            self.dependency_failures.labels(dependency, call).inc(0)

    def _outbox_metrics(self) -> None:
        """The SMS outbox (docs/decisions/0025): what its dispatchers did, how long an SMS waited, and the
        backlog, which every dispatcher samples (the workers' samples are of one stream: the max is it)."""
        self.dispatches = Counter(
            "sesame_outbox_dispatches",
            "Queued SMS taken by a dispatcher, by outcome (docs/operations.md, Metrics).",
            ["outcome"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "sesame_sms_dead_letters",
            f"SMS the outbox gave up on, by reason ({', '.join(DEAD_LETTER_REASONS + WITHHELD_REASONS)}).",
            ["reason"],
            registry=self.registry,
        )
        self.sms_handed_seconds = Histogram(
            "sesame_sms_handed_seconds",
            "Time from the SMS queued (Start or Resend) to its handing to the gateway.",
            buckets=_WAIT_BUCKETS,
            registry=self.registry,
        )
        self.outbox_depth = Gauge(
            "sesame_outbox_depth",
            "SMS in the outbox not settled yet (queued or being sent).",
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.outbox_oldest_seconds = Gauge(
            "sesame_outbox_oldest_age_seconds",
            "Age of the oldest SMS in the outbox, 0 when it is empty.",
            registry=self.registry,
            multiprocess_mode="livemax",
        )

    def _sms_provider_metrics(self) -> None:
        """Each provider's attempts and circuit breaker, under the composite gateway (decision 0030)."""
        self.sms_attempts = Counter(
            "sesame_sms_provider_attempts",
            "Attempts to hand an SMS to one provider, by provider and outcome (sent, or the failure's reason;"
            " open: its circuit breaker let none go).",
            ["provider", "outcome"],
            registry=self.registry,
        )
        # The worst live worker's: each worker keeps its own breakers, one open is worth knowing.
        self.sms_breaker_state = Gauge(
            "sesame_sms_breaker_state",
            "Each provider's circuit breaker: 0 closed, 1 half-open, 2 open.",
            ["provider"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )

    def _journal_metrics(self) -> None:
        """When the journal's sealer last had everything sealed, and archived (`SealerGauges`)."""
        self.journal = SealerGauges(self.registry)

    def _operational_gauges(self) -> None:
        """What an operator alerts on besides traffic: the version, health as published, each probe."""
        # Gauges, not an Info: with several workers the scrape is prometheus_client's multiprocess collector,
        # which has no Info; each gauge says how the workers' values combine (decision 0021). Health is the
        # worst live worker's: one worker NOT_SERVING is an alert.
        Gauge(
            "sesame_build_info",
            "The version of Sésame running (always 1).",
            ["version"],
            registry=self.registry,
            multiprocess_mode="livemax",
        ).labels(_version()).set(1)
        self.health_serving = Gauge(
            "sesame_health_serving",
            '1 while health reports SERVING for the service ("": the server itself), else 0.',
            ["service"],
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        self.hsm_copyable_keys = Gauge(
            "sesame_hsm_copyable_keys",
            "Keys of Sésame's in the HSM that a PIN holder can still copy on the token (CKA_COPYABLE not"
            " false), as found at the worker's boot: rotate them (decision 0079).",
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        # Each worker's own series: the workers of a host share its clock, another host's may differ.
        self.clock_offset = Gauge(
            "sesame_clock_offset_seconds",
            "This worker's clock less the state store's (Redis TIME), as the last health round measured"
            " it; out of step beyond 30 s either way, the worker refuses every call (decision 0104).",
            registry=self.registry,
            multiprocess_mode="liveall",
        )
        self.health_probe_up = Gauge(
            "sesame_health_probe_up",
            "1 when the dependency answered the last health probe (state store, key store, clock), else 0.",
            ["probe"],
            registry=self.registry,
            multiprocess_mode="livemin",
        )

    def event_loop_metrics(self) -> Histogram:
        """How late the worker's event loop ran a timer: what every call waited behind (decision 0052)."""
        return Histogram(
            "sesame_event_loop_lag_seconds",
            "How late the event loop ran a timer due every 50 ms: how long calls waited behind other work.",
            buckets=_LAG_BUCKETS,
            registry=self.registry,
        )

    def tls_certificate(self, cert_chain: bytes) -> None:
        """Publish the expiry of the server's own certificate, the first of its PEM chain.

        The gauge is registered here, not with the others: a gauge exists from its registration (at 0), and a
        plaintext server reporting a certificate that expired in 1970 would raise the expiry alert.
        """
        certificate = x509.load_pem_x509_certificate(cert_chain)
        Gauge(
            "sesame_tls_certificate_expiry_timestamp_seconds",
            "When the gRPC port's TLS certificate expires (notAfter, Unix time); absent without TLS.",
            registry=self.registry,
            multiprocess_mode="livemin",
        ).set(certificate.not_valid_after_utc.timestamp())

    def child(self, metric: M, *values: str) -> M:
        """`metric.labels(*values)`, looked up once per worker: `labels` checks and locks at every call
        (~4 µs, decision 0049). Bounded label values only (kinds, results, call names), never free text."""
        key = (metric, values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return cast("M", found)

    async def timed(self, dependency: str, call: str, awaitable: Awaitable[T]) -> T:
        """Await a dependency call, observing its duration and counting it if the dependency failed."""
        start = time.perf_counter()
        try:
            return await awaitable
        except (HsmUnavailable, StoreUnavailable, DeliveryFailed):
            self.dependency_failures.labels(dependency, call).inc()
            raise
        finally:
            self.child(self.dependency_seconds, dependency, call).observe(time.perf_counter() - start)


def _version() -> str:
    try:
        return metadata.version("sesame-otp")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


@dataclass(frozen=True, slots=True)
class DependencyMeter:
    """Where an adapter's own funnel reports each call: the dependency histogram and failure counter."""

    metrics: Metrics
    dependency: str

    def observe(self, call: str, seconds: float) -> None:
        """Observe one call's duration (the calls are the adapters' own names: bounded)."""
        self.metrics.child(self.metrics.dependency_seconds, self.dependency, call).observe(seconds)

    def failed(self, call: str) -> None:
        """Count one call that failed because the dependency was unavailable."""
        self.metrics.dependency_failures.labels(self.dependency, call).inc()


class SealerGauges:
    """The sealer's word (`sesame.server.sealer.SealerMeter`) as the journal's timestamps: when it last had
    everything sealed, and archived (docs/decisions/0027, 0034).

    Timestamps, not ages: an age set by the sealer would freeze the moment the sealer stops, the moment it
    matters. Only the lease holder sets them; every other sealer process and replica, and every worker (which
    seals nothing: decision 0085), reads 0, so they are read as the max over a deployment (`max by (job)`):
    the word of the sealer holding the lease.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        """Register both gauges in `registry` (any, under the multiprocess scrape: the files are the sum)."""
        self.sealed_at = Gauge(
            "sesame_journal_sealed_timestamp_seconds",
            "When the journal's sealer last found every entry sealed (Unix time; 0 in a process not"
            " sealing).",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.archived_at = Gauge(
            "sesame_journal_archived_timestamp_seconds",
            "When the journal's sealer last found every sealed block archived (Unix time; 0 in a process not"
            " sealing).",
            registry=registry,
            multiprocess_mode="livemax",
        )

    def sealed(self) -> None:
        """Every entry appended until now is sealed."""
        self.sealed_at.set(time.time())

    def archived(self) -> None:
        """Every sealed block is archived."""
        self.archived_at.set(time.time())


@dataclass(frozen=True, slots=True)
class MetricsTally:
    """Where the flows report what they decided (`sesame.server.domain.tally`): the outcome counters."""

    metrics: Metrics

    def opened(self, operation: Operation) -> None:
        """Count a challenge opened, by operation type."""
        self.metrics.child(self.metrics.challenges_opened, kind(operation).name.lower()).inc()

    def verified(self, outcome: VerificationOutcome) -> None:
        """Count a judged code by result, and a block it started."""
        self.metrics.child(self.metrics.verifications, outcome.result.value).inc()
        if outcome.blocked_until is not None:
            self.metrics.user_blocks.inc()

    def resend(self, outcome: str) -> None:
        """Count a resend by outcome."""
        self.metrics.resends.labels(outcome).inc()

    def budget_refused(self, subject: str) -> None:
        """Count a send refused by a spent budget, by subject."""
        self.metrics.send_budget_refusals.labels(subject).inc()

    def voided(self, reason: VoidReason) -> None:
        """Count a challenge voided by a change of its user, by reason."""
        self.metrics.challenges_voided.labels(reason.value).inc()

    def changed(self, change: str) -> None:
        """Count a lifecycle change made."""
        self.metrics.user_changes.labels(change).inc()


class MeteredSmsGateway:
    """An SmsGateway that times every send, counts it by outcome (failures by reason) and tells the watch."""

    def __init__(
        self, inner: SmsGateway, metrics: Metrics, gateway: str, watch: SmsWatch | None = None
    ) -> None:
        self._inner = inner
        self._metrics = metrics
        self._gateway = gateway
        self._watch = watch or SmsWatch(gateway)
        # From 0, so that the first failure is an increase (decision 0119).
        for outcome in ("sent", "failed"):
            metrics.sms.labels(gateway, outcome).inc(0)
        for reason in get_args(DeliveryFailure):
            metrics.sms_failures.labels(gateway, reason).inc(0)
        metrics.dependency_failures.labels("sms", gateway).inc(0)

    async def send(self, message: SmsMessage) -> SentSms:
        """Send through the inner gateway, timed and counted."""
        try:
            sent = await self._metrics.timed("sms", self._gateway, self._inner.send(message))
        except DeliveryFailed as failure:
            self._metrics.sms.labels(self._gateway, "failed").inc()
            self._metrics.sms_failures.labels(self._gateway, failure.reason).inc()
            self._watch.failed(failure)
            raise
        self._metrics.child(self._metrics.sms, self._gateway, "sent").inc()
        segments = measure(message.text)  # every SMS funnels here, codes and notices alike
        self._metrics.child(self._metrics.sms_parts, segments.encoding).observe(segments.parts)
        if sent.queued:
            self._watch.queued()  # taken, but not on its way: degraded until a send goes (decision 0124)
        else:
            self._watch.sent()
        return sent


_t: type[Tally] = MetricsTally
_g: type[SmsGateway] = MeteredSmsGateway


class WorkersServing(Collector):
    """The supervisor's own word beside the sum of its workers' (decision 0114): how many of them serve.

    Every gauge a worker writes is a live one: its series go with it. With every worker dead (a boot that
    fails again and again: Redis or the HSM away, the supervisor backing off), the page held no
    `sesame_health_serving` at all, and SesameNotServing, reading `== 0`, had nothing to fire on.
    """

    def __init__(self, serving: Callable[[], int], configured: int) -> None:
        """`serving` counts the workers serving now, at each scrape; `configured` is SESAME_WORKERS."""
        self._serving = serving
        self._configured = configured

    def collect(self) -> Iterator[Metric]:
        """Both gauges, read now."""
        yield GaugeMetricFamily(
            "sesame_workers_serving",
            "Worker processes of this sesame serve that said they serve and still run (the sealer apart).",
            value=self._serving(),
        )
        yield GaugeMetricFamily(
            "sesame_workers",
            "Worker processes this sesame serve runs (SESAME_WORKERS).",
            value=self._configured,
        )


class MetricsEndpoint:
    """The HTTP endpoint Prometheus scrapes (`/metrics`), on its own port and thread, bounded
    (`sesame.server.metrics_http`)."""

    def __init__(self, registry: CollectorRegistry, address: str) -> None:
        """Listen on `address` (`host:port`, port 0 picks a free one). ConfigurationError if it cannot."""
        host, _, port = address.rpartition(":")
        try:
            # `[::1]` is the address `::1` (the brackets failed as a host name: an outside audit).
            self._server = BoundedMetricsServer(registry, host.strip("[]"), int(port))
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve metrics on {address} (SESAME_METRICS_ADDR): {exc.strerror}"
            ) from exc
        self.port: int = self._server.port

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.close()
