"""The evidence bundle of a dispute (decision 0036): every event with its inclusion proof, the user's
lifecycle, the health notes, and one section per point of CMF L.133-23.

`evidence.bundle` gives a challenge's bundle (challenge, journal, proof, seals checked). This adds to it:
each journal entry's RFC 6962 inclusion proof to a signed block (`inclusion_proofs`, `signed_blocks`); the
user's lifecycle journal and the health notes of the time, with theirs; and `l133_23`, which says, point by
point, what answers the article: the operation was authenticated (each attempt with its context, the
verification, the proof, the first factor when journaled), recorded (the sealed journal), accounted for (the
operation as authorised), and not affected by a technical deficiency (the health notes). `verify` checks a
bundle again, on any machine, with the JWK set of the proof and journal keys only.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sesame.server import evidence
from sesame.server.domain.journal_seal import Seal, seal_from_dict
from sesame.server.evidence_inclusion import Event, check, proofs, signed_blocks

FACTOR_PREFIXES = ("factor", "first_factor")  # the first factor's fields, once journaled (issue 8 item 3)


@dataclass(frozen=True, slots=True)
class UserRecord:
    """What GetUserEvidence gave: the challenges found, the user's journal, the health notes, their seals."""

    user_id: str
    challenges: list[dict[str, Any]]  # challenge_id, opened_at, transaction_id (missing_from_index)
    lifecycle: list[dict[str, str]]
    health: list[dict[str, str]]
    seals_json: str
    openings: list[dict[str, str]] = field(default_factory=list)  # the user's sealed openings journal


def _seals(given: Mapping[str, Any]) -> list[Seal]:
    return [seal_from_dict(seal) for seal in given.get("seals", [])]


def proven(stream: str, entries: Sequence[Mapping[str, str]], seals: Sequence[Seal]) -> dict[str, Any]:
    """Entries of one stream with their inclusion proofs and the signed blocks those name."""
    found = proofs([Event(stream, entry) for entry in entries], seals)
    return {
        "stream": stream,
        "entries": [dict(entry) for entry in entries],
        "inclusion_proofs": found,
        "signed_blocks": signed_blocks(seals, found),
    }


def challenge_bundle(
    record: evidence.EvidenceRecord, jwks: Mapping[str, Any], user: UserRecord | None
) -> dict[str, Any]:
    """A challenge's bundle with its proofs of inclusion, the user's lifecycle and health, the sections."""
    found = evidence.bundle(record, jwks)
    given = (found.get("journal_seals") or {}).get("given") or {}
    journal = proven(str(given.get("stream", "")), record.journal, _seals(given) if given else [])
    found["journal_stream"] = journal["stream"]
    found["inclusion_proofs"] = journal["inclusion_proofs"]
    found["signed_blocks"] = journal["signed_blocks"]
    found["journal_jwks"] = given.get("jwks")
    if user is not None:
        around = json.loads(user.seals_json) if user.seals_json else {}
        seals = _seals(around)
        found["lifecycle"] = proven(str(around.get("lifecycle_stream", "")), user.lifecycle, seals)
        found["health"] = proven(str(around.get("health_stream", "")), user.health, seals)
    found["l133_23"] = sections(found)
    found["offline_check"] = verify(found, {**_merged(jwks, given.get("jwks"))})
    return found


def _merged(*sets: Any) -> dict[str, Any]:
    keys: list[Any] = []
    for jwk_set in sets:
        if isinstance(jwk_set, Mapping):
            keys += [key for key in jwk_set.get("keys", []) if key not in keys]
    return {"keys": keys}


def sections(bundle: Mapping[str, Any]) -> dict[str, Any]:
    """One section per point of CMF L.133-23 (docs/evidence.md maps each field to the article)."""
    journal: list[dict[str, str]] = bundle["journal"]
    opened = next((e for e in journal if e.get("event") == "challenge.opened"), {})
    attempts = [e for e in journal if e.get("event") == "challenge.verification"]
    verified = [e for e in attempts if e.get("outcome") == "verified"]
    proof = bundle.get("proof") or {}
    factors = first_factors(journal)
    deliveries = [e for e in journal if e.get("event") in {"challenge.delivery", "challenge.resend"}]
    seals = bundle.get("journal_seals") or {}
    covered = sum(1 for p in bundle.get("inclusion_proofs", []) if p is not None)
    lifecycle = bundle.get("lifecycle") or {}
    health = bundle.get("health") or {}
    return {
        "authenticated": {
            "first_factor": factors or None,
            "second_factor_sms": {
                "opened_at": opened.get("at"),
                "sent_to": opened.get("phone"),
                "deliveries": deliveries,
                "sent": any(e.get("delivery") in {"sent", "delivered"} for e in deliveries),
                "delivered": any(e.get("delivery") == "delivered" for e in deliveries),
            },
            "attempts": attempts,
            "verified_at": verified[-1].get("at") if verified else None,
            "proof": {
                "signature": (proof.get("verification") or {}).get("signature"),
                "valid": bool((proof.get("verification") or {}).get("valid")),
                "claims": proof.get("claims"),
            }
            if proof
            else None,
        },
        "recorded": {
            "journal_check": {k: v for k, v in seals.items() if k != "given"} or None,
            "events": len(journal),
            "events_with_inclusion_proof": covered,
            "seal_key": next((b["block"]["kid"] for b in bundle.get("signed_blocks", [])), None),
        },
        "accounted_for": {
            "operation_as_authorised": bundle.get("operation_as_authorised"),
            "operation_digest": opened.get("op_digest"),
            "client_id": opened.get("client_id"),
        },
        "no_technical_deficiency": {
            "health_notes": health.get("entries", []),
            "every_dependency_up": _all_up(health.get("entries", [])),
        },
        "lifecycle": lifecycle.get("entries", []),
    }


def first_factors(journal: Sequence[Mapping[str, str]]) -> list[dict[str, str]] | None:
    """The first factor the caller asserted, as each entry journaled it (at Start, at Verify): the entry's
    event and time with its `factor_*` fields; None when no entry holds one."""
    found = [
        {"event": e.get("event", ""), "at": e.get("at", "")}
        | {k: v for k, v in e.items() if k.startswith(FACTOR_PREFIXES)}
        for e in journal
        if any(k.startswith(FACTOR_PREFIXES) for k in e)
    ]
    return found or None


def _all_up(notes: Sequence[Mapping[str, str]]) -> bool | None:
    """Whether every note says every dependency was up; None without any note."""
    if not notes:
        return None
    ignored = {"event", "at", "worker", "seq", "prev"}
    return all(value == "up" for note in notes for key, value in note.items() if key not in ignored)


def verify(bundle: Mapping[str, Any], jwks: Mapping[str, Any]) -> dict[str, Any]:
    """Check a bundle again with the JWK set of the proof and journal keys only: the proof's signature,
    each event's inclusion proof to a block signed by a journal key. `valid`, `failed`, counts."""
    found = _proven_parts(bundle, jwks)
    if found["valid"]:
        failed = _user_drawn(bundle) if "operations" in bundle else _challenge_drawn(bundle, jwks)
        if failed:
            return {"valid": False, "failed": failed, "covered": found["covered"]}
    return found


def _proven_parts(bundle: Mapping[str, Any], jwks: Mapping[str, Any]) -> dict[str, Any]:
    """Each event's inclusion proof (a user's selection: its own journal; each operation is checked apart)."""
    own = (
        []
        if "operations" in bundle
        else [("journal", bundle.get("journal_stream", ""), bundle.get("journal", []), bundle)]
    )
    parts = [
        *own,
        *[
            (name, part.get("stream", ""), part.get("entries", []), part)
            for name in ("lifecycle", "health", "openings")
            if isinstance(part := bundle.get(name), Mapping)
        ],
    ]
    covered = uncovered = 0
    for name, stream, entries, holder in parts:
        result = check(
            [Event(str(stream), entry) for entry in entries],
            holder.get("inclusion_proofs", [None] * len(entries)),
            holder.get("signed_blocks", []),
            jwks,
        )
        if not result.valid:
            return {"valid": False, "failed": f"{name}: {result.failed}", "covered": covered}
        covered, uncovered = covered + result.covered, uncovered + result.uncovered
    return {"valid": True, "failed": None, "covered": covered, "uncovered": uncovered}


def _user_drawn(bundle: Mapping[str, Any]) -> str | None:
    """Why a user's selection does not say what its proven events give, None when it does."""
    lifecycle = (bundle.get("lifecycle") or {}).get("entries", [])
    selector = bundle.get("selector") or {}
    if bundle.get("risk_denials") != risk_denials(lifecycle, selector):
        return "the risk denials differ from the user's journal's"
    openings = (bundle.get("openings") or {}).get("entries", [])
    if bundle.get("completeness") != completeness(openings, bundle.get("found", []), selector):
        return "the completeness differs from the openings journal's"
    return None


def _challenge_drawn(bundle: Mapping[str, Any], jwks: Mapping[str, Any]) -> str | None:
    """Why a challenge's bundle does not say what its proven events give (the PDF is drawn from it), or its
    proof does not verify; None when all holds."""
    if bundle.get("operation_as_authorised") != evidence.authorised_operation(bundle.get("journal", [])):
        return "the operation as authorised differs from the journal's"
    if "l133_23" in bundle and bundle["l133_23"] != sections(bundle):
        return "the L.133-23 sections differ from the events they are drawn from"
    proof = bundle.get("proof")
    if proof:
        try:
            evidence.check_proof(str(proof.get("jws", "")), jwks)
        except evidence.ProofRejected as rejected:
            return f"proof: {rejected}"
    return None


def user_bundle(
    selector: Mapping[str, str], user: UserRecord, operations: list[dict[str, Any]]
) -> dict[str, Any]:
    """The bundle of a user's selection: each operation's bundle, in the order opened; the user's journal
    with its inclusion proofs, and the risk rules' denials of the period drawn from it (decision 0042)."""
    around = json.loads(user.seals_json) if user.seals_json else {}
    lifecycle = proven(str(around.get("lifecycle_stream", "")), user.lifecycle, _seals(around))
    openings = proven(str(around.get("openings_stream", "")), user.openings, _seals(around))
    found = {
        "selector": dict(selector),
        "user_id": user.user_id,
        "found": user.challenges,
        "completeness": completeness(openings["entries"], user.challenges, selector),
        "operations": operations,
        "lifecycle": lifecycle,
        "openings": openings,
        "risk_denials": risk_denials(lifecycle["entries"], selector),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    found["offline_check"] = verify(found, around.get("jwks") or {})
    return found


def completeness(
    openings: Sequence[Mapping[str, str]], found: Sequence[Mapping[str, Any]], selector: Mapping[str, str]
) -> dict[str, Any]:
    """Whether the challenges found are all the user opened in the selection, checked against the user's
    sealed openings journal (decision 0042): its entries numbered without a gap from the one before the
    period (or the first) to the one after it; each challenge it names found; each challenge found named.
    `missing_from_index`: those the index had lost, found through the openings journal."""
    broken: list[str] = []
    seqs = [int(e.get("seq", "0")) for e in openings]
    if seqs and seqs[0] != 1 and _in_period(openings[0], selector):
        broken.append(f"openings journal: entry {seqs[0] - 1} is missing")
    broken += [
        f"openings journal: entry {a + 1} is missing" for a, b in itertools.pairwise(seqs) if b != a + 1
    ]
    tx = selector.get("transaction_id") or ""
    named = {
        e.get("challenge_id", "")
        for e in openings
        if e.get("event") == "user.challenge"
        and _in_period(e, selector)
        and (not tx or e.get("transaction_id") == tx)
    }
    listed = {str(m.get("challenge_id", "")) for m in found}
    broken += [f"{c}: in the openings journal, not found" for c in sorted(named - listed)]
    broken += [f"{c}: found, not in the openings journal" for c in sorted(listed - named)]
    return {
        "complete": not broken,
        "broken": broken,
        "openings": len(named),
        "missing_from_index": [str(m["challenge_id"]) for m in found if m.get("missing_from_index")],
    }


def _in_period(entry: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    since, until = selector.get("since") or "", selector.get("until") or ""
    return (not since or _at(entry) >= _at({"at": since})) and (not until or _at(entry) < _at({"at": until}))


def risk_denials(lifecycle: Sequence[Mapping[str, str]], selector: Mapping[str, str]) -> list[dict[str, str]]:
    """The StartChallenge calls the risk rules denied in the selector's period, as the user's journal holds
    them (operation, reasons, rules and their version, the end user's context): no challenge was opened."""
    return [
        dict(entry)
        for entry in lifecycle
        if entry.get("event") == "risk.denied" and _in_period(entry, selector)
    ]


def _at(entry: Mapping[str, str]) -> datetime:
    try:
        at = datetime.fromisoformat(entry.get("at", ""))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def is_sound(bundle: Mapping[str, Any]) -> bool:
    """Whether every check of a bundle (of a challenge, or of a user's selection) passed."""
    if "operations" in bundle:
        offline = bundle.get("offline_check")
        complete = (bundle.get("completeness") or {}).get("complete", True)
        return (
            all(is_sound(op) for op in bundle["operations"])
            and (offline is None or bool(offline["valid"]))
            and bool(complete)
        )
    offline = bundle.get("offline_check")
    return evidence.is_sound(bundle) and (offline is None or bool(offline["valid"]))
