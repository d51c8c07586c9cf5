"""Each event of an evidence bundle with its RFC 6962 inclusion proof to a signed block (decision 0036).

The server gives the seals that cover the events (blocks, signatures, leaves). For each event this finds the
leaf that seals it (its stream, its number there, its hash) and gives the block's number, the leaf's index,
the tree's size and the audit path; the bundle keeps the signed blocks (without their leaves). Checking then
needs the event, its proof, the block and the journal keys' JWK set only: the leaf hash recomputed from the
event, the root recomputed from the path, the root and size those of the block, the block's ES256 signature.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sesame.server.domain.journal_seal import Block, Seal, leaf_hash
from sesame.server.domain.merkle_proof import audit_path, root_from_path
from sesame.server.journal_check import unsigned


@dataclass(frozen=True, slots=True)
class Event:
    """One journal entry as stored, and the stream it is in."""

    stream: str
    fields: Mapping[str, str]


def proofs(events: Sequence[Event], seals: Sequence[Seal]) -> list[dict[str, Any] | None]:
    """The inclusion proof of each event (None for an event no seal covers: too new, or not as sealed)."""
    where: dict[tuple[str, int], tuple[Seal, int]] = {}
    for seal in seals:
        for index, leaf in enumerate(seal.leaves):
            where[leaf.stream, leaf.seq] = (seal, index)
    found: list[dict[str, Any] | None] = []
    for event in events:
        place = where.get((event.stream, _seq(event.fields)))
        digest = leaf_hash(event.stream, event.fields)
        if place is None or place[0].leaves[place[1]].hash != digest:
            found.append(None)
            continue
        seal, index = place
        hashes = [sealed.hash for sealed in seal.leaves]
        found.append(
            {
                "block": seal.block.number,
                "leaf": digest,
                "leaf_index": index,
                "tree_size": len(hashes),
                "audit_path": audit_path(hashes, index),
            }
        )
    return found


def signed_blocks(seals: Sequence[Seal], proven: Sequence[dict[str, Any] | None]) -> list[dict[str, Any]]:
    """The signed blocks the proofs name, without their leaves, in order."""
    named = {proof["block"] for proof in proven if proof is not None}
    return [
        {
            "block": asdict(seal.block),
            "signature": base64.urlsafe_b64encode(seal.signature).decode().rstrip("="),
        }
        for seal in seals
        if seal.block.number in named
    ]


@dataclass(frozen=True, slots=True)
class InclusionCheck:
    """What checking the events' proofs found."""

    valid: bool
    failed: str  # "" when valid
    covered: int  # events whose proof verified to a signed block
    uncovered: int  # events without a proof (not sealed yet)

    def as_dict(self) -> dict[str, Any]:
        """For the bundle."""
        return {
            "valid": self.valid,
            "failed": self.failed or None,
            "covered": self.covered,
            "uncovered": self.uncovered,
        }


def check(
    events: Sequence[Event],
    proven: Sequence[dict[str, Any] | None],
    blocks: Sequence[Mapping[str, Any]],
    jwks: Mapping[str, Any],
) -> InclusionCheck:
    """Check each event's proof against the signed blocks with the JWK set only (see the module)."""
    try:
        seals = {seal.block.number: seal for seal in (_seal(value) for value in blocks)}
    except (ValueError, KeyError, TypeError) as exc:
        return InclusionCheck(False, f"the signed blocks cannot be read: {exc}", 0, 0)
    bad = [(n, why) for n, seal in seals.items() if (why := unsigned(seal, jwks))]
    if bad:
        return InclusionCheck(False, f"block {bad[0][0]}: {bad[0][1]}", 0, 0)
    covered = uncovered = 0
    for position, (event, proof) in enumerate(zip(events, proven, strict=True), start=1):
        if proof is None:
            uncovered += 1
            continue
        failure = _failure(event, proof, seals)
        if failure:
            return InclusionCheck(False, f"event {position} of {event.stream}: {failure}", covered, uncovered)
        covered += 1
    return InclusionCheck(True, "", covered, uncovered)


def _failure(event: Event, proof: Mapping[str, Any], seals: Mapping[int, Seal]) -> str:
    # Whole numbers as JSON gives them, never 3.5 or "3" or true: int() would read 3.5 as block 3 and prove
    # it, while the order of the steps sorts on the value as written (a verification put after a suspension).
    numbers = [proof["block"], proof["leaf_index"], proof["tree_size"]]
    if any(type(number) is not int for number in numbers):
        return "its block, leaf index and tree size are not whole numbers"
    seal = seals.get(proof["block"])
    if seal is None:
        return f"block {proof['block']} is not in the bundle"
    leaf = leaf_hash(event.stream, event.fields)
    if leaf != proof["leaf"]:
        return "the entry differs from the entry sealed"
    size = proof["tree_size"]
    root = root_from_path(leaf, proof["leaf_index"], size, [str(p) for p in proof["audit_path"]])
    if root is None or root != seal.block.root or size != seal.block.count:
        return f"its audit path does not lead to the root of block {seal.block.number}"
    return ""


def _seal(value: Mapping[str, Any]) -> Seal:
    signature = str(value["signature"])
    block = Block.from_json(json.dumps(value["block"]))
    return Seal(block, base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)), ())


def _seq(fields: Mapping[str, str]) -> int:
    try:
        return int(fields.get("seq", "0"))
    except ValueError:
        return 0
