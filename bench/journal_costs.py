"""CPU per journal entry spent by the sealer: sealing, draining into the archive, indexing, letting go.

`python -m bench.journal_costs` starts its own redis-server and SoftHSM token (private temporary
directories), then, round after round, opens and cancels `--flows` challenges through the real state store
(each writes its entries through `_journal.lua`: the challenge's, the user's, the feed), and times one
sealer's `seal()` and `drain()` as `sesame serve` runs them (the evidence index included): block after
block until none waits, as a step does. What it prints is the CPU time of this process (every thread: the
archive works in the thread pool) per journal entry, for the two steps and for the stages inside them,
summed over the rounds after the first (a warm-up). Redis's own CPU is not in it (INFO commandstats in
`bench.load` has it). CPU, not wall time, so that a loaded machine changes the figures less; still, compare
runs made in the same conditions.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench.backends import backends
from sesame.clients.redis_journal import Lease
from sesame.clients.redis_store import RedisState
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.server.domain.challenges import user_tag
from sesame.server.domain.model import (
    Challenge,
    ChallengeStatus,
    DeliveryState,
    RequestContext,
    User,
    UserStatus,
)
from sesame.server.domain.operation import Login
from sesame.server.journal_archive import JournalArchive
from sesame.server.sealer import Sealer, SealerTiming

PHONE = "+33612345678"
USERS = 50  # the flows' users, each with its own journal


class Stages:
    """CPU seconds and calls per stage, while counting."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.counting = False

    def add(self, name: str, seconds: float) -> None:
        if self.counting:
            self.cpu[name] = self.cpu.get(name, 0.0) + seconds
            self.calls[name] = self.calls.get(name, 0) + 1

    def wrap(self, owner: object, name: str, label: str) -> None:
        """Time `owner.name` (a method, async or not) under `label`: the process's CPU around each call."""
        method = getattr(owner, name)
        if asyncio.iscoroutinefunction(method):

            @functools.wraps(method)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                start = time.process_time()
                try:
                    return await method(*args, **kwargs)
                finally:
                    self.add(label, time.process_time() - start)

            setattr(owner, name, timed_async)
        else:

            @functools.wraps(method)
            def timed(*args: Any, **kwargs: Any) -> Any:
                start = time.process_time()
                try:
                    return method(*args, **kwargs)
                finally:
                    self.add(label, time.process_time() - start)

            setattr(owner, name, timed)


def _challenge(user_id: str, nonce: bytes, now: datetime) -> Challenge:
    return Challenge(
        challenge_id=f"{nonce.hex()}.k1.d6.u{user_tag(user_id)}",
        user_id=user_id,
        client_id="client-1",
        operation=Login(),
        nonce=nonce,
        key_version=1,
        digits=6,
        phone=PHONE,
        locale="fr",
        created_at=now,
        expires_at=now + timedelta(minutes=5),
        max_attempts=3,
        attempts=0,
        status=ChallengeStatus.OPEN,
        delivery=DeliveryState.PENDING,
        max_resends=3,
        resend_spacing=timedelta(seconds=30),
        resends=0,
        last_sent_at=now,
    )


async def _flows(store: RedisState, count: int, round_number: int) -> None:
    """Open and cancel `count` challenges, USERS users in turn, 50 at a time."""
    now = datetime.now(UTC)
    context = RequestContext()

    async def one(index: int) -> None:
        nonce = round_number.to_bytes(4, "big") + index.to_bytes(12, "big")
        challenge = _challenge(f"bench-{index % USERS}", nonce, now)
        await store.challenges.open_challenge(challenge, context)
        await store.challenges.cancel_challenge(challenge.challenge_id, now, context)

    for start in range(0, count, 50):
        await asyncio.gather(*(one(i) for i in range(start, min(start + 50, count))))


async def _run(args: argparse.Namespace, redis_url: str, keystore: Pkcs11KeyStore, archive: Path) -> None:
    client = aioredis.Redis.from_url(redis_url)
    store = RedisState.on(client)
    now = datetime.now(UTC)
    for n in range(USERS):
        user = User(f"bench-{n}", "client-1", PHONE, "fr", UserStatus.ACTIVE, now - timedelta(days=30))
        await store.users.register_user(user)
    journal = store.sealed_journal()
    sealer = Sealer(journal, keystore, JournalArchive(archive), holder="bench", index=store.evidence_index())
    stages = Stages()
    steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = [("seal", sealer.seal), ("drain", sealer.drain)]
    _instrument(stages, sealer, journal)
    entries = 0
    for round_number in range(args.rounds + 1):
        await _flows(store, args.flows, round_number)
        waiting = sum([await client.xlen(feed) for feed in store.keys.journal_feeds()])  # every shard's
        assert await journal.lease(sealer.holder, SealerTiming().lease) is not Lease.ANOTHERS
        stages.counting = round_number > 0  # the first round warms up
        sealed: object = True
        while sealed is not None:  # as a step does: block after block until none waits (BLOCK_ENTRIES each)
            for name, step in steps:
                start = time.process_time()
                done = await step()
                stages.add(f"{name} (whole)", time.process_time() - start)
                sealed = done if name == "seal" else sealed
        stages.counting = False
        if round_number > 0:
            entries += waiting
    await client.aclose()
    _report(args, stages, entries)


def _instrument(stages: Stages, sealer: Sealer, journal: Any) -> None:
    """Time the stages inside `seal()` and `drain()` (a stage the code does not call is absent)."""
    archive = sealer._archive  # noqa: SLF001 (the bench looks inside)
    for owner, name in [
        (journal, "last_seal"),
        (journal, "unsealed"),
        (journal, "record_seal"),
        (journal, "seals_from"),
        (journal, "stored_seals"),
        (journal, "sealed_entries"),
        (journal, "stored_entries"),
        (journal, "drop_archived"),
        (sealer, "_index_openings"),
        (sealer, "drop_journals"),
        (archive, "append"),
        (archive, "append_closed"),
        (archive, "catch_up_index"),
        (archive.index, "add"),
    ]:
        if hasattr(owner, name):
            stages.wrap(owner, name, f"{type(owner).__name__}.{name}")
    import sesame.server.sealer as sealer_module  # noqa: PLC0415 (close_block as the sealer calls it)

    stages.wrap(sealer_module, "close_block", "close_block")
    stages.wrap(sealer_module, "leaves_of", "leaves_of")


def _report(args: argparse.Namespace, stages: Stages, entries: int) -> None:
    per_entry = {name: round(cpu / max(entries, 1) * 1e6, 2) for name, cpu in stages.cpu.items()}
    flows = f"{args.rounds} rounds of {args.flows} flows (open + cancel)"
    print(f"{entries} entries over {flows}, CPU µs per entry:")
    for name, us in sorted(per_entry.items(), key=lambda kv: -kv[1]):
        print(f"  {name:34} {us:9.2f}   ({stages.calls[name]} calls)")
    if args.json:
        record = {"entries": entries, "rounds": args.rounds, "flows": args.flows, "us_per_entry": per_entry}
        args.json.write_text(json.dumps(record, indent=2) + "\n")


def main() -> None:
    """Start Redis and SoftHSM, run the rounds, print µs of CPU per entry per stage."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--flows", type=int, default=1000, help="challenges opened and cancelled per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds measured (after one warm-up round)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    with backends("sesame-journal-bench-") as (root, server, keystore):
        asyncio.run(_run(args, server.url, keystore, root / "archive"))


if __name__ == "__main__":
    main()
