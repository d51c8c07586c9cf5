"""`sesame journal verify` on an archive: 1,000 random tamperings, every one detected (issue 8, done when)."""

from __future__ import annotations

import dataclasses
import random

from sesame.server.domain.journal_seal import FeedEntry
from sesame.server.journal_archive import ArchivedBlock
from sesame.server.journal_verify import verify_archive
from tests.unit.test_journal_seal import KID, Signer

STREAMS = [f"sesame:{{u:{n}}}:ch:c{n}:journal" for n in range(3)]
TAMPERINGS = 1000


def an_archive(signer: Signer, blocks: int = 6, per_block: int = 4) -> list[ArchivedBlock]:
    """Blocks of entries spread over three streams, numbered and linked as `_journal.lua` does."""
    heads = dict.fromkeys(STREAMS, (0, "0-0"))
    archive, previous, n = [], None, 0
    for _ in range(blocks):
        entries = []
        for _ in range(per_block):
            n += 1
            stream = STREAMS[n % len(STREAMS)]
            seq, prev = heads[stream]
            fields = {
                "event": "challenge.delivery",
                "at": f"t{n}",
                "outcome": "sent",
                "seq": str(seq + 1),
                "prev": prev,
            }
            entries.append(FeedEntry(f"{1000 + n}-0", stream, fields))
            heads[stream] = (seq + 1, f"{1000 + n}-0")
        seal = signer.seal(previous, entries)
        archive.append(ArchivedBlock(seal, tuple(entries)))
        previous = seal.block
    return archive


def tamper(archive: list[ArchivedBlock], rng: random.Random) -> tuple[str, list[ArchivedBlock]]:
    """One random tampering of a copy: edit a field, delete (first, last, any), reorder, duplicate,
    truncate, forge, swap or replay a seal."""
    blocks = list(archive)
    i = rng.randrange(len(blocks))
    entries = list(blocks[i].entries)
    j = rng.randrange(len(entries))
    kind = rng.choice(
        [
            "edit",
            "delete",
            "delete first",
            "delete last",
            "reorder",
            "duplicate",
            "truncate",
            "forge",
            "swap",
            "replay",
        ]
    )
    if kind in SEAL_TAMPERINGS:
        return kind, tamper_seals(kind, blocks, i, rng)
    match kind:
        case "edit":
            name = rng.choice(sorted(entries[j].fields))
            edited = {**entries[j].fields, name: "x" + entries[j].fields[name]}
            entries[j] = dataclasses.replace(entries[j], fields=edited)
        case "delete":
            del entries[j]
        case "delete first":
            i, entries = 0, list(blocks[0].entries[1:])
        case "delete last":
            i, entries = len(blocks) - 1, list(blocks[-1].entries[:-1])
        case "reorder":
            k = (j + 1) % len(entries)
            entries[j], entries[k] = entries[k], entries[j]
        case "duplicate":
            entries.insert(j, entries[j])
    blocks[i] = ArchivedBlock(blocks[i].seal, tuple(entries))
    return kind, blocks


SEAL_TAMPERINGS = ("truncate", "forge", "swap", "replay")


def tamper_seals(kind: str, blocks: list[ArchivedBlock], i: int, rng: random.Random) -> list[ArchivedBlock]:
    """Truncate the archive's start, forge a signature, swap two blocks or replay one."""
    match kind:
        case "truncate":
            return blocks[1:]  # the archive's first segment says it starts at block 1
        case "forge":
            signature = bytearray(blocks[i].seal.signature)
            signature[rng.randrange(64)] ^= 1 << rng.randrange(8)
            forged = dataclasses.replace(blocks[i].seal, signature=bytes(signature))
            blocks[i] = ArchivedBlock(forged, blocks[i].entries)
        case "swap":
            k = (i + 1) % len(blocks)
            blocks[i], blocks[k] = blocks[k], blocks[i]
        case _:
            blocks.insert(i + 1, blocks[i])
    return blocks


def test_a_clean_archive_verifies() -> None:
    checked = verify_archive(an_archive(Signer()), Signer().jwks)
    assert not checked.valid  # another key: nothing verifies
    signer = Signer()
    checked = verify_archive(an_archive(signer), signer.jwks)
    assert (checked.valid, checked.blocks, checked.entries) == (True, 6, 24)


def test_a_key_the_jwk_set_lacks_is_named_not_taken_for_a_forged_signature() -> None:
    """A JWK set saved before a rotation of the journal key: the archive's newer blocks are signed by a key
    the set does not hold. `journal verify` said `the signature does not verify`, as for a forged block (the
    runbook's tampering case); it names the missing key, as `sesame proof verify` does for a proof."""
    signer = Signer()
    checked = verify_archive(an_archive(signer), {"keys": []})
    assert not checked.valid
    assert checked.failed == f"block 1: no key {KID!r} in the JWK set"
    forged = an_archive(signer)
    forged[0] = ArchivedBlock(dataclasses.replace(forged[0].seal, signature=bytes(64)), forged[0].entries)
    assert (
        verify_archive(forged, signer.jwks).failed == f"block 1: the signature does not verify under {KID!r}"
    )


def test_every_one_of_1000_random_tamperings_is_detected() -> None:
    signer, rng = Signer(), random.Random(20261130)
    archive = an_archive(signer)
    detected: dict[str, int] = {}
    for _ in range(TAMPERINGS):
        kind, tampered = tamper(archive, rng)
        checked = verify_archive(tampered, signer.jwks)
        assert not checked.valid, kind
        detected[kind] = detected.get(kind, 0) + 1
    print(f"detected {sum(detected.values())} of {TAMPERINGS} tamperings: {detected}")  # noqa: T201
    assert sum(detected.values()) == TAMPERINGS
