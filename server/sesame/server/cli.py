"""The `sesame` command: serve, keys, demo, health."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sesame.server.domain.errors import ConfigurationError, SesameError

if TYPE_CHECKING:
    from sesame.server.config import Settings
    from sesame.server.grpc.probe import ClientTls


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
    health.add_argument(
        "--target",
        default=None,
        help="server address (default: SESAME_HEALTH_ADDR when set and no TLS option, else SESAME_GRPC_ADDR)",
    )
    health.add_argument("--service", default="", help="a service name (default: the server as a whole)")
    health.add_argument("--ca", default=None, help="TLS: PEM CA bundle that verifies the server")
    health.add_argument("--cert", default=None, help="TLS: PEM client certificate chain (with --key)")
    health.add_argument("--key", default=None, help="TLS: PEM client private key (with --cert)")
    health.add_argument("--server-name", default=None, help="TLS: name in the server's certificate")
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
                return _health(args, settings)
    except SesameError as error:
        print(f"sesame: {error}", file=sys.stderr)  # noqa: T201
        return 2
    return 0


def _health(args: argparse.Namespace, settings: Settings) -> int:
    """Print the status the server reports; 0 only for SERVING."""
    from sesame.server.grpc.probe import check_health  # noqa: PLC0415

    tls = _client_tls(args)
    # Without TLS options, the plaintext health-only listener when there is one: probes hold no certificate.
    address = settings.transport.health_addr if tls is None else None
    target = args.target or _local(address or settings.grpc_addr)
    status = check_health(target, args.service, tls=tls)
    print(status)  # noqa: T201
    return 0 if status == "SERVING" else 1


def _client_tls(args: argparse.Namespace) -> ClientTls | None:
    """The probe's TLS material from --ca/--cert/--key/--server-name; None when none is given."""
    from sesame.server.grpc.probe import ClientTls  # noqa: PLC0415

    if args.ca is None and args.cert is None and args.key is None and args.server_name is None:
        return None
    if (args.cert is None) != (args.key is None):
        raise ConfigurationError("--cert and --key go together")
    return ClientTls(
        ca=_pem(args.ca, "--ca"),
        cert_chain=_pem(args.cert, "--cert"),
        private_key=_pem(args.key, "--key"),
        server_name=args.server_name,
    )


def _pem(path: str | None, option: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{option} cannot be read ({exc.strerror})") from None


def _local(address: str) -> str:
    """Where a client on this host reaches a server listening on `address` (a wildcard is loopback)."""
    host, _, port = address.rpartition(":")
    return f"127.0.0.1:{port}" if host in ("0.0.0.0", "[::]", "::") else address  # noqa: S104


if __name__ == "__main__":
    sys.exit(main())
