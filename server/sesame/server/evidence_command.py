"""`sesame evidence`: a bundle by challenge, by user and period, or by the caller's transaction id; as JSON,
and as a PDF with `--pdf`; or a saved bundle checked again with `--verify FILE --jwks FILE` (decision 0036).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sesame.server.domain.errors import ConfigurationError
from sesame.server.evidence_bundle import UserRecord, challenge_bundle, is_sound, user_bundle, verify
from sesame.server.grpc.evidence_client import fetch_evidence, fetch_jwks
from sesame.server.grpc.probe import ClientTls
from sesame.server.grpc.user_evidence_client import fetch_user_evidence

AROUND = timedelta(hours=1)  # the health notes shown before an operation's opening and after its last entry


def gather(  # noqa: PLR0913 (the selector's parts, keyword-only)
    target: str,
    tls: ClientTls | None,
    *,
    challenge_id: str = "",
    user_id: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    transaction_id: str = "",
) -> dict[str, Any]:
    """The bundle the selector asks for, fetched from the server at `target`."""
    if not challenge_id and not user_id:
        raise ConfigurationError("name a challenge, or --user (with --since/--until or --transaction)")
    jwks = fetch_jwks(target, tls)
    if challenge_id:
        return _operation(target, tls, challenge_id, jwks)
    found = fetch_user_evidence(
        target, user_id, since=since, until=until, transaction_id=transaction_id, tls=tls
    )
    operations = [_operation(target, tls, m["challenge_id"], jwks) for m in found.challenges]
    selector = {"user_id": user_id, "transaction_id": transaction_id}
    selector |= {"since": since.isoformat() if since else "", "until": until.isoformat() if until else ""}
    return user_bundle(selector, found, operations)


def _operation(target: str, tls: ClientTls | None, challenge_id: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """A challenge's bundle, with its user's lifecycle and the health notes around it."""
    fetched = fetch_evidence(target, challenge_id, tls)
    user: UserRecord | None = None
    times = [_time(e.get("at", "")) for e in fetched.journal]
    known = [t for t in times if t is not None]
    user_id = next((e["user_id"] for e in fetched.journal if e.get("user_id")), "")
    if user_id and known:
        user = fetch_user_evidence(
            target, user_id, since=min(known) - AROUND, until=max(known) + AROUND, tls=tls
        )
    return challenge_bundle(fetched, jwks, user)


def _time(at: str) -> datetime | None:
    try:
        return datetime.fromisoformat(at)
    except ValueError:
        return None


def parse_time(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 date or instant given to `option` (UTC when it names no offset)."""
    if not value:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigurationError(f"{option}: not an ISO 8601 date or time: {value!r}") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def check_saved(bundle_file: str, jwks: Any) -> int:
    """`--verify`: a saved bundle checked with the JWK set only; prints the result, 0 when it holds."""
    try:
        bundle = json.loads(Path(bundle_file).read_text(encoding="utf-8"), object_pairs_hook=_one_each)
    except _RepeatedKey as repeated:
        # Python keeps the last value of a repeated key, other readers the first: the expert's tool and the
        # lawyer's could read two amounts from one file. Sésame never writes one.
        print(json.dumps({"valid": False, "failed": str(repeated)}, indent=2))  # noqa: T201
        return 1
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"the bundle cannot be read ({exc})") from None
    keys = jwks if isinstance(jwks, dict) else {}
    operations = bundle.get("operations", [bundle]) if isinstance(bundle, dict) else []
    results = [verify(op, keys) for op in operations]
    checked: dict[str, Any] = {"valid": all(r["valid"] for r in results), "operations": results}
    if isinstance(bundle, dict) and "operations" in bundle:  # a user's selection: its own journal too
        checked["user"] = verify(bundle, keys)
        checked["valid"] = checked["valid"] and checked["user"]["valid"]
    else:
        checked["valid"] = checked["valid"] and bool(results)
    print(json.dumps(checked, indent=2))  # noqa: T201
    return 0 if checked["valid"] else 1


class _RepeatedKey(Exception):
    """A JSON object of the bundle names one key twice."""


def _one_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _RepeatedKey(f"the bundle names {key!r} twice in one object")
        found[key] = value
    return found


def report(bundle: dict[str, Any], pdf: str | None) -> int:
    """Print the bundle, write its PDF when asked; 1 when a check failed."""
    print(json.dumps(bundle, indent=2, ensure_ascii=False))  # noqa: T201
    for op in [bundle, *bundle.get("operations", [])]:
        seals = op.get("journal_seals")
        if seals and not seals["valid"]:
            print(f"journal check failed: {seals['failed']}", file=sys.stderr)  # noqa: T201
        offline = op.get("offline_check")
        if offline and not offline["valid"]:
            print(f"inclusion check failed: {offline['failed']}", file=sys.stderr)  # noqa: T201
        for broken in (op.get("completeness") or {}).get("broken", []):
            print(f"completeness check failed: {broken}", file=sys.stderr)  # noqa: T201
    if pdf:
        from sesame.server.evidence_pdf import render  # noqa: PLC0415 (fpdf2 only when a PDF is asked)

        Path(pdf).write_bytes(render(bundle))
    return 0 if is_sound(bundle) else 1
