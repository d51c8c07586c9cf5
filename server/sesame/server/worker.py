"""`python -m sesame.server.worker`: one worker process of `sesame serve`, started by its supervisor.

Not a command for operators: the supervisor gives it its settings in the environment (the Redis it
started, the token it readied, the ports it claimed) and a pipe to say when the port serves.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from sesame.server.domain.errors import SesameError
from sesame.server.workers import READY


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM; 2 with one line on standard error when the worker cannot start."""
    parser = argparse.ArgumentParser(prog="sesame-worker", description=__doc__)
    parser.add_argument("--index", type=int, required=True, help="the worker's number, for the logs")
    parser.add_argument("--ready-fd", type=int, required=True, help="where to write once serving")
    args = parser.parse_args(argv)
    import uvloop  # noqa: PLC0415

    from sesame.server.app import serve  # noqa: PLC0415
    from sesame.server.config import Settings  # noqa: PLC0415
    from sesame.server.log_setup import configure_logging  # noqa: PLC0415
    from sesame.server.tracing import install_tracing  # noqa: PLC0415

    def ready() -> None:
        os.write(args.ready_fd, READY)
        os.close(args.ready_fd)

    try:
        settings = Settings.from_env()
        handler = configure_logging(settings.telemetry)
        if handler is not None:
            handler.addFilter(_WorkerField(args.index))
        # Each worker exports its own spans: the supervisor serves no call.
        install_tracing(settings.telemetry.otlp_endpoint)
        uvloop.run(serve(settings, ready))
    except SesameError as error:
        print(f"sesame: worker {args.index}: {error}", file=sys.stderr)  # noqa: T201
        return 2
    return 0


class _WorkerField(logging.Filter):
    """Names the worker in every line it writes (`worker` key in JSON, `worker=N` on the console)."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self._index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self._index
        return True


if __name__ == "__main__":
    sys.exit(main())
