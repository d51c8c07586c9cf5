"""A journal entry deleted or edited in Redis does not change what `sesame evidence` proves, through the real
server.

The attack (issue 8): the journal was plain Redis streams; deleting one entry with XDEL went unnoticed and
`sesame evidence` still exited 0 with every check true. Now every entry is numbered in its stream and sealed
in a block signed in the HSM (docs/decisions/0027), and the archive is the authority for what it holds
(0037, amended): an entry deleted or edited in Redis once sealed is read as sealed; one lost before its seal
leaves a gap that makes `sesame evidence` exit 1 and name the check that failed; a clean journal passes.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from tests.e2e.conftest import Live, Served
from tests.e2e.helpers import CONTEXT, IBAN, PHONE, enrolled, started, transfer, verify, wrong
from tests.support.serve_process import journal_verify, sesame_on, start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _evidence(address: str, challenge_id: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sesame.server.cli", "evidence", challenge_id, "--target", address],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def sealed_flow(live: Live, *, drops: bool = True) -> str:
    """A wrong code, the right one and its proof, a refused cancel, all sealed: the challenge id.

    The refused cancel comes last: a deleted proof entry would be journaled again by the evidence's own call
    (it signs the proof again), which shows the deletion too, but as a gap, not as a sealed entry missing.
    `drops=False`: the closed challenge's journal stays in Redis once archived (decision 0037), for the tests
    that tamper with it there; once it left, the archive's copy is the one read.
    """
    challenge_id, code = await started(live, await enrolled(live))
    assert (await verify(live, challenge_id, wrong(code))).result == auth_pb.VERIFY_RESULT_WRONG_CODE
    assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_VERIFIED
    with pytest.raises(grpc.aio.AioRpcError):
        await live.auth.CancelChallenge(
            auth_pb.CancelChallengeRequest(challenge_id=challenge_id, context=CONTEXT)
        )
    assert live.sealer is not None
    live.sealer.drops_journals = drops
    assert await live.sealer.step() is not None  # the one sealer takes the lease and seals what waits
    return challenge_id


async def evidence(live: Live, challenge_id: str) -> tuple[int, dict[str, Any], str]:
    """`sesame evidence`: exit status, bundle, standard error."""
    done = await asyncio.to_thread(_evidence, live.address, challenge_id)
    return done.returncode, json.loads(done.stdout), done.stderr


async def test_a_clean_sealed_journal_passes(live: Live, redis_client: aioredis.Redis) -> None:
    """Its seals come from the archive: Redis let them go once archived (only the last one's head stays)."""
    challenge_id = await sealed_flow(live)
    assert await redis_client.xlen(live.store.keys.journal_seals()) == 0
    status, bundle, stderr = await evidence(live, challenge_id)
    assert status == 0, stderr[-2000:]
    checked = bundle["journal_seals"]
    assert (checked["valid"], checked["failed"]) == (True, None)
    assert checked["entries"] == checked["sealed_entries"] == len(bundle["journal"]) >= 5
    assert [e["seq"] for e in bundle["journal"]] == [str(n) for n in range(1, len(bundle["journal"]) + 1)]


async def _entries(client: aioredis.Redis, stream: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    return list(await client.xrange(stream))


def _events(journal: list[dict[str, str]]) -> list[tuple[str, str, str]]:
    return [(e["seq"], e["event"], e.get("outcome", "")) for e in journal]


@pytest.mark.parametrize("where", ["first", "middle", "last", "proof"])
async def test_an_entry_deleted_in_redis_after_its_seal_is_read_from_the_archive(
    live: Live, redis_client: aioredis.Redis, where: str
) -> None:
    """The archive is the authority for what it holds (decision 0037, amended after an outside audit, AV3):
    an entry deleted from the stream once sealed and archived is read from the archive, as sealed; the
    evidence is whole and its checks pass. (Read from Redis, the deletion showed as a gap; but then a copy
    written back in Redis was read instead of the sealed entries, and got a proof.)"""
    challenge_id = await sealed_flow(live, drops=False)
    stream = live.store.keys.challenge_journal(challenge_id)
    entries = await _entries(redis_client, stream)
    victim = {"first": entries[0], "middle": entries[2], "last": entries[-1], "proof": entries[4]}[where]
    assert entries[4][1][b"event"] == b"challenge.proof"
    status, before, stderr = await evidence(live, challenge_id)
    assert status == 0, stderr[-2000:]
    assert await redis_client.xdel(stream, victim[0]) == 1
    status, bundle, stderr = await evidence(live, challenge_id)
    assert status == 0, stderr[-2000:]
    assert bundle["journal_seals"]["valid"] is True
    assert _events(bundle["journal"]) == _events(before["journal"])


async def test_an_entry_edited_in_redis_after_its_seal_is_read_as_sealed(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """The stream rewritten with the same ids and numbers, a wrong code made a right one: the evidence reads
    the entry the archive sealed."""
    challenge_id = await sealed_flow(live, drops=False)
    stream = live.store.keys.challenge_journal(challenge_id)
    entries = await _entries(redis_client, stream)
    await redis_client.delete(stream)
    for entry_id, fields in entries:
        edited = {**fields, b"outcome": b"verified"} if fields.get(b"outcome") == b"wrong_code" else fields
        await redis_client.xadd(stream, edited, id=entry_id)
    status, bundle, stderr = await evidence(live, challenge_id)
    assert status == 0, stderr[-2000:]
    assert [e.get("outcome") for e in bundle["journal"]].count("wrong_code") == 1


async def _opening_deleted_then_sealed(live: Live, redis_client: aioredis.Redis, *, from_feed: bool) -> str:
    """A challenge whose opening is deleted from its stream (and `from_feed`, from the feed too) before its
    seal, then verified and sealed, its journal kept in Redis: the challenge id."""
    challenge_id, code = await started(live, await enrolled(live))
    stream = live.store.keys.challenge_journal(challenge_id)
    (opened, _), *_ = await _entries(redis_client, stream)
    await redis_client.xdel(stream, opened)
    for feed in live.store.keys.journal_feeds() if from_feed else []:
        await redis_client.xdel(feed, opened)
    assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_VERIFIED
    assert live.sealer is not None
    live.sealer.drops_journals = False
    await live.sealer.step()
    return challenge_id


async def test_an_entry_deleted_from_its_stream_before_its_seal_is_sealed_from_the_feed(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """Deleted from the challenge's stream within the second before the seal: the sealer seals the feed's
    copy, and the evidence reads it from the archive."""
    challenge_id = await _opening_deleted_then_sealed(live, redis_client, from_feed=False)
    status, bundle, stderr = await evidence(live, challenge_id)
    assert status == 0, stderr[-2000:]
    assert bundle["journal"][0]["event"] == "challenge.opened"


async def test_an_entry_deleted_before_its_seal_from_its_stream_and_feed_leaves_a_gap(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """Deleted from both the stream and the feed before the seal, an entry is lost: the numbers of the
    entries after it show the gap, and `sesame evidence` exits 1."""
    challenge_id = await _opening_deleted_then_sealed(live, redis_client, from_feed=True)
    status, bundle, _ = await evidence(live, challenge_id)
    assert status == 1
    assert bundle["journal_seals"]["failed"].startswith("entry 1 is missing")


def test_sesame_serve_seals_the_journal_within_seconds(served: Served) -> None:
    """`sesame serve` runs the sealer (in the worker holding the lease): a flow's journal gets sealed."""
    _sealed_start(served.address, "sealed")


def _sealed_start(address: str, user_id: str) -> None:
    """Enrol `user_id`, start a challenge for it, and wait (20 s at most) until its journal is sealed."""
    with grpc.insecure_channel(address) as channel:
        enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(
            enrol_pb.EnrollUserRequest(user_id=user_id, client_id="acme", secure_phone=PHONE), timeout=5
        )
        start = auth_pb.StartChallengeRequest(user_id=user_id, operation=transfer(), context=CONTEXT)
        challenge_id = (
            auth_grpc.AuthenticationServiceStub(channel).StartChallenge(start, timeout=5).challenge_id
        )
    deadline = time.monotonic() + 20
    while True:
        done = _evidence(address, challenge_id)
        assert done.returncode == 0, done.stderr[-2000:]
        checked = json.loads(done.stdout)["journal_seals"]
        if checked["sealed_entries"] == checked["entries"] >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert (checked["valid"], checked["sealed_entries"]) == (True, checked["entries"])
    assert checked["given"]["seals"][0]["block"]["kid"] == "sesame-journal-v1"


async def test_the_operation_as_authorised_outlives_the_challenge(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """Purged after its retention, the challenge no longer says what was authorised: the sealed journal does
    (amount, currency, payee name and IBAN, transaction id), its digest the one the proof signed."""
    challenge_id = await sealed_flow(live)
    await redis_client.delete(live.store.keys.challenge(challenge_id))  # what the purge does
    status, bundle, stderr = await evidence(live, challenge_id)
    assert status == 0, stderr[-2000:]
    assert bundle["challenge"] is None
    assert bundle["operation_as_authorised"] == {
        "type": "credit_transfer",
        "amount": {"currency": "EUR", "amount_minor": 125000},
        "payee": {"name": "Jean DUPONT", "iban": IBAN},
        "transaction_id": bundle["operation_as_authorised"]["transaction_id"],
        "digest_matches_journal": True,
    }
    assert bundle["proof"]["claims"]["op_digest"] == next(
        e["op_digest"] for e in bundle["journal"] if e["event"] == "challenge.opened"
    )
    assert bundle["journal_seals"]["valid"] is True


def test_journal_verify_checks_the_archive_sesame_serve_wrote(served: Served, tmp_path: Path) -> None:
    """The archive of `sesame serve` verifies with the HSM's journal keys; one edited byte breaks it."""
    test_sesame_serve_seals_the_journal_within_seconds(served)  # at least one flow, sealed and archived
    done = journal_verify(served.var / "journal", served.var)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert done.stdout.startswith("verified ")
    copy = tmp_path / "journal"
    shutil.copytree(served.var / "journal", copy)
    segment = max(copy.glob("segment-*.jsonl"))
    segment.write_text(
        segment.read_text(encoding="utf-8").replace('"opened"', '"cancelled"', 1), encoding="utf-8"
    )
    broken = journal_verify(copy, served.var)
    assert broken.returncode == 1
    assert "its entries are not the entries it seals" in broken.stdout


def test_journal_keys_of_a_token_that_holds_none_is_an_error(served: Served, tmp_path: Path) -> None:
    """`sesame journal keys` (and `verify` without --jwks, and `keys list`) on a directory no server used:
    exit 2, saying so, no token left behind; on a token without journal keys (made, no key yet): exit 2,
    saying so. It printed `{"keys": []}` with exit 0 (a set that, archived, verifies nothing) and made a
    token wherever it was run."""
    archive = str(served.var / "journal")
    other = tmp_path / "elsewhere"
    for args in (("journal", "keys"), ("journal", "verify", "--archive", archive), ("keys", "list")):
        done = sesame_on(other, *args)
        assert (done.returncode, done.stdout) == (2, ""), done.stdout + done.stderr[-2000:]
        assert f"no development token under {other.resolve()}: no `sesame serve`" in done.stderr
        assert not other.exists()
    bare = tmp_path / "bare"
    assert sesame_on(bare, "keys", "list").returncode == 2
    make = f"import pathlib, sesame.hsm.softhsm as s; s.bootstrap_dev_token(pathlib.Path({str(bare)!r}))"
    made = subprocess.run(
        [sys.executable, "-c", make], capture_output=True, text=True, timeout=60, check=False
    )
    assert made.returncode == 0, made.stderr[-2000:]
    for args in (("journal", "keys"), ("journal", "verify", "--archive", archive)):
        done = sesame_on(bare, *args)
        assert (done.returncode, done.stdout) == (2, ""), done.stdout + done.stderr[-2000:]
        assert f"the development token under {bare.resolve()} ('sesame') holds no journal key" in done.stderr
    listed = sesame_on(bare, "keys", "list")
    assert (listed.returncode, listed.stdout) == (0, ""), listed.stderr[-2000:]
    kept = sesame_on(served.var, "journal", "keys")
    assert kept.returncode == 0, kept.stderr[-2000:]
    assert [key["kid"] for key in json.loads(kept.stdout)["keys"]] == ["sesame-journal-v1"]


def test_a_torn_archive_tail_is_cut_off_when_sesame_serve_starts_again(tmp_path: Path) -> None:
    """The power lost while an archive line was being written, part of it on the disk: `sesame serve` started
    again on the same var/ cuts it off (its block was still in Redis), archives on after the lines before
    it, and the whole archive verifies (before, the next line was written onto the torn one: one line that
    neither `sesame journal verify` nor the evidence could read)."""
    var = tmp_path / "var"
    _served_once(var, "before-the-crash")
    segment = max((var / "journal").glob("segment-*.jsonl"))
    with segment.open("a", encoding="utf-8") as out:
        out.write('{"seal":{"block":{"number":')
    _served_once(var, "after-the-crash")
    done = journal_verify(var / "journal", var)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert done.stdout.startswith("verified ")


def _served_once(var: Path, user_id: str) -> None:
    """`sesame serve` on `var` until a Start of `user_id` is sealed; then stopped (SIGTERM)."""
    serving = start_serve(var)
    try:
        _sealed_start(serving.address, user_id)
    finally:
        serving.process.terminate()
        serving.process.wait(timeout=30)


def test_sesame_serve_seals_again_once_a_failing_archive_index_is_moved_aside(tmp_path: Path) -> None:
    """The archive's index damaged under a running `sesame serve` (a disk error): its worker logs that the
    journal is not being sealed and keeps trying; the file moved aside, a new Start is sealed and the whole
    archive verifies. On main the sealer's task ended at the first SQLite error: nothing was sealed again
    until a restart (decision 0078)."""
    var = tmp_path / "var"
    serving = start_serve(var)
    try:
        _sealed_start(serving.address, "before-the-damage")
        index = var / "journal" / "index.sqlite3"
        index.write_bytes(b"not a database, " * 512)
        with grpc.insecure_channel(serving.address) as channel:  # a Start whose block the index fails on
            enrol_grpc.EnrollmentServiceStub(channel).EnrollUser(
                enrol_pb.EnrollUserRequest(user_id="during", client_id="acme", secure_phone=PHONE), timeout=5
            )
        time.sleep(3)  # the sealer's steps fail on the index meanwhile
        index.rename(index.with_name("index.sqlite3.damaged"))
        _sealed_start(serving.address, "after-the-damage")  # sealed again: its sealer kept going
        assert "the journal is not being sealed: the archive's index failed" in serving.output()
    finally:
        serving.process.terminate()
        serving.process.wait(timeout=30)
    done = journal_verify(var / "journal", var)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert done.stdout.startswith("verified ")
