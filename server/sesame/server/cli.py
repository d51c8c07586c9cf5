"""The `sesame` command: serve, dispatch, keys, demo, health, proof, evidence, journal, risk replay, sms."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sesame.server.domain.errors import ConfigurationError, RedisUrlUnusable, SesameError, StoreUnavailable

if TYPE_CHECKING:
    from sesame.server.config import Settings
    from sesame.server.grpc.probe import ClientTls


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sesame", description="Sésame: SMS one-time codes for strong customer authentication, over gRPC."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="serve gRPC (settings from SESAME_* environment variables)",
        description="Serve gRPC. Every setting is a SESAME_* environment variable, checked at boot.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    serve.add_argument("-h", "--help", action=_ServeHelp, help="show this help and every setting, then exit")
    serve.add_argument(
        "--start-afresh",
        action="store_true",
        help="boot although the HSM lost keys Redis saw: new keys above every version used "
        "(as SESAME_KEYS_START_AFRESH=1; docs/operations.md)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes sharing the port (as SESAME_WORKERS; default: one per core)",
    )
    commands.add_parser(
        "dispatch",
        help="send the SMS outbox without serving gRPC (settings as serve; needs SESAME_REDIS_URL)",
        description="Run dispatch loops alone: they send the SMS that StartChallenge and ResendChallenge "
        "queued, as every `sesame serve` worker does (docs/operations.md, SMS outbox).",
    )
    keys = commands.add_parser("keys", help="manage the OTP and proof keys in the HSM")
    keys.add_argument("action", choices=("init", "rotate", "list"))
    keys.add_argument(
        "--kind",
        choices=("otp", "proof", "journal"),
        default="otp",
        help="the keys `rotate` rotates (default: otp)",
    )
    demo = commands.add_parser("demo", help="walk through every outcome against a running server")
    demo.add_argument(
        "--target", type=_target, default=None, help="server address (default: SESAME_GRPC_ADDR)"
    )
    demo.add_argument("--sms-file", default=None, help="console SMS file (default: SESAME_SMS_CONSOLE_FILE)")
    health = commands.add_parser("health", help="exit 0 if a running server reports SERVING, else 1")
    health.add_argument(
        "--target",
        type=_target,
        default=None,
        help="server address (default: SESAME_HEALTH_ADDR when set and no TLS option, else SESAME_GRPC_ADDR)",
    )
    health.add_argument("--service", default="", help="a service name (default: the server as a whole)")
    _tls_options(health)
    _proof_parser(commands)
    _journal_parser(commands)
    evidence = commands.add_parser(
        "evidence", help="print an evidence bundle (JSON; PDF with --pdf) from a server (decision 0036)"
    )
    evidence.add_argument("challenge_id", nargs="?", default="")
    evidence.add_argument("--user", default="", help="the bundle of a user's challenges (with a period)")
    evidence.add_argument("--since", default=None, help="with --user: opened at or after (ISO 8601)")
    evidence.add_argument("--until", default=None, help="with --user: opened before (ISO 8601)")
    evidence.add_argument("--transaction", default="", help="with --user: the caller's transaction id")
    evidence.add_argument("--pdf", default=None, help="also write the bundle as a PDF (French) to this file")
    evidence.add_argument("--verify", default=None, help="check a saved bundle with --jwks only, offline")
    evidence.add_argument(
        "--jwks", action="append", help="with --verify: the proof and journal keys' JWK set (repeatable)"
    )
    _client_options(evidence)
    risk = commands.add_parser("risk", help="the risk rules (docs/risk.md)")
    risk_actions = risk.add_subparsers(dest="risk_action", required=True, metavar="ACTION")
    replay = risk_actions.add_parser(
        "replay",
        help="replay scenario files on the rules (SESAME_RISK_RULES_FILE or the defaults)",
    )
    replay.add_argument("files", nargs="+", type=Path, metavar="FILE")
    sms = commands.add_parser("sms", help="the SMS outbox (docs/operations.md, dead letters)")
    sms_actions = sms.add_subparsers(dest="sms_action", required=True, metavar="ACTION")
    dead = sms_actions.add_parser(
        "dead-letters",
        help="list the SMS given up on, newest first, masked (SESAME_REDIS_URL, or the embedded Redis)",
    )
    dead.add_argument("--count", type=int, default=100, help="at most this many (default: 100)")
    return parser


class _ServeHelp(argparse.Action):
    """`serve --help`: the usual help, then every setting as the code reads it, with its default.

    The list comes from the settings reader itself (`config.settings_read`), imported only when asked for.
    """

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        _namespace: argparse.Namespace,
        _values: Any,
        _option_string: str | None = None,
    ) -> None:
        from sesame.server.config import settings_read  # noqa: PLC0415

        read = settings_read()
        width = max(map(len, read))
        lines = [f"  {name:<{width}}  {default}" for name, default in read.items()]
        parser.epilog = (
            "settings (default):\n" + "\n".join(lines) + "\n\nMeanings: docs/operations.md#settings"
        )
        parser.print_help()
        parser.exit()


def _proof_parser(commands: Any) -> None:
    proof = commands.add_parser("proof", help="check a signed proof; print the proof keys a server publishes")
    actions = proof.add_subparsers(dest="proof_command", required=True, metavar="ACTION")
    verify = actions.add_parser(
        "verify", help="check a proof's signature and print its claims (exit 1: invalid)"
    )
    verify.add_argument("jws", help="the proof (compact JWS); - reads it from standard input")
    verify.add_argument(
        "--jwks", action="append", help="a JWK set file, repeatable (default: ask the server, GetProofKeys)"
    )
    _client_options(verify)
    _client_options(actions.add_parser("keys", help="print the server's JWK set (to archive, or for --jwks)"))


def _journal_parser(commands: Any) -> None:
    journal = commands.add_parser("journal", help="check the journal's archive (decision 0027)")
    actions = journal.add_subparsers(dest="journal_command", required=True, metavar="ACTION")
    verify = actions.add_parser(
        "verify", help="check every archived block and entry; print the first broken place (exit 1)"
    )
    verify.add_argument("--archive", default=None, help="the archive (default: SESAME_JOURNAL_ARCHIVE_DIR)")
    verify.add_argument("--export", default=None, help="check an export file (journal export) instead")
    verify.add_argument(
        "--jwks",
        action="append",
        help="the journal keys' JWK set file, repeatable: the sets saved at each rotation, joined "
        "(default: read them from the HSM)",
    )
    actions.add_parser("keys", help="print the journal keys' JWK set from the HSM (keep it with the archive)")
    export = actions.add_parser(
        "export", help="write the sealed journal as JSON Lines, entries then their seal, block by block"
    )
    export.add_argument("--archive", default=None, help="the archive (default: SESAME_JOURNAL_ARCHIVE_DIR)")
    export.add_argument(
        "--redis", default=None, help="also the blocks only Redis holds (default: SESAME_REDIS_URL, if set)"
    )
    export.add_argument("--archive-only", action="store_true", help="read no Redis")
    export.add_argument(
        "--after", type=_block_number, default=0, help="start after this block number (the cursor)"
    )
    export.add_argument("--output", default=None, help="the file to write (default: standard output)")
    export.add_argument(
        "--resume", action="store_true", help="continue --output after its last complete block"
    )


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target", type=_target, default=None, help="server address (default: SESAME_GRPC_ADDR)"
    )
    _tls_options(parser)


def _tls_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ca", default=None, help="TLS: PEM CA bundle that verifies the server")
    parser.add_argument("--cert", default=None, help="TLS: PEM client certificate chain (with --key)")
    parser.add_argument("--key", default=None, help="TLS: PEM client private key (with --cert)")
    parser.add_argument("--server-name", default=None, help="TLS: name in the server's certificate")


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not all(_utf8(argument) for argument in arguments):
        # Python holds such bytes as surrogates: an id or a service name of them crashed the command where it
        # was first encoded, with a traceback (an outside audit's).
        print("sesame: an argument is not UTF-8 text", file=sys.stderr)  # noqa: T201
        return 2
    try:
        status = _run(arguments)
        sys.stdout.flush()  # here, not at exit: a closed pipe is then ours to answer
    except BrokenPipeError:
        # Whoever read the output left (`sesame evidence ID | head`): exit 1 without a traceback. Standard
        # output goes to /dev/null so that Python's own flush at exit does not hit the pipe again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return status


def _run(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    # Imported late: `sesame --help` must work without touching the HSM, Redis or the generated code.
    from sesame.server.config import Settings  # noqa: PLC0415
    from sesame.server.log_setup import configure_logging  # noqa: PLC0415

    settings: Settings | None = None
    try:
        settings = Settings.from_env()
        configure_logging(settings.telemetry)
        match args.command:
            case "serve":
                _serve(args, settings)
            case "dispatch":
                import uvloop  # noqa: PLC0415

                from sesame.server.app import dispatch  # noqa: PLC0415

                uvloop.run(dispatch(settings))
            case "keys":
                from sesame.server.domain.model import KeyKind  # noqa: PLC0415
                from sesame.server.keys import run_keys  # noqa: PLC0415

                run_keys(settings, args.action, KeyKind(args.kind))
            case "demo":
                from sesame.server.grpc.demo import run_demo  # noqa: PLC0415

                target = args.target or settings.grpc_addr
                sms_file = args.sms_file or str(settings.sms_console_file)
                return asyncio.run(run_demo(target, sms_file))
            case "health" | "proof" | "evidence" | "journal" | "risk" | "sms":
                return _CHECKS[args.command](args, settings)
    except StoreUnavailable as error:
        # A Redis that failed at boot (or for a command that reads it) printed `sesame: ConnectionError`
        # alone: name the setting and where it points, never the URL's password.
        named = _redis_named(settings, getattr(args, "redis", None))
        print(f"sesame: Redis {named} unavailable: {error}", file=sys.stderr)  # noqa: T201
        return 2
    except RedisUrlUnusable as error:
        # The client names SESAME_REDIS_URL; a command given --redis used the option's URL, and only that
        # (an error naming the setting sent the operator to check the wrong one).
        option = getattr(args, "redis", None)
        said = f"the Redis URL (--redis) cannot be used: {error.fault}" if option else str(error)
        print(f"sesame: {said}", file=sys.stderr)  # noqa: T201
        return 2
    except SesameError as error:
        print(f"sesame: {error}", file=sys.stderr)  # noqa: T201
        return 2
    return 0


def _redis_named(settings: Settings | None, option: str | None = None) -> str:
    """Which Redis a command used, for an error: the hosts (or socket) of its `--redis` option or of
    SESAME_REDIS_URL, without user or password, or the embedded one."""
    if option:
        return f"at {_where(option)} (--redis)"
    if settings is None or settings.redis_url is None:
        return "(the embedded redis-server under SESAME_VAR_DIR)"
    return f"at {_where(settings.redis_url)} (SESAME_REDIS_URL)"


def _where(url: str) -> str:
    """A Redis URL's hosts (or socket), without its user or password."""
    parts = urlsplit(url)
    return parts.netloc.rpartition("@")[2] or parts.path


def _serve(args: argparse.Namespace, settings: Settings) -> None:
    import uvloop  # noqa: PLC0415

    from sesame.server.serve import serve  # noqa: PLC0415

    if args.start_afresh:
        settings = dataclasses.replace(settings, keys_start_afresh=True)
    if args.workers is not None:
        settings = dataclasses.replace(settings, workers=_workers(args.workers))
    uvloop.run(serve(settings))


def _risk(args: argparse.Namespace, settings: Settings) -> int:
    """`risk replay`: each scenario's decisions and the rates; 1 when a decision is not the one expected."""
    from sesame.server.risk_replay import ScenarioError, run  # noqa: PLC0415

    try:
        lines, as_expected = run(args.files, settings.risk.rules)
    except ScenarioError as error:
        print(f"sesame: {error}", file=sys.stderr)  # noqa: T201
        return 2
    print("\n".join(lines))  # noqa: T201
    return 0 if as_expected else 1


def _sms(args: argparse.Namespace, settings: Settings) -> int:
    """`sms dead-letters`: one masked line per dead letter (docs/decisions/0033)."""
    from sesame.server.sms_dead_letters import dead_letters  # noqa: PLC0415

    if not 1 <= args.count <= 10_000:
        raise ConfigurationError(f"--count must be between 1 and 10000, not {args.count}")
    print("\n".join(dead_letters(settings, args.count)))  # noqa: T201
    return 0


def _workers(count: int) -> int:
    """The --workers count, within the bounds SESAME_WORKERS has."""
    from sesame.server.config import MAX_WORKERS  # noqa: PLC0415

    if not 1 <= count <= MAX_WORKERS:
        raise ConfigurationError(f"--workers must be between 1 and {MAX_WORKERS}, not {count}")
    return count


def _health(args: argparse.Namespace, settings: Settings) -> int:
    """Print the status the server reports; 0 only for SERVING."""
    from sesame.server.grpc.probe import check_health  # noqa: PLC0415
    from sesame.server.sms_watch import SMS_HEALTH_SERVICE  # noqa: PLC0415

    tls = _client_tls(args)
    # Without TLS options, the plaintext health-only listener when there is one: probes hold no certificate.
    address = settings.transport.health_addr if tls is None else None
    target = args.target or _local(address or settings.grpc_addr)
    status = check_health(target, args.service, tls=tls)
    serving = status == "SERVING"
    # Degraded still serves (exit 0): the gateway's status is published apart from the server's own.
    if serving and not args.service and check_health(target, SMS_HEALTH_SERVICE, tls=tls) == "NOT_SERVING":
        status = "SERVING (degraded: SMS gateway failing)"
    print(status)  # noqa: T201
    return 0 if serving else 1


def _proof(args: argparse.Namespace, settings: Settings) -> int:
    """Print the server's JWK set, or check a proof against a JWK set and print its claims (1: invalid)."""
    from sesame.server import evidence  # noqa: PLC0415
    from sesame.server.grpc.evidence_client import fetch_jwks  # noqa: PLC0415

    tls, target = _client_tls(args), args.target or _local(settings.grpc_addr)
    if args.proof_command == "keys":
        print(json.dumps(fetch_jwks(target, tls), indent=2))  # noqa: T201
        return 0
    jwks = _jwks_files(args.jwks) if args.jwks else fetch_jwks(target, tls)
    try:
        # What a person pastes may end with a newline or spaces: only the proof's own compact form parses.
        jws = (sys.stdin.read() if args.jws == "-" else args.jws).strip()
        parsed = evidence.check_proof(jws, jwks)
    except UnicodeDecodeError:
        print("INVALID: not a Sésame proof: the input is not UTF-8 text")  # noqa: T201
        return 1
    except evidence.ProofRejected as rejected:
        print(f"INVALID: {rejected}")  # noqa: T201
        return 1
    shown = {"valid": True, "kid": parsed.kid, "header": parsed.header, "claims": parsed.claims}
    print(json.dumps(shown, indent=2, ensure_ascii=False))  # noqa: T201
    return 0


def _evidence(args: argparse.Namespace, settings: Settings) -> int:
    """Print an evidence bundle; 1 when a check of its journal's seals, inclusion proofs or proof fails."""
    from sesame.server import evidence_command as command  # noqa: PLC0415

    if args.verify:
        if not args.jwks:
            raise ConfigurationError("--verify needs --jwks")
        return command.check_saved(args.verify, _jwks_files(args.jwks))
    tls, target = _client_tls(args), args.target or _local(settings.grpc_addr)
    found = command.gather(
        target,
        tls,
        challenge_id=args.challenge_id,
        user_id=args.user,
        since=command.parse_time(args.since, "--since"),
        until=command.parse_time(args.until, "--until"),
        transaction_id=args.transaction,
    )
    return command.report(found, args.pdf)


def _journal(args: argparse.Namespace, settings: Settings) -> int:
    if args.journal_command == "export":
        from sesame.server.journal_export_cli import run_export  # noqa: PLC0415

        return run_export(args, settings)
    if args.journal_command == "keys":
        print(json.dumps(_journal_keys(settings), indent=2))  # noqa: T201
        return 0
    return _journal_verify(args, settings)


def _journal_verify(args: argparse.Namespace, settings: Settings) -> int:
    """Check the archive (or an export) block by block; 1 at the first broken place, which is printed."""
    from sesame.server.journal_archive import MalformedArchive  # noqa: PLC0415
    from sesame.server.journal_export_cli import MalformedExport, archive_named, exported_blocks  # noqa: PLC0415
    from sesame.server.journal_verify import verify_archive  # noqa: PLC0415

    jwks = _jwks_files(args.jwks) if args.jwks else _journal_keys(settings)
    if args.export:
        try:
            with exported_blocks(Path(args.export)) as found:
                checked = verify_archive(found.blocks, jwks or {}, found.first_number)
        except MalformedExport as malformed:
            print(f"BROKEN: {malformed}")  # noqa: T201
            return 1
    else:
        archive = archive_named(args, settings)
        try:
            checked = verify_archive(archive.blocks(), jwks or {}, archive.first_number())
        except MalformedArchive as malformed:
            print(f"BROKEN: {malformed}")  # noqa: T201
            return 1
    if checked.valid and not checked.blocks:
        # An export cut to nothing, /dev/null, the wrong file, segments emptied: nothing verified is not
        # `verified 0 blocks`, exit 2 (decision 0106; an outside audit found an emptied segment passing).
        source = f"--export {args.export}" if args.export else "the journal archive"
        raise ConfigurationError(f"{source} holds no block: nothing verified")
    if not checked.valid:
        print(f"BROKEN: {checked.failed} ({checked.blocks} blocks verified before)")  # noqa: T201
        return 1
    print(f"verified {checked.blocks} blocks, {checked.entries} entries")  # noqa: T201
    return 0


def _journal_keys(settings: Settings) -> dict[str, Any]:
    """The journal keys' JWK set, read from the HSM the settings name."""
    from sesame.hsm.pkcs11 import Pkcs11KeyStore  # noqa: PLC0415
    from sesame.server.app import hsm_config  # noqa: PLC0415
    from sesame.server.domain import proof  # noqa: PLC0415

    config = hsm_config(settings, create=False)

    async def read() -> dict[str, Any]:
        keys = await asyncio.to_thread(Pkcs11KeyStore.open, config)
        try:
            return dict(proof.jwk_set(await keys.journal_public_keys()))
        finally:
            await asyncio.to_thread(keys.close)

    found = asyncio.run(read())
    if not found["keys"]:
        # An empty set verifies nothing and, archived, would leave the journal unverifiable: not a result.
        dev = f"the development token under {settings.var_dir.resolve()}"
        where = "the HSM token" if settings.hsm else dev
        raise ConfigurationError(
            f"{where} ({config.token_label!r}) holds no journal key: run where the server's settings are "
            "(its SESAME_HSM_* or var directory), or give the archived set with --jwks"
        )
    return found


def _jwks_files(paths: list[str]) -> Any:
    """The JWK set of the --jwks files: one file's JSON value as it is; several files' `keys` joined in one
    set (the sets saved at each rotation, and after a token lost and started afresh), or None when one of
    them is not a JWK set (then what it was to check reads INVALID, as for one file that is not)."""
    sets = [_jwks_file(path) for path in paths]
    if len(sets) == 1:
        return sets[0]
    if not all(isinstance(one, dict) and isinstance(one.get("keys"), list) for one in sets):
        return None
    return {"keys": [key for one in sets for key in one["keys"]]}


def _jwks_file(path: str) -> Any:
    """The JSON value of a --jwks file, or None when it is not JSON (then the proof reads INVALID).

    A file that cannot be read is the operator's problem (exit 2); what it holds is checked like any
    input from outside, by `check_proof`, so a hostile JWK set reads INVALID and never raises.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"--jwks cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError:
        return None
    try:
        return json.loads(text)
    # ValueError: not JSON, or an integer past Python's digit limit; RecursionError: nesting too deep.
    except (ValueError, RecursionError):
        return None


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


def _target(value: str) -> str:
    """`--target` as host:port: without its port, gRPC would dial port 443 and the command read UNREACHABLE
    (exit 1, as a server down) where the option is wrong (argparse: exit 2, naming it)."""
    host, _, port = value.rpartition(":")
    if not host or not port.isascii() or not port.isdigit() or not 0 < int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"must be host:port (an IPv6 address in brackets), not {value!r}")
    return value


def _block_number(value: str) -> int:
    """`--after` as a block number, 0 or more: a negative cursor was taken and read as 0."""
    if not value.isascii() or not value.isdigit():
        raise argparse.ArgumentTypeError(f"must be a block number (0 or more), not {value!r}")
    return int(value)


def _local(address: str) -> str:
    """Where a client on this host reaches a server listening on `address` (a wildcard is loopback)."""
    host, _, port = address.rpartition(":")
    return f"127.0.0.1:{port}" if host in ("0.0.0.0", "[::]", "::") else address  # noqa: S104


# The commands that check something and answer with their exit status.
_CHECKS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "health": _health,
    "proof": _proof,
    "evidence": _evidence,
    "journal": _journal,
    "risk": _risk,
    "sms": _sms,
}


if __name__ == "__main__":
    sys.exit(main())
