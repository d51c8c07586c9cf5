"""Every Redis key Sésame writes, under the hash tag of its shard (docs/decisions/0002, 0010, 0019, 0044).

Every key that a script writes lives in one of `SHARDS` places `{s:<n>}`, so that every script's keys are
in one hash slot, on one Redis as on Redis Cluster (decision 0044). A user's keys, its challenges' and its
own send budget are in the place of its shard, n = t mod SHARDS, t = the first 16 hex digits of
SHA-256(user id) (`user_tag`), which each challenge id carries (`<nonce>.k<v>.d<digits>.u<t>`): a
verification finds the challenge and its user in one place from the id alone. A client company's keys are
in its own id's shard, the key ledger and the health notes in shard 0. Each key in a place also names its
user, challenge or client, so that two of them sharing a shard share a slot, never a key. Each place has its
journal feed (the entries its scripts journal, read by the sealer) and its SMS outbox. The number's,
caller's and global send budgets share their own slot `{sb}` (`{sb}:phone:<hash>`, `{sb}:caller:<hash>`,
`{sb}:global:all`), held by a script of their own sent concurrently with Start's and Resend's steps
(docs/decisions/0011, 0014, 0046); the sealed blocks and the sealer's lease `{journal}`.
"""

from __future__ import annotations

import re
from typing import Final

from sesame.server.domain.challenges import user_tag

# The tag a challenge id carries; an id without one (not ours) is looked up in shard 0, where no challenge
# has that id.
_ID_TAG: Final = re.compile(r"\.u([0-9a-f]{16})$")
_CHALLENGE_JOURNAL: Final = re.compile(r"\}:ch:[^:]+:journal$")
# How many places the keys are spread over by default (SESAME_REDIS_SHARDS, decision 0058): fixed for a
# deployment's life (its keys are where it put them), recorded in Redis and checked at boot
# (`RedisState.check_layout`, decision 0044). A journal entry's id in
# its feed ends with its shard's number modulo FEED_RESIDUES (`_journal.lua`), so SHARDS may not exceed it.
SHARDS: Final = 16
FEED_RESIDUES: Final = 4096


class Keyspace:
    """Key names under one prefix (`sesame` unless a deployment shares its Redis)."""

    def __init__(self, prefix: str = "sesame", shards: int = SHARDS) -> None:
        if not 1 <= shards <= FEED_RESIDUES:
            raise ValueError(f"shards must be within 1..{FEED_RESIDUES}")
        self._prefix = prefix
        self._shards = shards

    @property
    def prefix(self) -> str:
        """What every key starts with."""
        return self._prefix

    @property
    def shards(self) -> int:
        """How many places the keys are spread over."""
        return self._shards

    def place(self, shard: int) -> str:
        """The place of shard `shard`: what its keys start with, up to its hash tag."""
        return f"{self._prefix}:{{s:{shard}}}"

    def places(self) -> list[str]:
        """Every shard's place, in order."""
        return [self.place(n) for n in range(self._shards)]

    def _tagged_place(self, tag: str) -> str:
        return self.place(self._tagged_shard(tag))

    def _tagged_shard(self, tag: str) -> int:
        return int(tag, 16) % self._shards

    def _user_place(self, user_id: str) -> str:
        return self._tagged_place(user_tag(user_id))

    def _challenge_place(self, challenge_id: str) -> str:
        match = _ID_TAG.search(challenge_id)
        return self._tagged_place(match.group(1)) if match else self.place(0)

    def place_of_challenge(self, challenge_id: str) -> str:
        """The place of the challenge's shard (its user's)."""
        return self._challenge_place(challenge_id)

    def place_of_user(self, user_id: str) -> str:
        """The place of the user's shard."""
        return self._user_place(user_id)

    def shard_of_challenge(self, challenge_id: str) -> int:
        """The number of the challenge's shard (its user's): whose outbox its SMS are queued in."""
        match = _ID_TAG.search(challenge_id)
        return self._tagged_shard(match.group(1)) if match else 0

    def shard_of_user(self, user_id: str) -> int:
        """The number of the user's shard: whose outbox its notices are queued in."""
        return self._tagged_shard(user_tag(user_id))

    def layout(self) -> str:
        """Where the shard count the deployment's keys were laid out with is recorded (decision 0044)."""
        return f"{self.place(0)}:layout"

    def user(self, user_id: str) -> str:
        """The user hash."""
        return f"{self._user_place(user_id)}:user:{user_id}"

    def user_journal(self, user_id: str) -> str:
        """The user's journal stream."""
        return f"{self._user_place(user_id)}:journal:{user_id}"

    def user_keys_beside(self, challenge_id: str) -> tuple[str, str]:
        """The names of a user's hash and journal, less the user id, in the challenge's place: a script that
        holds the challenge appends the user id the challenge stores (same slot by construction)."""
        place = self._challenge_place(challenge_id)
        return f"{place}:user:", f"{place}:journal:"

    def user_evidence(self, user_id: str) -> str:
        """The user's evidence index: its challenges by opening time (sorted set, decision 0036)."""
        return f"{self._user_place(user_id)}:evidence:{user_id}"

    def user_openings(self, user_id: str) -> str:
        """The user's openings journal: one sealed `user.challenge` entry per challenge indexed, against which
        a user's evidence is checked (a stream, trimmed to the retention; decision 0042)."""
        return f"{self._user_place(user_id)}:openings:{user_id}"

    def user_changes(self, user_id: str) -> str:
        """The request ids of the lifecycle changes applied to the user, with their fingerprints."""
        return f"{self._user_place(user_id)}:changes:{user_id}"

    def user_notice(self, user_id: str, notice_id: str) -> str:
        """An override's phone-changed notice's addressee (the old number): kept until the notice is sent or
        dead-lettered, expiring after the longest notice age (decision 0041)."""
        return f"{self._user_place(user_id)}:notice:{user_id}:{notice_id}"

    def notice_settled(self, user_id: str, entry_id: str) -> str:
        """The attempt whose notice (outbox entry `entry_id`) was journaled, for a day: its record asked again
        writes nothing (decision 0056)."""
        return f"{self._user_place(user_id)}:settled:{user_id}:{entry_id}"

    def notice_unconfirmed(self, user_id: str, entry_id: str) -> str:
        """The mark that a try of the notice (outbox entry `entry_id`) may have reached the phone, kept as
        long as a dead letter: the notice given up later reads `unconfirmed` (decision 0097)."""
        return f"{self._user_place(user_id)}:unconfirmed:{user_id}:{entry_id}"

    def user_pending(self, user_id: str) -> str:
        """The user's OPEN challenges, scored by their expiry (unix ms): each leaves it in the step that
        closes it (verified, locked, voided, cancelled), or expired, at the user's next opening (0093)."""
        return f"{self._user_place(user_id)}:pending:{user_id}"

    def pending_beside(self, challenge_id: str) -> str:
        """The name of a user's pending index less the user id, in the challenge's place (as
        `user_keys_beside`: the script appends the user id the challenge stores)."""
        return f"{self._challenge_place(challenge_id)}:pending:"

    def user_risk(self, user_id: str, part: str) -> str:
        """One part of the user's risk memory (`payees`, `added`, `amounts`, `ips`, `devices`, `ops`):
        bounded, expiring, in the user's place (docs/risk.md; denials are in the user's journal: 0042)."""
        return f"{self._user_place(user_id)}:risk:{user_id}:{part}"

    def user_risk_beside(self, challenge_id: str) -> str:
        """The name of a user's risk memory parts less the user id and part, in the challenge's place (as
        `user_keys_beside`: the script appends the user id the challenge stores, then `:<part>`)."""
        return f"{self._challenge_place(challenge_id)}:risk:"

    def start_request(self, user_id: str, request_id: str) -> str:
        """The idempotency key of one StartChallenge request (the request id last: the user id is not)."""
        return f"{self._user_place(user_id)}:request:{len(user_id)}:{user_id}:{request_id}"

    def resend_request(self, user_id: str, request_id: str) -> str:
        """The claim of one ResendChallenge request id (decision 0065), expiring with its challenge."""
        return f"{self._user_place(user_id)}:resend:{len(user_id)}:{user_id}:{request_id}"

    def challenge(self, challenge_id: str) -> str:
        """The challenge hash, in its user's place."""
        return f"{self._challenge_place(challenge_id)}:ch:{challenge_id}"

    def challenge_journal(self, challenge_id: str) -> str:
        """The challenge's journal stream (it outlives the challenge)."""
        return f"{self.challenge(challenge_id)}:journal"

    def journal_tail(self, stream: str) -> str:
        """Where a journal stream's numbering stands (a hash): its last number and id, written with each
        entry (decision 0040); once dropped from Redis after the archive took it (decision 0037), also the
        last id that left (older entries are read from the archive) and whether those held a VERIFIED
        decision and a proof entry, and it then expires with the challenge hash."""
        return f"{stream}:tail"

    def is_challenge_journal(self, stream: str) -> bool:
        """Whether `stream` is a challenge's journal (the ones dropped from Redis once archived)."""
        return stream.startswith(f"{self._prefix}:{{s:") and _CHALLENGE_JOURNAL.search(stream) is not None

    def challenge_of_journal(self, stream: str) -> str:
        """The challenge hash whose journal `stream` is."""
        return stream.removesuffix(":journal")

    def challenge_proof(self, challenge_id: str) -> str:
        """The JWS of the challenge's proof, once signed after its decision (a string; decision 0026)."""
        return f"{self.challenge(challenge_id)}:proof"

    def challenge_refusals(self, challenge_id: str) -> str:
        """How many times each kind of refusal was answered for the challenge, and when last (a hash).

        Only the first refusal of a kind is journaled: this keeps the journal bounded (it outlives the
        challenge, and so does this hash).
        """
        return f"{self.challenge(challenge_id)}:refusals"

    def _client_place(self, client_id: str) -> str:
        return self._tagged_place(user_tag(client_id))

    def client(self, client_id: str) -> str:
        """The client company's hash (status)."""
        return f"{self._client_place(client_id)}:client:{client_id}"

    def client_users(self, client_id: str) -> str:
        """The ids of the users the client designated (a set)."""
        return f"{self._client_place(client_id)}:client-users:{client_id}"

    def client_journal(self, client_id: str) -> str:
        """The client company's journal stream."""
        return f"{self._client_place(client_id)}:client-journal:{client_id}"

    def send_budget(self, kind: str, key: str) -> str:
        """The SMS sent to one subject in the rolling window (a sorted set scored by unix ms).

        `key` is a user id (the user's budget lives in the user's place), or the hash of a number or caller
        (`BudgetSubject`): never the number itself.
        """
        if kind == "user":
            return f"{self._user_place(key)}:sends:{key}"
        # The number's, caller's and global budgets share one slot, so that one script holds them (0046).
        return f"{self._prefix}:{{sb}}:{kind}:{key}"

    def send_units_held(self, kind: str, key: str) -> str:
        """The units of a `{sb}` budget held for SMS not handed over yet (a sorted set scored by unix ms;
        members: the holds' names). take_send_units.lua and spend_send_units.lua name it so too."""
        return f"{self.send_budget(kind, key)}:held"

    def send_hold(self, name: str) -> str:
        """The record of one hold (decision 0046): the budgets it holds, with their limits and windows."""
        return f"{self._prefix}:{{sb}}:hold:{name}"

    def outbox(self, shard: int) -> str:
        """The shard's SMS outbox: a stream of the SMS queued by Start and Resend in that place, read by the
        dispatchers' consumer group; an entry is deleted once its send is recorded (decisions 0025, 0044)."""
        return f"{self.place(shard)}:outbox"

    def outbox_of(self, challenge_id: str) -> str:
        """The outbox of the challenge's shard: where its SMS and its user's notices are queued."""
        return f"{self._challenge_place(challenge_id)}:outbox"

    def user_outbox(self, user_id: str) -> str:
        """The outbox of the user's shard: where its notices are queued (its challenges' SMS too)."""
        return f"{self._user_place(user_id)}:outbox"

    def outboxes(self) -> list[str]:
        """Every shard's outbox, in order."""
        return [self.outbox(n) for n in range(self._shards)]

    def dead_letters(self, shard: int) -> str:
        """The SMS given up on: a stream of masked lines beside the shard's outbox, bounded and expiring
        (docs/decisions/0033)."""
        return f"{self.place(shard)}:dead"

    def dead_letters_of(self, challenge_id: str) -> str:
        """The dead letters beside the outbox of the challenge's shard."""
        return f"{self._challenge_place(challenge_id)}:dead"

    def user_dead_letters(self, user_id: str) -> str:
        """The dead letters beside the outbox of the user's shard."""
        return f"{self._user_place(user_id)}:dead"

    def key_ledger(self) -> str:
        """The highest key version seen per kind and each label's fingerprint (docs/decisions/0015)."""
        return f"{self.place(0)}:keys:ledger"

    def key_ledger_journal(self) -> str:
        """The key ledger's journal stream: which labels were first seen, and when."""
        return f"{self.place(0)}:keys:journal"

    def journal_feed(self, shard: int) -> str:
        """Every journal entry of the shard's place not sealed yet, with its stream's name (`_journal.lua`,
        decisions 0027 and 0044): the place's tag then `:feed`."""
        return f"{self.place(shard)}:feed"

    def journal_feeds(self) -> list[str]:
        """Every shard's feed, in order: the sealer reads them all and seals them together."""
        return [self.journal_feed(n) for n in range(self._shards)]

    def journal_seals(self) -> str:
        """The sealed blocks, each under the id of the last entry it seals (a stream)."""
        return f"{self._prefix}:{{journal}}:seals"

    def journal_head(self) -> str:
        """The last archived seal's block and signature (a hash): the next block follows it."""
        return f"{self._prefix}:{{journal}}:head"

    def health_journal(self) -> str:
        """The health notes' journal stream: the dependencies' state, on each change (decision 0036)."""
        return f"{self.place(0)}:health:journal"

    def journal_kept(self) -> str:
        """The archived challenge journals kept in Redis while their challenge is open, scored by its expiry
        (unix ms): dropped once it passed or the challenge closed (a sorted set; decision 0037)."""
        return f"{self._prefix}:{{journal}}:kept"

    def journal_sealer(self) -> str:
        """The sealer's lease: the holder's name, with an expiry it renews."""
        return f"{self._prefix}:{{journal}}:sealer"

    def provider_id(self, provider_id: str) -> str:
        """Which message an SMSC's message id is a part of (a hash with a TTL; docs/decisions/0030)."""
        return f"{self._prefix}:{{pid:{provider_id}}}:owner"

    def parts_delivered(self, provider_ref: str) -> str:
        """The SMSC ids of a message's parts reported delivered (a set with a TTL)."""
        return f"{self._prefix}:{{pm:{provider_ref}}}:delivered"
