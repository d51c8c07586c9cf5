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
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s %(levelname)s %(name)s [worker {args.index}] %(message)s"
    )
    import uvloop  # noqa: PLC0415 (after the logging set-up: imports may log)

    from sesame.server.app import serve  # noqa: PLC0415
    from sesame.server.config import Settings  # noqa: PLC0415

    def ready() -> None:
        os.write(args.ready_fd, READY)
        os.close(args.ready_fd)

    try:
        uvloop.run(serve(Settings.from_env(), ready))
    except SesameError as error:
        print(f"sesame: worker {args.index}: {error}", file=sys.stderr)  # noqa: T201
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
