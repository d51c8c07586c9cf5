"""The floor: a bare grpc.aio server whose one unary method returns its request bytes.

It runs on the same event loop as `sesame serve` (uvloop) and does nothing else, so what it costs is what
Python gRPC itself costs on this machine. `--workers N` starts N such processes on one port (SO_REUSEPORT,
which gRPC sets by default on Linux), for comparison with a multi-worker Sésame.

    python -m bench.echo_server --port 50099 [--workers 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import signal
from collections.abc import Callable

import grpc
import uvloop

SERVICE = "bench.Echo"
METHOD = f"/{SERVICE}/Echo"


async def _echo(request: bytes, _context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return request


async def serve(port: int) -> None:
    """Serve the echo method on 127.0.0.1:`port` until terminated."""
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def _worker(port: int) -> None:
    uvloop.run(serve(port))


def main() -> None:
    """Parse the arguments; run one server here, or N worker processes sharing the port."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    if args.workers <= 1:
        _worker(args.port)
        return
    run_workers(args.workers, _worker, (args.port,))


def run_workers(count: int, target: Callable[..., None], args: tuple[object, ...]) -> None:
    """Run `target(*args)` in `count` processes until they end; SIGTERM terminates them all."""
    # Spawned, not forked: gRPC's threads and state do not survive a fork.
    spawn = multiprocessing.get_context("spawn")
    workers = [spawn.Process(target=target, args=args) for _ in range(count)]
    for worker in workers:
        worker.start()

    def stop(_signum: int, _frame: object) -> None:
        for worker in workers:
            worker.terminate()

    signal.signal(signal.SIGTERM, stop)
    for worker in workers:
        worker.join()


if __name__ == "__main__":
    main()
