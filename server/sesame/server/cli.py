"""The `sesame` command: serve, keys, demo, health."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from sesame.server.domain.errors import SesameError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sesame", description="Sésame: SMS one-time codes for strong customer authentication, over gRPC."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("serve", help="serve gRPC (settings from SESAME_* environment variables)")
    keys = commands.add_parser("keys", help="manage the OTP keys in the HSM")
    keys.add_argument("action", choices=("init", "rotate", "list"))
    demo = commands.add_parser("demo", help="walk through every outcome against a running server")
    demo.add_argument("--target", default=None, help="server address (default: SESAME_GRPC_ADDR)")
    demo.add_argument("--sms-file", default=None, help="console SMS file (default: SESAME_SMS_CONSOLE_FILE)")
    health = commands.add_parser("health", help="exit 0 if a running server reports SERVING, else 1")
    health.add_argument("--target", default=None, help="server address (default: SESAME_GRPC_ADDR)")
    health.add_argument("--service", default="", help="a service name (default: the server as a whole)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Imported late: `sesame --help` must work without touching the HSM, Redis or the generated code.
    from sesame.server.config import Settings  # noqa: PLC0415

    try:
        settings = Settings.from_env()
        match args.command:
            case "serve":
                import uvloop  # noqa: PLC0415

                from sesame.server.app import serve  # noqa: PLC0415

                uvloop.run(serve(settings))
            case "keys":
                from sesame.server.keys import run_keys  # noqa: PLC0415

                run_keys(settings, args.action)
            case "demo":
                from sesame.server.grpc.demo import run_demo  # noqa: PLC0415

                target = args.target or settings.grpc_addr
                sms_file = args.sms_file or str(settings.sms_console_file)
                return asyncio.run(run_demo(target, sms_file))
            case "health":
                from sesame.server.grpc.probe import check_health  # noqa: PLC0415

                status = check_health(args.target or _local(settings.grpc_addr), args.service)
                print(status)  # noqa: T201
                return 0 if status == "SERVING" else 1
    except SesameError as error:
        print(f"sesame: {error}", file=sys.stderr)  # noqa: T201
        return 2
    return 0


def _local(address: str) -> str:
    """Where a client on this host reaches a server listening on `address` (a wildcard is loopback)."""
    host, _, port = address.rpartition(":")
    return f"127.0.0.1:{port}" if host in ("0.0.0.0", "[::]", "::") else address  # noqa: S104


if __name__ == "__main__":
    sys.exit(main())
