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
from datetime import UTC, datetime, timedelta
from typing import Any

from sesame.server import bundle_extent, evidence
from sesame.server.domain.errors import JournalDisagrees
from sesame.server.domain.journal_seal import Block, Seal, leaf_hash, seal_from_dict
from sesame.server.domain.proof import verified_entries
from sesame.server.evidence_inclusion import Event, check, proofs, signed_blocks
from sesame.server.journal_check import check_stream

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
    # Challenges a later page listed, opened after the first page's snapshot: not in the selection.
    opened_while_read: list[str] = field(default_factory=list)


# A challenge's bundle: its user's answer covers the journal's time and this much around it (decision 0094).
AROUND = timedelta(hours=1)


def user_window(journal: Sequence[Mapping[str, str]]) -> tuple[datetime, datetime] | None:
    """The period a challenge's bundle asks its user's answer for, and `--verify` holds its statement to
    (decision 0094): from AROUND before the journal's first entry to AROUND after its last; None for a
    journal without a time."""
    times = [at for at in (_at(e) for e in journal) if at != _NO_TIME]
    return (min(times) - AROUND, max(times) + AROUND) if times else None


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
    # The extents the server signed with its answers (decision 0091): the challenge's, then the user's.
    extents = [given.pop("extent")] if "extent" in given else []
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
        extents += [around["extent"]] if "extent" in around else []
    found["extents"] = extents
    found["l133_23"] = sections(found)
    found["offline_check"] = verify(found, {**_merged(jwks, given.get("jwks"))}, unsealed=True)
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
            "extent": _journal_extent(bundle.get("extents")),
            "order_of_steps": order_of_steps(
                {
                    "journal": (journal, bundle.get("inclusion_proofs") or []),
                    "lifecycle": (lifecycle.get("entries", []), lifecycle.get("inclusion_proofs") or []),
                }
            ),
        },
        "accounted_for": {
            "operation_as_authorised": bundle.get("operation_as_authorised"),
            "operation_digest": opened.get("op_digest"),
            "client_id": opened.get("client_id"),
        },
        "no_technical_deficiency": {
            "health_notes": health.get("entries", []),
            "every_dependency_up": _all_up(health.get("entries", []), journal),
        },
        "lifecycle": lifecycle.get("entries", []),
    }


def order_of_steps(
    parts: Mapping[str, tuple[Sequence[Mapping[str, str]], Sequence[Mapping[str, Any] | None]]],
) -> dict[str, Any]:
    """The events of several streams (each part's entries and their inclusion proofs) in the order their
    steps ran (decision 0102). A step's entries take their ids from Redis's clock as the step runs, in one
    feed per shard that the sealer seals in id order: the block's number, then the leaf's index in it, is
    that order, signed. An entry's `at` is the time its worker stamped the request with before the step (the
    time a proof signs, the one a code's validity counts from): for two requests racing, it may disagree
    with the order of the steps by a few milliseconds across streams (`at_follows_order` false); the order
    is the seals'. Events not sealed yet come last, each stream's in its own order (their order across
    streams is not proven yet)."""
    sealed: list[dict[str, Any]] = []
    unsealed: list[dict[str, Any]] = []
    for part, (entries, found) in parts.items():
        for index, entry in enumerate(entries):
            proof = found[index] if index < len(found) else None
            step = {"part": part, "seq": entry.get("seq"), "event": entry.get("event"), "at": entry.get("at")}
            if proof is None:
                unsealed.append(step)
            else:
                sealed.append({**step, "block": proof["block"], "leaf_index": proof["leaf_index"]})
    sealed.sort(key=lambda step: (step["block"], step["leaf_index"]))
    stamps = [_at(step) for step in sealed]
    return {
        "steps": sealed + unsealed,
        "sealed": len(sealed),
        "at_follows_order": all(a <= b for a, b in itertools.pairwise(stamps)),
    }


def _journal_extent(extents: Any) -> dict[str, Any] | None:
    """Where the server's signed statement says the challenge's journal ends, as of when (decision 0091);
    None when the bundle carries none (`--verify` then fails)."""
    for value in extents if isinstance(extents, list) else []:
        said = value.get("statement") if isinstance(value, Mapping) else None
        if not isinstance(said, Mapping):
            continue
        stated = (said.get("streams") or {}).get("journal")
        if isinstance(stated, Mapping):
            head = said.get("head") or {}
            return {
                "ends_at_entry": stated.get("seq"),
                "block": stated.get("block"),
                "head": head.get("number"),
                "stated_at": said.get("at"),
            }
    return None


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


def _all_up(notes: Sequence[Mapping[str, str]], journal: Sequence[Mapping[str, str]]) -> bool | None:
    """Whether every note of the operation's time says every dependency was up: each worker's last note at
    or before the opening (the state it saw then: a note is written when that state changes, and hourly),
    and every note from then until the operation was decided (decision 0163). Earlier notes are history
    (a `down` an hour before, `up` again before the opening: an outside audit), later ones say nothing of
    the operation (a key store `down` a minute after a transfer was verified made the transfer's `false`,
    and so did a replay of its code after it: outside audits).
    None (unknown) without a note from the challenge's opening or before: notes that all came later say
    nothing of the operation's time. Redis restarted empty held the new notes only, and the bundle of a
    challenge made before read `true` while Redis had been failing then (an outside audit)."""
    opened = next((e for e in journal if e.get("event") == "challenge.opened"), {})
    if not notes or not opened or min(_at(note) for note in notes) > _at(opened):
        return None
    start, ended = _at(opened), _decided(journal)
    at_opening: dict[str, Mapping[str, str]] = {}
    for note in sorted((note for note in notes if _at(note) <= start), key=_at):
        at_opening[note.get("worker", "")] = note
    during = [*at_opening.values(), *(note for note in notes if start < _at(note) <= ended)]
    ignored = {"event", "at", "worker", "seq", "prev"}
    return all(value == "up" for note in during for key, value in note.items() if key not in ignored)


def _decided(journal: Sequence[Mapping[str, str]]) -> datetime:
    """When the operation was decided: the first entry that closed its challenge (verified, locked, voided,
    cancelled: a status other than open), else the code's expiry, which the opening says (an expired code's
    challenge stays open in the journal), or the journal's last entry if later.

    The last entry alone (the rule before) ended the time of a challenge that expired unanswered seconds after
    its opening, at its SMS's delivery: a key store `down` while the code could still be checked was left
    out (an outside audit). That rule is not accepted by `verify` for the bundles saved before: it counts
    fewer notes, and a `true` it drew is one this rule may refuse (decision 0163's amendment)."""
    closing = next((e for e in journal if e.get("status", "open") not in ("open", "")), None)
    if closing is not None:
        return _at(closing)
    opened = next((e for e in journal if e.get("event") == "challenge.opened"), {})
    return max(*(_at(entry) for entry in journal), _at({"at": opened.get("expires_at", "")}))


def _as_before_0163(drawn: dict[str, Any], bundle: Mapping[str, Any]) -> dict[str, Any]:
    """The sections `drawn`, with `every_dependency_up` as a release before decision 0163 drew it from the
    same proven notes (an outside audit: every bundle saved before the upgrade failed `--verify`)."""
    journal: list[dict[str, str]] = bundle["journal"]
    opened = next((e for e in journal if e.get("event") == "challenge.opened"), {})
    notes = (bundle.get("health") or {}).get("entries", [])
    then = _all_up_before_0163(notes, opened)
    return {
        **drawn,
        "no_technical_deficiency": {**drawn["no_technical_deficiency"], "every_dependency_up": then},
    }


def _all_up_before_0163(notes: Sequence[Mapping[str, str]], opened: Mapping[str, str]) -> bool | None:
    """`every_dependency_up` as bundles made before decision 0163 computed it (every note listed counted):
    a bundle saved then still verifies."""
    if not notes or not opened or min(_at(note) for note in notes) > _at(opened):
        return None
    ignored = {"event", "at", "worker", "seq", "prev"}
    return all(value == "up" for note in notes for key, value in note.items() if key not in ignored)


class _Unsound(Exception):
    """Where a bundle does not hold, and why (the message is `failed`)."""


def verify(
    bundle: Mapping[str, Any],
    jwks: Mapping[str, Any],
    *,
    unsealed: bool = False,
    selection: bool | None = None,
) -> dict[str, Any]:
    """Check a bundle again with the JWK set of the proof and journal keys only: the proof's signature and
    claims, each event's inclusion proof to a block signed by a journal key, each stream the one of this
    challenge or user, numbered without a gap; and that what the bundle says is what those give.
    `valid`, `failed`, counts. A bundle comes from outside: any malformed part is `valid` false, never raises.

    A saved bundle (`--verify`) holds only when every event carries its inclusion proof: an event without
    one is no evidence. `unsealed` is for the bundle being assembled from the server's answers (its
    `offline_check`): the newest entries, not sealed yet, are counted as `uncovered` instead.

    `selection`: what the bundle must be, by its place in the file (a user's selection at the top, a
    challenge's bundle among its operations), never by what it holds: an operation that says it is a
    selection would otherwise escape every check of a challenge (its journal, its proof, its amount)."""
    counts = {"covered": 0, "uncovered": 0}
    try:
        _shaped(bundle, selection="operations" in bundle if selection is None else selection)
        _proven_parts(bundle, jwks, counts, unsealed=unsealed)
        if "operations" in bundle:
            _extent_held(bundle, jwks, unsealed=unsealed)
            _user_drawn(bundle, unsealed=unsealed)
        else:
            _challenge_drawn(bundle, jwks, unsealed=unsealed)
    except _Unsound as unsound:
        return {"valid": False, "failed": str(unsound), "covered": counts["covered"]}
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        return {"valid": False, "failed": f"the bundle is malformed: {exc!r}", "covered": counts["covered"]}
    return {"valid": True, "failed": None, **counts}


# What only a challenge's bundle holds: a user's selection holds them in each of its operations.
_CHALLENGE_ONLY = ("challenge_id", "journal", "journal_stream", "proof", "l133_23", "operation_as_authorised")


def _shaped(bundle: Mapping[str, Any], *, selection: bool) -> None:
    """The bundle is the kind its place says: a selection, with its operations and nothing of a challenge's
    own; a challenge's bundle, with its L.133-23 sections and no operations."""
    if selection:
        if not isinstance(bundle.get("operations"), list):
            raise _Unsound("a user's selection without its operations")
        if held := [name for name in _CHALLENGE_ONLY if name in bundle]:
            raise _Unsound(f"a user's selection holding a challenge's own parts: {', '.join(held)}")
    elif "operations" in bundle:
        raise _Unsound(f"operation {bundle.get('challenge_id')}: a challenge's bundle holding operations")
    elif "l133_23" not in bundle:
        raise _Unsound(f"operation {bundle.get('challenge_id')}: no L.133-23 sections")


def _owner(bundle: Mapping[str, Any]) -> tuple[str, str]:
    """The challenge ("" for a user's selection) and the user whose streams the bundle's parts must be."""
    if "operations" in bundle:
        return "", str(bundle.get("user_id") or "")
    opened: Mapping[str, Any] = next(
        (e for e in bundle.get("journal", []) if e.get("event") == "challenge.opened"), {}
    )
    return str(bundle.get("challenge_id") or ""), str(opened.get("user_id") or "")


def _stream_of(name: str, challenge_id: str, user_id: str) -> str:
    """How the name of the part's stream must end (the leaves hash the stream: it binds each entry to it)."""
    if not (challenge_id or name != "journal") or not (user_id or name in {"journal", "health"}):
        raise _Unsound(f"{name}: the bundle names no challenge or user")
    return {
        "journal": f"}}:ch:{challenge_id}:journal",
        "lifecycle": f"}}:journal:{user_id}",
        "openings": f"}}:openings:{user_id}",
        "health": "}:health:journal",
    }[name]


def _proven_parts(
    bundle: Mapping[str, Any], jwks: Mapping[str, Any], counts: dict[str, int], *, unsealed: bool
) -> None:
    """Each event's inclusion proof (a user's selection: its own journal; each operation is checked apart).
    Every event must have one: an event without is not evidence (not sealed yet when the bundle was made,
    or added since), and each part's stream must be the challenge's, the user's, the health notes'."""
    challenge_id, user_id = _owner(bundle)
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
    lifecycle = bundle.get("lifecycle")
    if own and not unsealed and (not isinstance(lifecycle, Mapping) or not lifecycle.get("entries")):
        # A challenge's user was enrolled before it: its journal holds the enrolment at least. Without it,
        # the number in use, the suspensions and the blocks would be left out unseen.
        raise _Unsound("lifecycle: the bundle holds none of the user's journal")
    for name, stream, entries, holder in parts:
        if entries and not str(stream).endswith(_stream_of(name, challenge_id, user_id)):
            raise _Unsound(f"{name}: {stream!r} is not this bundle's stream")
        proven = holder.get("inclusion_proofs", [None] * len(entries))
        if len(proven) != len(entries):
            raise _Unsound(f"{name}: not one inclusion proof per event")
        result = check(
            [Event(str(stream), entry) for entry in entries], proven, holder.get("signed_blocks", []), jwks
        )
        if not result.valid:
            raise _Unsound(f"{name}: {result.failed}")
        if result.uncovered and not unsealed:
            position = next(i for i, p in enumerate(proven, start=1) if p is None)
            raise _Unsound(
                f"{name}: event {position} of {stream} has no inclusion proof (not sealed when the bundle "
                "was made: ask for it again)"
            )
        if name != "journal":
            _gapless(name, entries)
        counts["covered"] += result.covered
        counts["uncovered"] += result.uncovered


def _gapless(name: str, entries: Sequence[Mapping[str, str]]) -> None:
    """A part's entries numbered one after the other: the user's journal from its first entry
    (GetUserEvidence gives it whole up to `until`), the health notes without a hole. The openings journal's
    numbering is the completeness' business (it names the gap as missing)."""
    if name == "openings" or not entries:
        return
    seqs = [int(entry.get("seq", "0")) for entry in entries]
    first = 1 if name == "lifecycle" else seqs[0]
    for expected, seq in enumerate(seqs, start=first):
        if seq != expected:
            raise _Unsound(f"{name}: entry {expected} is missing or out of place (found seq {seq})")


def _extent_held(bundle: Mapping[str, Any], jwks: Mapping[str, Any], *, unsealed: bool) -> None:
    """Each part of the bundle ends where the server's signed statement of its extent says (decision 0091):
    its last proven entry is the one stated (`seq`, `leaf`, `block`), no block given is newer than the
    statement's head, and the statement is this challenge's or user's. Without one a part could lose its last
    entries, with the block of their own that held them, unseen. Assembling (`unsealed`), a part the server
    gave nothing of needs none."""
    kinds = ("lifecycle", "openings") if "operations" in bundle else ("journal", "lifecycle", "health")
    extents = bundle.get("extents")
    if not isinstance(extents, list):
        extents = []
    stated: dict[str, tuple[dict[str, Any], Mapping[str, Any]]] = {}
    for value in extents:
        try:
            said = bundle_extent.checked(value, jwks)
        except ValueError as exc:
            raise _Unsound(f"extent: {exc}") from None
        for name in set(said["streams"]) & set(kinds):
            if name in stated:
                raise _Unsound(f"{name}: two statements of its extent")
            stated[name] = (said["streams"][name], said)
    for name in kinds:
        part = _part(bundle, name)
        if name not in stated:
            if unsealed and (part is None or (name == "journal" and bundle.get("journal_seals") is None)):
                continue  # assembling: the server gave nothing of it
            raise _Unsound(
                f"{name}: the bundle carries no signed statement of its extent (a bundle from before "
                "decision 0091: ask for it again)"
            )
        _ends_as_stated(bundle, name, part, *stated[name])
    _statements_agree(bundle, stated)


def _statements_agree(bundle: Mapping[str, Any], stated: Mapping[str, tuple[Any, Mapping[str, Any]]]) -> None:
    """A challenge's two statements are of one assembly, the refusal counts those its answer stated, and the
    health notes start where they must."""
    if "journal" in stated:
        _refusals_as_stated(bundle, stated["journal"][1])
    if "journal" in stated and "lifecycle" in stated:
        _user_stated_after(bundle, stated["journal"][1], stated["lifecycle"][1])
    if "health" in stated:
        _health_from_its_start(_part(bundle, "health"), stated["health"][1])


def _refusals_as_stated(bundle: Mapping[str, Any], said: Mapping[str, Any]) -> None:
    """The refusal counts are the server's word signed with the journal's extent (decision 0102): only the
    first refusal of each kind is journaled, so a count edited (57 wrong codes after the lock made 0) would
    otherwise go unseen. A statement from before names none: the counts are then unsigned, as they were."""
    if "refusals" in said and bundle.get("refusals", []) != said["refusals"]:
        raise _Unsound("refusals: not the counts the server's signed statement gives")


def _user_stated_after(
    bundle: Mapping[str, Any], journal: Mapping[str, Any], user: Mapping[str, Any]
) -> None:
    """A challenge's bundle is one assembly (decision 0094): the user's answer is asked for after the
    challenge's, for the hour around its journal (`since` an hour before its first entry, `until` an hour
    after its last), so its statement is of that query and its head is not older. Another statement of the
    same user (an older one, or one of a query ending earlier), with the lifecycle and health cut back to it,
    would hide what followed (a suspension)."""
    window = user_window(bundle.get("journal", []))
    subject = user["subject"]
    if (
        window is None
        or (subject.get("transaction_id") or "") != ""
        or not all(
            subject.get(end) and _at({"at": subject[end]}) == at
            for end, at in zip(("since", "until"), window, strict=True)
        )
    ):
        raise _Unsound(
            "lifecycle: the statement of its extent is of another query than the hour around this journal"
        )
    if int(user["head"]["number"]) < int(journal["head"]["number"]):
        raise _Unsound(
            "lifecycle: the statement of its extent is older than the journal's (head "
            f"{user['head']['number']} before {journal['head']['number']}): another answer's"
        )


def _health_from_its_start(part: Mapping[str, Any] | None, said: Mapping[str, Any]) -> None:
    """The health notes start with the last note before the query's `since` (or the stream's first): the
    statement fixes their end, this their start (decision 0094). Without it the first notes, a `down` one,
    could go unseen."""
    entries = list(part["entries"]) if part else []
    since = str(said["subject"].get("since") or "")
    if entries and since and int(entries[0].get("seq", "0")) != 1 and _at(entries[0]) >= _at({"at": since}):
        raise _Unsound(
            f"health: the notes start at entry {entries[0].get('seq')}, within the period: the last note "
            "before it is missing"
        )


def _part(bundle: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    """A part as (stream, entries, inclusion proofs, signed blocks); None when the bundle holds none."""
    if name == "journal":
        return {
            "stream": bundle.get("journal_stream", ""),
            "entries": bundle.get("journal", []),
            "inclusion_proofs": bundle.get("inclusion_proofs", []),
            "signed_blocks": bundle.get("signed_blocks", []),
        }
    part = bundle.get(name)
    return dict(part) if isinstance(part, Mapping) else None


def _ends_as_stated(
    bundle: Mapping[str, Any],
    name: str,
    part: Mapping[str, Any] | None,
    stated: Mapping[str, Any],
    said: Mapping[str, Any],
) -> None:
    challenge_id, user_id = _owner(bundle)
    subject = said["subject"]
    if name == "journal" and subject != {"challenge_id": challenge_id}:
        raise _Unsound("journal: the statement of its extent is another challenge's")
    if name != "journal" and subject.get("user_id") != user_id:
        raise _Unsound(f"{name}: the statement of its extent is another user's")
    if "operations" in bundle and not _same_selection(subject, bundle.get("selector") or {}):
        raise _Unsound(f"{name}: the statement of its extent is of another selection")
    stream = str(stated["stream"])
    entries = list(part["entries"]) if part else []
    proofs = list(part["inclusion_proofs"]) if part else []
    if part and entries and part["stream"] != stream:
        raise _Unsound(f"{name}: the statement of its extent names another stream")
    proven = [(entry, p) for entry, p in zip(entries, proofs, strict=True) if p is not None]
    ends = int(proven[-1][0].get("seq", "0")) if proven else 0
    if ends != stated["seq"]:
        raise _Unsound(
            f"{name}: the bundle ends at entry {ends} of {stream}, the server's signed statement of its "
            f"extent at entry {stated['seq']} (block {stated['block']})"
        )
    if proven and (leaf_hash(stream, proven[-1][0]), proven[-1][1]["block"]) != (
        stated["leaf"],
        stated["block"],
    ):
        raise _Unsound(f"{name}: entry {ends} of {stream} is not the one the statement of its extent names")
    head = said["head"]
    blocks = [b["block"] for b in (part["signed_blocks"] if part else [])]
    if name == "journal":
        blocks += [
            s["block"] for s in ((bundle.get("journal_seals") or {}).get("given") or {}).get("seals", [])
        ]
    for value in blocks:
        block = Block.from_json(json.dumps(value))
        if block.number > head["number"] or (
            block.number == head["number"] and block.digest() != head["hash"]
        ):
            raise _Unsound(
                f"{name}: block {block.number} is not in the chain the statement of its extent ends"
            )


def _same_selection(subject: Mapping[str, Any], selector: Mapping[str, Any]) -> bool:
    """Whether the statement's query is the selection's (the user, the transaction, the same instants)."""
    if (subject.get("user_id"), subject.get("transaction_id")) != (
        selector.get("user_id"),
        selector.get("transaction_id"),
    ):
        return False
    return all(
        (subject.get(end) or "") == (selector.get(end) or "")
        or bool(
            subject.get(end) and selector.get(end) and _at({"at": subject[end]}) == _at({"at": selector[end]})
        )
        for end in ("since", "until")
    )


def _user_drawn(bundle: Mapping[str, Any], *, unsealed: bool) -> None:
    """A user's selection says what its proven events give, and holds every challenge the user's openings
    journal names in it, once each, oldest first (a saved one: assembling, the completeness is reported)."""
    lifecycle = (bundle.get("lifecycle") or {}).get("entries", [])
    selector = bundle.get("selector") or {}
    if bundle.get("risk_denials") != risk_denials(lifecycle, selector):
        raise _Unsound("the risk denials differ from the user's journal's")
    openings = (bundle.get("openings") or {}).get("entries", [])
    if bundle.get("completeness") != completeness(openings, bundle.get("found", []), selector):
        raise _Unsound("the completeness differs from the openings journal's")
    if not unsealed and not bundle["completeness"]["complete"]:
        broken = "; ".join(bundle["completeness"]["broken"])
        raise _Unsound(f"the selection is not the whole of the user's openings journal: {broken}")
    order = [
        (_at({"at": str(m.get("opened_at", ""))}), str(m.get("challenge_id", ""))) for m in bundle["found"]
    ]
    if any(later <= earlier for earlier, later in itertools.pairwise(order)):
        raise _Unsound("found: the challenges are not each once, oldest first")
    # Each challenge found has its operation's bundle, once, in the order found, and each is the user's
    # (each operation's bundle is checked apart: its opening, with the user, is proven there).
    found = [str(m.get("challenge_id", "")) for m in bundle.get("found", [])]
    operations = bundle.get("operations", [])
    if [op.get("challenge_id") for op in operations] != found:
        raise _Unsound("the operations are not the challenges found, one each")
    for op, match in zip(operations, bundle.get("found", []), strict=True):
        if _owner(op)[1] != bundle.get("user_id"):
            raise _Unsound(f"operation {op.get('challenge_id')}: another user's")
        _found_as_opened(match, op)


def _found_as_opened(match: Mapping[str, Any], op: Mapping[str, Any]) -> None:
    """What `found` says of a challenge (when opened, its transaction) is what its proven opening says
    (decision 0094): the index's word is shown, the journal's is checked."""
    opened: Mapping[str, Any] = next(
        (e for e in op.get("journal", []) if e.get("event") == "challenge.opened"), {}
    )
    transaction = (op.get("operation_as_authorised") or {}).get("transaction_id") or ""
    if _at({"at": str(match.get("opened_at", ""))}) != _at(opened) or (
        str(match.get("transaction_id") or "") != transaction
    ):
        raise _Unsound(f"found: {match.get('challenge_id')} is not as its journal's opening says")


def _challenge_drawn(bundle: Mapping[str, Any], jwks: Mapping[str, Any], *, unsealed: bool) -> None:
    """A challenge's bundle says what its proven events give (the PDF is drawn from it), and its proof
    verifies and is this challenge's."""
    journal = bundle.get("journal", [])
    challenge_id = bundle["challenge_id"]
    if any(e.get("challenge_id", challenge_id) != challenge_id for e in journal):
        raise _Unsound("journal: an entry names another challenge")
    _journal_whole(bundle, jwks, unsealed=unsealed)
    _extent_held(bundle, jwks, unsealed=unsealed)  # each part ends where the server's statement says
    if bundle.get("operation_as_authorised") != evidence.authorised_operation(journal):
        raise _Unsound("the operation as authorised differs from the journal's")
    _proof_bound(bundle, jwks)
    drawn = sections(bundle)
    if bundle["l133_23"] != drawn and bundle["l133_23"] != _as_before_0163(drawn, bundle):
        raise _Unsound("the L.133-23 sections differ from the events they are drawn from")


def _journal_whole(bundle: Mapping[str, Any], jwks: Mapping[str, Any], *, unsealed: bool) -> None:
    """The challenge's journal numbered 1, 2, ... in order, and checked again against the seals the bundle
    carries (with their leaves: a sealed entry left out, even the last, is found), as `journal_seals` says."""
    journal = bundle.get("journal", [])
    for expected, entry in enumerate(journal, start=1):
        if entry.get("seq") != str(expected):
            raise _Unsound(
                f"journal: entry {expected} is missing or out of place (found seq {entry.get('seq')})"
            )
    seals = bundle.get("journal_seals")
    if seals is None and unsealed:
        return  # assembling: a server that gave no seals (none yet); `journal_seals` says so
    given = seals.get("given") if isinstance(seals, Mapping) else None
    if (
        not isinstance(seals, Mapping)
        or not isinstance(given, Mapping)
        or given.get("stream") != bundle.get("journal_stream")
    ):
        raise _Unsound("journal: the bundle carries no seals of its stream")
    held = _seals(given)
    named = {int(b["block"]["number"]) for b in bundle.get("signed_blocks", [])}
    if not named <= {seal.block.number for seal in held}:
        raise _Unsound("journal: a block of its inclusion proofs is not among its seals")
    checked = check_stream(str(given["stream"]), journal, held, jwks).as_dict()
    if not checked["valid"]:
        raise _Unsound(f"journal: {checked['failed']}")
    if {k: v for k, v in seals.items() if k != "given"} != checked:
        raise _Unsound("journal: the journal check differs from the seals'")


def _unwitnessed(journal: Sequence[Mapping[str, str]]) -> bool:
    """Whether the journal's VERIFIED decision carries no witness (journaled before decision 0167)."""
    found = verified_entries(journal)
    return found is not None and not found[1].get("witness")


def _proof_bound(bundle: Mapping[str, Any], jwks: Mapping[str, Any]) -> None:
    """The proof verifies, is the one the journal names for this challenge, and the bundle shows its header,
    claims and checks as they are; a journal that names a proof has it in the bundle."""
    journal = bundle.get("journal", [])
    try:
        verified_entries(journal)  # a challenge's record edited in Redis (decision 0167)
    except JournalDisagrees as exc:
        raise _Unsound(f"journal: {exc}") from None
    section = bundle.get("proof")
    if not section:
        if named := proof_jti(journal):
            if _unwitnessed(journal):
                raise _Unsound(
                    f"proof: the journal names proof {named}, the bundle holds none: its decision was "
                    "journaled before decision 0167 (no witness) and its proof never kept, so it is no "
                    "longer signed from the journal; the proof VerifyChallenge gave stands"
                )
            raise _Unsound(f"proof: the journal names proof {named}, the bundle holds none")
        return
    try:
        parsed = evidence.check_proof(str(section.get("jws", "")), jwks)
    except evidence.ProofRejected as rejected:
        raise _Unsound(f"proof: {rejected}") from None
    if (section.get("header"), section.get("claims")) != (parsed.header, parsed.claims):
        raise _Unsound("proof: the header or claims shown are not those signed")
    if parsed.claims.get("challenge_id") != bundle["challenge_id"]:
        raise _Unsound("proof: it is another challenge's")
    if not evidence.claims_match_journal(parsed.claims, journal):
        raise _Unsound("proof: its claims are not those the journal gives")
    checks = section.get("verification") or {}
    shown = (checks.get("valid"), checks.get("claims_match_journal"), checks.get("signature"))
    if shown != (True, True, f"ES256, verified under {parsed.kid}"):
        raise _Unsound("proof: the checks shown are not those made")


def proof_jti(journal: Sequence[Mapping[str, str]]) -> str:
    """The jti of the proof the journal names ("" when none)."""
    return next((e.get("jti", "") for e in journal if e.get("event") == "challenge.proof"), "")


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
        "extents": [around["extent"]] if "extent" in around else [],
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    found["offline_check"] = verify(found, around.get("jwks") or {}, unsealed=True)
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


_NO_TIME = datetime.min.replace(tzinfo=UTC)  # an entry's time that is missing or unreadable


def _at(entry: Mapping[str, str]) -> datetime:
    try:
        at = datetime.fromisoformat(entry.get("at", ""))
    except ValueError:
        return _NO_TIME
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
