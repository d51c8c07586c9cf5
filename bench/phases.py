"""The four measured phases, each an operation that `driver.drive` repeats from many workers.

- echo: two bare unary calls, the same number of RPCs as a Sésame flow with no work behind them;
- start: StartChallenge alone; the challenges it opens are kept, with the time each call returned;
- verify: VerifyChallenge alone, of the challenges the start phase opened, with their codes read from the
  console SMS file beforehand (so the phase times Verify and nothing else);
- flows: StartChallenge, wait for the SMS, VerifyChallenge (which must answer VERIFIED), as a caller does;
- skeleton: StartChallenge then VerifyChallenge against the design's skeleton (bench/skeleton_server.py),
  whose SMS is not waited for and whose answer is not checked: the least a flow can cost on this stack
  (decision 0083); skeleton_verify: VerifyChallenge alone; skeleton_half: the flow at half its rate.

Worker `i` sends on connection `i % connections` and for user `i % users`: several connections, as a
caller's replicas open them (SO_REUSEPORT spreads connections between workers, not calls), placed evenly
over the server's workers (bench.spread).
"""

from __future__ import annotations

import itertools
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc

from bench.driver import Exhausted, Recorder
from bench.echo_server import METHOD
from bench.sms_tail import SmsTail
from bench.spread import spread_channels
from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import operation_pb2 as op_pb

OPERATION = op_pb.Operation(
    credit_transfer=op_pb.CreditTransfer(
        amount=op_pb.Money(currency="EUR", amount_minor=125000),
        payee=op_pb.Payee(name="Jean DUPONT", iban="FR7630006000011234567890189"),
        transaction_id="bench",
    )
)
# Distinct channels would share one TCP connection through gRPC's global subchannel pool: a local pool per
# channel makes each its own connection, as separate replicas would have.
_OWN_CONNECTION = (("grpc.use_local_subchannel_pool", 1),)
_Operation = Callable[[int], Awaitable[None]]
USERS = 256  # the skeleton's users, in turn: their challenges spread over as many slots


class Connections:
    """`count` channels to one address, each its own TCP connection."""

    def __init__(self, address: str, count: int) -> None:
        """Open the channels (connected lazily, at the first call)."""
        self.channels = [grpc.aio.insecure_channel(address, options=_OWN_CONNECTION) for _ in range(count)]
        self.placed: dict[int, int] = {}  # server pid -> connections it accepted, when spread

    @classmethod
    async def spread(cls, address: str, count: int, quota: dict[int, int]) -> Connections:
        """`count` connections, connected now, placed as `quota` says over the server's workers (pid ->
        connections: bench.spread); without one (no worker found listening), where they land."""
        if not quota:
            return cls(address, count)
        connections = cls(address, 0)
        connections.channels, connections.placed = await spread_channels(address, quota, _OWN_CONNECTION)
        return connections

    def of(self, worker: int) -> grpc.aio.Channel:
        """The channel worker `worker` sends on."""
        return self.channels[worker % len(self.channels)]

    async def close(self) -> None:
        """Close every channel."""
        for channel in self.channels:
            await channel.close()


class Echo:
    """Two echo calls per operation."""

    def __init__(self, connections: Connections, recorder: Recorder) -> None:
        """Stubs for every connection."""
        self._calls: list[grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = [
            channel.unary_unary(METHOD) for channel in connections.channels
        ]
        self._recorder = recorder

    async def __call__(self, worker: int) -> None:
        """One pair of echo calls."""
        echo = self._calls[worker % len(self._calls)]
        await self._recorder.timed("Echo", echo(b"x" * 64))
        await self._recorder.timed("Echo", echo(b"y" * 64))


class Skeleton:
    """Against the skeleton server, per operation: one Start and one Verify of its challenge; or, with
    `verify_only`, one Verify of the challenge the worker opened first (the skeleton has no single use:
    each Verify does the same work)."""

    def __init__(self, connections: Connections, recorder: Recorder, *, verify_only: bool = False) -> None:
        """Stubs for every connection."""
        self._auth = [auth_grpc.AuthenticationServiceStub(c) for c in connections.channels]
        self._recorder = recorder
        self._users = itertools.count()
        self._verify_only = verify_only
        self._opened: dict[int, str] = {}  # worker -> the challenge it verifies again and again

    async def __call__(self, worker: int) -> None:
        """Start, then Verify at once with a code the caller never read (the skeleton signs either way)."""
        auth = self._auth[worker % len(self._auth)]
        if self._verify_only and worker in self._opened:
            challenge_id = self._opened[worker]
        else:
            user = f"skeleton-{next(self._users) % USERS}"
            starting = auth.StartChallenge(auth_pb.StartChallengeRequest(user_id=user, operation=OPERATION))
            started = await (
                starting if self._verify_only else self._recorder.timed("StartChallenge", starting)
            )
            challenge_id = self._opened[worker] = started.challenge_id
        await self._recorder.timed(
            "VerifyChallenge",
            auth.VerifyChallenge(
                auth_pb.VerifyChallengeRequest(challenge_id=challenge_id, code="000000", operation=OPERATION)
            ),
        )


@dataclass(frozen=True, slots=True)
class Opened:
    """A challenge the start phase opened, and the wall-clock time StartChallenge returned it."""

    challenge_id: str
    returned_at: float


def number(index: int) -> str:
    """The secure number of the bench's user `index`."""
    return f"+3361234{index:04d}"


def numbers(first: int, users: int) -> frozenset[str]:
    """The secure numbers of users `first` to `first + users - 1`: what one client process's tail keeps."""
    return frozenset(number(i) for i in range(first, first + users))


class Sesame:
    """Stubs on every connection, the bench's users, the SMS tail, and what the phases hand on."""

    def __init__(self, connections: Connections, tail: SmsTail, users: int, first: int = 0) -> None:
        """Name `users` users (enrolled by `enroll`), one secure number each: numbers `first` onwards, so
        that client processes sharing a server have numbers of their own (`numbers`)."""
        self._auth = [auth_grpc.AuthenticationServiceStub(c) for c in connections.channels]
        self._enrol = [enrol_grpc.EnrollmentServiceStub(c) for c in connections.channels]
        self._tail = tail
        self._users = [f"bench-{os.getpid()}-{i}" for i in range(first, first + users)]
        self._first = first
        self._spread = itertools.count()
        self.opened: deque[Opened] = deque()
        self.sms_delays: list[float] = []

    async def enroll(self) -> None:
        """Enroll every user (one call per connection at least, which also opens the connections)."""
        for i, user in enumerate(self._users):
            await self._enrol[i % len(self._enrol)].EnrollUser(
                enrol_pb.EnrollUserRequest(
                    user_id=user, client_id="bench", secure_phone=number(self._first + i)
                )
            )

    async def _start(self, worker: int, recorder: Recorder) -> Opened:
        auth = self._auth[worker % len(self._auth)]
        user = self._users[next(self._spread) % len(self._users)]
        started = await recorder.timed(
            "StartChallenge",
            auth.StartChallenge(auth_pb.StartChallengeRequest(user_id=user, operation=OPERATION)),
        )
        return Opened(started.challenge_id, time.time())

    async def _verify(self, worker: int, challenge_id: str, code: str, recorder: Recorder) -> None:
        auth = self._auth[worker % len(self._auth)]
        verified = await recorder.timed(
            "VerifyChallenge",
            auth.VerifyChallenge(
                auth_pb.VerifyChallengeRequest(challenge_id=challenge_id, code=code, operation=OPERATION)
            ),
        )
        if verified.result != auth_pb.VERIFY_RESULT_VERIFIED:
            recorder.fail(f"VerifyChallenge:{auth_pb.VerifyResult.Name(verified.result)}")
            raise AssertionError("not verified")
        self._tail.forget(challenge_id)

    async def sms_of_opened(self, limit: float) -> int:
        """Wait (at most `limit` s in all) for the SMS of every opened challenge; the number missing."""
        deadline = time.monotonic() + limit
        missing = 0
        for opened in self.opened:
            try:
                sms = await self._tail.sms(opened.challenge_id, max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                missing += 1
                continue
            self.sms_delays.append((sms.sent_at or sms.seen_at) - opened.returned_at)
        return missing

    def start_phase(self, recorder: Recorder) -> _Operation:
        """StartChallenge alone; each challenge opened is kept for the verify phase."""

        async def operation(worker: int) -> None:
            self.opened.append(await self._start(worker, recorder))

        return operation

    def verify_phase(self, recorder: Recorder) -> _Operation:
        """VerifyChallenge alone, of the challenges opened before, whose SMS was already read."""

        async def operation(worker: int) -> None:
            if not self.opened:
                raise Exhausted
            opened = self.opened.popleft()
            sms = await self._tail.sms(opened.challenge_id, limit=0.0)
            await self._verify(worker, opened.challenge_id, sms.code, recorder)

        return operation

    def flow_phase(self, recorder: Recorder) -> _Operation:
        """Start, wait for the SMS (bounded), Verify: one caller's whole flow."""

        async def operation(worker: int) -> None:
            begin = time.perf_counter()
            opened = await self._start(worker, recorder)
            try:
                sms = await self._tail.sms(opened.challenge_id)
            except TimeoutError:
                recorder.fail("SMS:never written")
                raise
            self.sms_delays.append((sms.sent_at or sms.seen_at) - opened.returned_at)
            await self._verify(worker, opened.challenge_id, sms.code, recorder)
            recorder.keep("flow", time.perf_counter() - begin)

        return operation
