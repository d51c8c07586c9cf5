"""Load generator: Start+Verify flows per second and latency percentiles against a real Sésame server.

The client runs in this process (grpc.aio); the server runs in its own process: `sesame serve` with its
embedded defaults (SoftHSM token, Redis child, console SMS) unless `--target` names a running one. The
code of each challenge is read back from the console SMS file, as the end user would read the SMS.
A bare gRPC echo server is measured in the same run, with the same concurrency, as the floor that
Python gRPC itself imposes. Every loop is bounded in count and in time.

    python -m bench.load --duration 20 --concurrency 16 --max-flows 20000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.server.grpc.demo import code_in

BENCH_BUDGET = 1_000_000  # SMS per user and per number for the private server: the settings' maximum
ECHO_METHOD = "/bench.Echo/Echo"
OPERATION = op_pb.Operation(
    credit_transfer=op_pb.CreditTransfer(
        amount=op_pb.Money(currency="EUR", amount_minor=125000),
        payee=op_pb.Payee(name="Jean DUPONT", iban="FR7630006000011234567890189"),
        transaction_id="bench",
    )
)


@dataclass(frozen=True, slots=True)
class Result:
    """One measured run."""

    name: str
    flows: int
    errors: int
    seconds: float
    flows_per_second: float
    p50_ms: float
    p99_ms: float


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def _process(args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


async def _wait_ready(address: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    async with grpc.aio.insecure_channel(address) as channel:
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(channel.channel_ready(), timeout=1)
                return
    raise RuntimeError(f"nothing listens on {address}")


class SmsTail:
    """Follows the console SMS file with one polling task and hands out each challenge's code."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._codes: dict[str, str] = {}
        self._waiters: dict[str, asyncio.Future[str]] = {}
        self._offset = path.stat().st_size if path.exists() else 0

    def _poll(self) -> None:
        if not self._path.exists():
            return
        with self._path.open("rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.splitlines():
            message = json.loads(line)
            code = code_in(message["text"])
            waiter = self._waiters.pop(message["challenge_id"], None)
            if waiter is not None and not waiter.done():
                waiter.set_result(code)
            else:
                self._codes[message["challenge_id"]] = code

    async def follow(self, stop: asyncio.Event) -> None:
        """Read new lines every 2 ms until `stop` is set."""
        while not stop.is_set():
            self._poll()
            await asyncio.sleep(0.002)

    async def code(self, challenge_id: str, limit: float = 5.0) -> str:
        """The code of `challenge_id`, waiting for its line a bounded time."""
        if challenge_id in self._codes:
            return self._codes.pop(challenge_id)
        waiter = self._waiters[challenge_id] = asyncio.get_running_loop().create_future()
        try:
            return await asyncio.wait_for(waiter, limit)
        finally:
            self._waiters.pop(challenge_id, None)


async def _drive(
    name: str, flow: Callable[[], Awaitable[None]], concurrency: int, duration: float, max_flows: int
) -> Result:
    latencies: list[float] = []
    errors = 0
    started = time.perf_counter()
    deadline = started + duration

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < deadline and len(latencies) + errors < max_flows:
            begin = time.perf_counter()
            try:
                await flow()
            except (grpc.RpcError, TimeoutError, AssertionError):
                errors += 1
                continue
            latencies.append(time.perf_counter() - begin)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    ordered = sorted(latencies) or [0.0]
    return Result(
        name=name,
        flows=len(latencies),
        errors=errors,
        seconds=round(seconds, 2),
        flows_per_second=round(len(latencies) / seconds, 1),
        p50_ms=round(statistics.median(ordered) * 1000, 2),
        p99_ms=round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
    )


async def bench_sesame(address: str, sms_file: Path, args: argparse.Namespace) -> Result:
    """Start + read SMS + Verify, per flow."""
    tail = SmsTail(sms_file)
    async with grpc.aio.insecure_channel(address) as channel:
        auth = auth_grpc.AuthenticationServiceStub(channel)
        enrol = enrol_grpc.EnrollmentServiceStub(channel)
        user_id = f"bench-{os.getpid()}"
        await enrol.EnrollUser(
            enrol_pb.EnrollUserRequest(user_id=user_id, client_id="bench", secure_phone="+33612345678")
        )

        async def flow() -> None:
            started = await auth.StartChallenge(
                auth_pb.StartChallengeRequest(user_id=user_id, operation=OPERATION)
            )
            code = await tail.code(started.challenge_id)
            verified = await auth.VerifyChallenge(
                auth_pb.VerifyChallengeRequest(
                    challenge_id=started.challenge_id, code=code, operation=OPERATION
                )
            )
            assert verified.result == auth_pb.VERIFY_RESULT_VERIFIED

        stop = asyncio.Event()
        follower = asyncio.create_task(tail.follow(stop))
        try:
            return await _drive("sesame start+verify", flow, args.concurrency, args.duration, args.max_flows)
        finally:
            stop.set()
            await follower


async def bench_echo(address: str, args: argparse.Namespace) -> Result:
    """Two bare unary calls per flow: the same number of RPCs as a Sésame flow, with no work behind them."""
    async with grpc.aio.insecure_channel(address) as channel:
        echo: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(ECHO_METHOD)

        async def flow() -> None:
            await echo(b"x" * 64)
            await echo(b"y" * 64)

        return await _drive("bare grpc echo x2", flow, args.concurrency, args.duration, args.max_flows)


async def serve_echo(port: int) -> None:
    """A bare grpc.aio server that returns its request bytes (run as `--echo-server PORT`)."""

    async def echo(request: bytes, _context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def main(args: argparse.Namespace) -> list[Result]:
    """Measure the echo floor, then Sésame, each against its own server process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESAME_", "SOFTHSM2_"))}
    echo_port = _free_port()
    with _process([sys.executable, "-m", "bench.load", "--echo-server", str(echo_port)], env):
        await _wait_ready(f"127.0.0.1:{echo_port}")
        echo = await bench_echo(f"127.0.0.1:{echo_port}", args)
    if args.target:
        return [echo, await bench_sesame(args.target, Path(args.sms_file), args)]
    with tempfile.TemporaryDirectory(prefix="sesame-bench-") as var:
        address = f"127.0.0.1:{_free_port()}"
        env.update(SESAME_VAR_DIR=var, SESAME_GRPC_ADDR=address, SESAME_METRICS_ADDR="127.0.0.1:0")
        # One user and one number run every flow: lift the anti-pumping send budgets (10 an hour by
        # default) out of the way. A --target server needs the same settings.
        env.update(SESAME_SEND_BUDGET_USER=str(BENCH_BUDGET), SESAME_SEND_BUDGET_PHONE=str(BENCH_BUDGET))
        env.update(SESAME_SEND_CEILING_CALLER=str(BENCH_BUDGET), SESAME_SEND_CEILING_GLOBAL=str(BENCH_BUDGET))
        with _process([sys.executable, "-m", "sesame.server.cli", "serve"], env):
            await _wait_ready(address)
            await asyncio.sleep(1)  # the health service is up before the first key lookup is warm
            sesame = await bench_sesame(address, Path(var) / "sms.jsonl", args)
    return [echo, sesame]


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per measured run (bound)")
    parser.add_argument("--max-flows", type=int, default=50_000, help="flows per measured run (bound)")
    parser.add_argument("--concurrency", type=int, default=16, help="flows in flight")
    parser.add_argument(
        "--target",
        help="a running server instead of a private one (with SESAME_SEND_BUDGET_USER and _PHONE high)",
    )
    parser.add_argument("--sms-file", default="var/sms.jsonl", help="its console SMS file, with --target")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--echo-server", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = _arguments()
    if arguments.echo_server:
        asyncio.run(serve_echo(arguments.echo_server))
        sys.exit(0)
    results = asyncio.run(main(arguments))
    if arguments.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        for r in results:
            print(
                f"{r.name:<22} {r.flows_per_second:>8.1f} flows/s  p50 {r.p50_ms:>7.2f} ms  "
                f"p99 {r.p99_ms:>7.2f} ms  ({r.flows} flows, {r.errors} errors, {r.seconds} s)"
            )
