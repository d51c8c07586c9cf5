"""The extent an evidence answer states, signed by the journal key (decision 0091).

A bundle proves each event it holds, and each stream's numbering from 1 without a gap; nothing proved where a
stream ends: the entries at the end of a stream that a block of their own holds could be cut off a saved
bundle with that block (and its seal), and it still verified. So the server, when it answers
GetChallengeEvidence or GetUserEvidence (first page), signs what it gave: for each stream of the answer, the
last entry it gave that a seal it gave covers (`seq`, entry `id`, `leaf`, `block`); the subject (the
challenge, or the user and the query); the newest sealed block then (`head`: number and hash); the instant.
The journal key signs it in the HSM as it signs blocks (ES256 over the canonical JSON); `type` keeps a
statement from ever reading as a block, and a block as a statement (a block has exactly its own fields).

Only the sealed extent is stated: an entry newer than the last seal given is not named, shows as
`uncovered` in the bundle's own `offline_check`, and fails `--verify` (ask again once sealed).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from sesame.server.domain.journal_seal import GENESIS, Block, Seal, canonical
from sesame.server.domain.model import KeyRef
from sesame.server.jwk_keys import es256_verifies, key_named, named_twice

TYPE = "sesame.bundle-extent.v1"
NONE_SEALED = {"seq": 0, "id": "0-0", "leaf": "", "block": 0}  # a stream the answer holds no sealed entry of
_FIELDS = {"type", "kid", "at", "subject", "streams", "head"}
_STREAM_FIELDS = {"stream", "seq", "id", "leaf", "block"}


class JournalSigner(Protocol):
    """The journal key in the HSM, as the sealer uses it (sealer.JournalKeys)."""

    async def current_journal_key(self) -> KeyRef:
        """The newest `sesame-journal-v<N>` key."""
        ...

    async def sign(self, key: KeyRef, data: bytes) -> bytes:
        """ES256 (raw r || s) of `data` under `key`."""
        ...


def stated_stream(
    stream: str, entries: Sequence[tuple[str, Mapping[str, str]]], seals: Sequence[Seal]
) -> dict[str, Any]:
    """What the answer holds of `stream`: its last entry among `entries` (id, fields) that one of `seals`
    covers, as sealed (the leaf and block of the seal, not a hash of what was read)."""
    sealed = {
        leaf.seq: (leaf.hash, seal.block.number)
        for seal in seals
        for leaf in seal.leaves
        if leaf.stream == stream
    }
    for entry_id, fields in reversed(entries):
        seq = _seq(fields)
        if seq in sealed:
            leaf, block = sealed[seq]
            return {"stream": stream, "seq": seq, "id": entry_id, "leaf": leaf, "block": block}
    return {"stream": stream, **NONE_SEALED}


def statement(
    subject: Mapping[str, str],
    streams: Mapping[str, Mapping[str, Any]],
    head: Block | None,
    kid: str,
    refusals: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The statement to sign: `streams` by the part of a bundle they fill (journal, lifecycle, health...);
    for a challenge's answer, the refusal counts it gave (`refusals`, decision 0102)."""
    said: dict[str, Any] = {
        "type": TYPE,
        "kid": kid,
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "subject": dict(subject),
        "streams": {name: dict(stated) for name, stated in streams.items()},
        "head": {"number": head.number, "hash": head.digest()} if head else {"number": 0, "hash": GENESIS},
    }
    if refusals is not None:
        said["refusals"] = [dict(count) for count in refusals]
    return said


async def signed(
    keys: JournalSigner,
    subject: Mapping[str, str],
    streams: Mapping[str, Mapping[str, Any]],
    head: Block | None,
    *,
    refusals: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The statement signed by the current journal key, in the HSM, as the sealer signs a block."""
    key = await keys.current_journal_key()
    said = statement(subject, streams, head, key.label, refusals)
    signature = await keys.sign(key, canonical(said))
    return {"statement": said, "signature": base64.urlsafe_b64encode(signature).decode().rstrip("=")}


def checked(value: Any, jwks: Mapping[str, Any]) -> dict[str, Any]:
    """The statement of a signed extent once its ES256 signature verifies under the journal key its `kid`
    names in `jwks`, and it is shaped as one. ValueError naming why not."""
    if not isinstance(value, Mapping) or set(value) != {"statement", "signature"}:
        raise ValueError("not a signed statement")
    said = value["statement"]
    if not isinstance(said, dict) or set(said) - {"refusals"} != _FIELDS or said.get("type") != TYPE:
        raise ValueError("not an extent statement")
    if not isinstance(said.get("refusals", []), list):
        raise ValueError("its refusals are not stated as a list")  # noqa: TRY004 (as every malformed part)
    streams, head = said["streams"], said["head"]
    if not isinstance(streams, dict) or not all(
        isinstance(s, dict) and set(s) == _STREAM_FIELDS and isinstance(s["seq"], int)
        for s in streams.values()
    ):
        raise ValueError("its streams are not stated as streams")
    if (
        not isinstance(head, dict)
        or not isinstance(head.get("number"), int)
        or not isinstance(said["subject"], dict)
    ):
        raise ValueError("its head or subject is malformed")  # noqa: TRY004 (as every other malformed part)
    jwk = key_named(jwks, str(said["kid"]))
    if named_twice(jwks, str(said["kid"])):
        raise ValueError(f"the JWK set names {said['kid']!r} for two different keys")
    if jwk is None:
        raise ValueError(f"no key {said['kid']!r} in the JWK set")
    text = str(value["signature"])
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if not es256_verifies(jwk, raw, canonical(said)):
        raise ValueError(f"the signature does not verify under {said['kid']!r}")
    return said


def _seq(fields: Mapping[str, str]) -> int:
    try:
        return int(fields.get("seq", "0"))
    except ValueError:
        return 0
