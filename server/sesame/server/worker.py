"""`python -m sesame.server.worker`: one worker process of `sesame serve`, started by its supervisor; with
`--sealer`, its sealer process, which seals the journal and serves no call (decision 0085).

Not a command for operators: the supervisor gives it its settings in the environment (the Redis it
started, the token it readied, the ports it claimed) and a pipe to say when the port serves (the sealer:
when it runs), and then once a second that its loop still turns (decision 0138).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Sequence

from sesame.server.domain.errors import SesameError
from sesame.server.workers import BEAT, BEAT_INTERVAL, READY


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM; 2 with one line on standard error when the worker cannot start."""
    parser = argparse.ArgumentParser(prog="sesame-worker", description=__doc__)
    role = parser.add_mutually_exclusive_group(required=True)
    role.add_argument("--index", type=int, help="the worker's number, for the logs")
    role.add_argument("--sealer", action="store_true", help="seal the journal, serve no call")
    parser.add_argument("--ready-fd", type=int, required=True, help="where to write once serving")
    args = parser.parse_args(argv)
    name: int | str = "sealer" if args.sealer else args.index
    who = "the sealer" if args.sealer else f"worker {args.index}"
    import uvloop  # noqa: PLC0415

    from sesame.server.app import seal, serve  # noqa: PLC0415
    from sesame.server.config import Settings  # noqa: PLC0415
    from sesame.server.log_setup import configure_logging  # noqa: PLC0415
    from sesame.server.tracing import install_tracing  # noqa: PLC0415

    def ready() -> None:
        os.write(args.ready_fd, READY)
        # Then a beat on the same pipe every second, from the loop that serves the calls: a worker whose loop
        # stopped turning (SIGSTOP, a call into C that never returns) goes silent and is replaced (0138).
        os.set_blocking(args.ready_fd, False)
        asyncio.get_running_loop().call_soon(_beat, args.ready_fd)

    try:
        settings = Settings.from_env()
        handler = configure_logging(settings.telemetry)
        if handler is not None:
            handler.addFilter(_WorkerField(name))
        # Each worker exports its own spans: the supervisor serves no call.
        install_tracing(settings.telemetry.otlp_endpoint)
        uvloop.run(seal(settings, ready) if args.sealer else serve(settings, ready, args.index))
    except SesameError as error:
        print(f"sesame: {who}: {error}", file=sys.stderr)  # noqa: T201
        return 2
    return 0


def _beat(fd: int) -> None:
    """Say on the supervisor's pipe that the loop turns, then again in BEAT_INTERVAL seconds.

    A full pipe (a supervisor that reads late) drops the beat, a closed one (a supervisor gone: the kernel
    sends SIGTERM then) ends nothing: neither may stop the calls.
    """
    with contextlib.suppress(BlockingIOError, BrokenPipeError):
        os.write(fd, BEAT)
    asyncio.get_running_loop().call_later(BEAT_INTERVAL, _beat, fd)


class _WorkerField(logging.Filter):
    """Names the worker in every line it writes (`worker` key in JSON, `worker=N` on the console; the
    sealer process: `sealer`)."""

    def __init__(self, name: int | str) -> None:
        super().__init__()
        self._name = name

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self._name
        return True


if __name__ == "__main__":
    sys.exit(main())
