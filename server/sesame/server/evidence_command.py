"""`sesame evidence`: a bundle by challenge, by user and period, or by the caller's transaction id; as JSON,
and as a PDF with `--pdf`; or a saved bundle checked again with `--verify FILE --jwks FILE` (decision 0036).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sesame.server import json_once
from sesame.server.domain.errors import ConfigurationError
from sesame.server.evidence_bundle import (
    UserRecord,
    challenge_bundle,
    is_sound,
    user_bundle,
    user_window,
    verify,
)
from sesame.server.grpc.evidence_client import fetch_evidence, fetch_jwks
from sesame.server.grpc.probe import ClientTls
from sesame.server.grpc.user_evidence_client import fetch_user_evidence
from sesame.server.journal_archive import private


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
    # Both named: one of them would be ignored without a word (the challenge's bundle printed for a user's).
    if challenge_id and user_id:
        raise ConfigurationError("name a challenge or --user, not both")
    if challenge_id and (since or until or transaction_id):
        raise ConfigurationError("--since, --until and --transaction select a user's challenges: with --user")
    jwks = fetch_jwks(target, tls)
    if challenge_id:
        return _operation(target, tls, challenge_id, jwks)
    found = fetch_user_evidence(
        target, user_id, since=since, until=until, transaction_id=transaction_id, tls=tls
    )
    if found.opened_while_read:
        print(  # noqa: T201 (a note beside the bundle on standard output)
            f"sesame: {len(found.opened_while_read)} challenge(s) of the user opened while the selection was "
            "read are not in it (read it again to include them)",
            file=sys.stderr,
        )
    operations = [_operation(target, tls, m["challenge_id"], jwks) for m in found.challenges]
    selector = {"user_id": user_id, "transaction_id": transaction_id}
    selector |= {"since": since.isoformat() if since else "", "until": until.isoformat() if until else ""}
    return user_bundle(selector, found, operations)


def _operation(target: str, tls: ClientTls | None, challenge_id: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """A challenge's bundle, with its user's lifecycle and the health notes around it."""
    fetched = fetch_evidence(target, challenge_id, tls)
    user: UserRecord | None = None
    window = user_window(fetched.journal)
    user_id = next((e["user_id"] for e in fetched.journal if e.get("user_id")), "")
    if user_id and window:
        user = fetch_user_evidence(target, user_id, since=window[0], until=window[1], tls=tls)
    return challenge_bundle(fetched, jwks, user)


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
        bundle = json_once.loads(Path(bundle_file).read_text(encoding="utf-8"))
    except json_once.RepeatedKey as repeated:
        print(json.dumps({"valid": False, "failed": f"the bundle {repeated}"}, indent=2))  # noqa: T201
        return 1
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"the bundle cannot be read ({exc})") from None
    keys = jwks if isinstance(jwks, dict) else {}
    # What each part must be is its place in the file: a challenge's bundle at the top or among a selection's
    # operations, never what the part says of itself (decision 0147).
    selection = isinstance(bundle, dict) and "operations" in bundle
    operations = bundle.get("operations", [bundle]) if isinstance(bundle, dict) else []
    operations = operations if isinstance(operations, list) else []
    results = [
        verify(op, keys, selection=False)
        if isinstance(op, dict)
        else {"valid": False, "failed": "an operation is not a bundle"}
        for op in operations
    ]
    checked: dict[str, Any] = {"valid": all(r["valid"] for r in results), "operations": results}
    if selection:  # a user's selection: its own journal too
        checked["user"] = verify(bundle, keys, selection=True)
        checked["valid"] = checked["valid"] and checked["user"]["valid"]
    else:
        checked["valid"] = checked["valid"] and bool(results)
    checked["keys_used"] = keys_used(bundle, keys)
    if failed := _own_keys_differ(bundle, keys):
        checked["valid"], checked["keys_differ"] = False, failed
    print(json.dumps(checked, indent=2))  # noqa: T201
    return 0 if checked["valid"] else 1


def thumbprint(jwk: Any) -> str:
    """The RFC 7638 SHA-256 thumbprint of an EC key (base64url): what to compare with the bank's published
    keys, whatever the `kid` says."""
    required = {name: str(jwk.get(name, "")) for name in ("crv", "kty", "x", "y")}
    digest = hashlib.sha256(json.dumps(required, sort_keys=True, separators=(",", ":")).encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _named_kids(bundle: Any) -> set[str]:
    """The kids a bundle's proofs, signed blocks and statements of extent name."""
    found: set[str] = set()
    for part in _parts(bundle):
        proof = part.get("proof")
        if isinstance(proof, dict) and isinstance(proof.get("header"), dict):
            found.add(str(proof["header"].get("kid", "")))
        for holder in [part, *[part.get(n) for n in ("lifecycle", "health", "openings")]]:
            if isinstance(holder, dict):
                found |= {str(b.get("block", {}).get("kid", "")) for b in holder.get("signed_blocks", [])}
        extents = part.get("extents")
        for signed in extents if isinstance(extents, list) else []:
            if isinstance(signed, dict) and isinstance(signed.get("statement"), dict):
                found.add(str(signed["statement"].get("kid", "")))
    return found - {""}


def _parts(bundle: Any) -> list[dict[str, Any]]:
    """A bundle and its operations' bundles (a user's selection), those that are objects."""
    if not isinstance(bundle, dict):
        return []
    operations = bundle.get("operations")
    return [p for p in [bundle, *(operations if isinstance(operations, list) else [])] if isinstance(p, dict)]


def _keys(jwks: Any) -> list[dict[str, Any]]:
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    return [key for key in keys if isinstance(key, dict)] if isinstance(keys, list) else []


def keys_used(bundle: Any, jwks: Any) -> dict[str, list[str]]:
    """For each kid the bundle names, the thumbprints of the keys of `--jwks` under it: the bundle holds
    only if those are the bank's keys (its published sets), which the expert compares, not the kids."""
    return {
        kid: [thumbprint(key) for key in _keys(jwks) if key.get("kid") == kid]
        for kid in sorted(_named_kids(bundle))
    }


def _own_keys_differ(bundle: Any, jwks: Any) -> str:
    """A key the bundle carries (`jwks`, `journal_jwks`) under a kid that `--jwks` holds with another key
    only: a bundle re-signed with other keys, or checked with other sets than the bank's ("" when none)."""
    given: dict[str, set[str]] = {}
    for key in _keys(jwks):
        given.setdefault(str(key.get("kid")), set()).add(thumbprint(key))
    for part in _parts(bundle):
        for name in ("jwks", "journal_jwks"):
            for key in _keys(part.get(name)):
                kid = str(key.get("kid"))
                if kid in given and thumbprint(key) not in given[kid]:
                    return f"the bundle's {name} holds another key {kid!r} than --jwks"
    return ""


def report(bundle: dict[str, Any], pdf: str | None) -> int:
    """Write its PDF when asked, then print the bundle; 1 when a check failed."""
    if pdf:
        _write_pdf(bundle, Path(pdf))
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
    return 0 if is_sound(bundle) else 1


def _write_pdf(bundle: dict[str, Any], path: Path) -> None:
    """The bundle's PDF at `path`, whole or not at all (decision 0107).

    Written beside it under another name, then renamed over it: a command stopped while writing (Ctrl-C,
    SIGTERM) leaves the file it replaces as it was, never half a PDF under the name a lawyer files. A path
    that cannot be written is the operator's mistake (exit 2, one line, before the bundle is printed): it
    escaped as a traceback with exit 1, the status of a failed check.
    """
    from sesame.server.evidence_pdf import render  # noqa: PLC0415 (fpdf2 only when a PDF is asked)

    written = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        # Owner-only, as the archive it is drawn from: it names the user, the payee's IBAN, the IP (it was
        # written 0644: an outside audit).
        with open(written, "wb", opener=private) as out:
            out.write(render(bundle))
        written.replace(path)
    except OSError as exc:
        raise ConfigurationError(f"--pdf cannot be written ({exc.strerror})") from None
    finally:
        written.unlink(missing_ok=True)
