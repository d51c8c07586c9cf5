"""`RedisProofs`: the Proofs port on Redis (docs/decisions/0026, 0038).

The JWS kept once per challenge beside its journal; `record_proof.lua` works from the journal alone, so
also after the challenge itself was purged.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sesame.clients import redis_records as rec
from sesame.clients.redis_place import RedisPlace
from sesame.server.domain.errors import ChallengeNotFound
from sesame.server.domain.ports import Proofs
from sesame.server.domain.proof import IssuedProof


class RedisProofs(RedisPlace):
    """The proofs of verified challenges in Redis, kept once."""

    async def record_proof(self, proof: IssuedProof, at: datetime, *, journaled: bool) -> str:
        """Keep the proof once; return the one that stands (see the port). ChallengeNotFound."""
        challenge_id = proof.facts.challenge_id
        keys = [self.keys.challenge_journal(challenge_id), self.keys.challenge_proof(challenge_id)]
        kept_ms = int(self._retention.total_seconds() * 1000)  # as long as a challenge outlives its expiry
        args = [proof.jws, kept_ms, "1" if journaled else "0", *rec.proof_entry(proof, at)]
        reply = await self._run("record_proof", keys, args)
        match reply[0]:
            case b"not_found":
                raise ChallengeNotFound(challenge_id)
            case b"exists":
                return cast("bytes", reply[1]).decode(errors="replace")
        return proof.jws

    async def stored_proof(self, challenge_id: str) -> str:
        """The JWS kept by record_proof for the challenge, "" when none was kept yet."""
        raw = cast(
            "bytes | None",
            await self._scripts.call(
                "stored_proof", self._client.get(self.keys.challenge_proof(challenge_id))
            ),
        )
        return "" if raw is None else raw.decode(errors="replace")


_: type[Proofs] = RedisProofs
