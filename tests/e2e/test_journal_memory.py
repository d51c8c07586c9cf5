"""A closed challenge's journal leaves Redis once archived, and every reader answers as before (issue 6
item 7, issue 8 item 2; docs/decisions/0037).

Through the real server: the same flow's evidence (`sesame evidence`), GetProof, the journal's pages
(GetChallengeEvidence) and `sesame journal verify` give the same answers before and after its stream was
dropped; an entry journaled after the drop carries on the stream's numbering; a crash between the archive and
the drop loses nothing (the next sealer catches up the archive's index and drops then), and nothing is dropped
that the archive did not take.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import evidence_service_pb2 as evidence_pb
from sesame.api.v1 import evidence_service_pb2_grpc as evidence_grpc
from sesame.clients.redis_journal import Lease
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.server.journal_archive import JournalArchive
from sesame.server.journal_index import INDEX_FILE
from sesame.server.sealer import Sealer
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, enrolled, started, verify, wrong

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sesame.server.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def evidence(live: Live, challenge_id: str) -> dict[str, Any]:
    """`sesame evidence`, which must exit 0: the bundle."""
    done = await asyncio.to_thread(_run, "evidence", challenge_id, "--target", live.address)
    assert done.returncode == 0, done.stderr[-2000:]
    bundle: dict[str, Any] = json.loads(done.stdout)
    return bundle


async def pages(live: Live, challenge_id: str) -> list[tuple[list[dict[str, str]], str]]:
    """Every page of GetChallengeEvidence, two entries a page: (entries, next token)."""
    stub = evidence_grpc.EvidenceServiceStub(live.channel)
    read, token = [], ""
    while True:
        page = await stub.GetChallengeEvidence(
            evidence_pb.GetChallengeEvidenceRequest(challenge_id=challenge_id, page_size=2, page_token=token)
        )
        read.append(([dict(e.fields) for e in page.journal], page.next_page_token))
        token = page.next_page_token
        if not token:
            return read


async def proof(live: Live, challenge_id: str) -> str:
    reply = await live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=challenge_id))
    return str(reply.proof)


def archive_of(live: Live) -> Path:
    return live.sms_file.parent / "journal-archive"  # where tests/support/wired_server.py puts it


async def journal_verify(live: Live, jwks: dict[str, Any]) -> str:
    keys = live.sms_file.parent / "journal-jwks.json"
    keys.write_text(json.dumps(jwks), encoding="utf-8")
    done = await asyncio.to_thread(
        _run, "journal", "verify", "--archive", str(archive_of(live)), "--jwks", str(keys)
    )
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    return done.stdout


async def closed_flow(live: Live) -> str:
    """A wrong code, the right one, a refused cancel: a closed challenge with its proof."""
    challenge_id, code = await started(live, await enrolled(live))
    assert (await verify(live, challenge_id, wrong(code))).result == auth_pb.VERIFY_RESULT_WRONG_CODE
    assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_VERIFIED
    with pytest.raises(grpc.aio.AioRpcError):
        await live.auth.CancelChallenge(
            auth_pb.CancelChallengeRequest(challenge_id=challenge_id, context=CONTEXT)
        )
    return challenge_id


async def answers(live: Live, challenge_id: str) -> tuple[Any, ...]:
    bundle = await evidence(live, challenge_id)
    assert bundle["journal_seals"]["valid"] is True
    assert bundle["offline_check"]["valid"] is True  # its statements of extent verified (decision 0091)
    for signed in bundle["extents"]:  # signed again at each answer: the same but for the instant
        signed["statement"]["at"] = signed["signature"] = ""
    bundle["l133_23"]["recorded"]["extent"]["stated_at"] = ""
    return bundle, await proof(live, challenge_id), await pages(live, challenge_id)


async def test_a_dropped_journal_answers_as_before(live: Live, redis_client: aioredis.Redis) -> None:
    """Sealed and archived, then dropped: the same evidence, proof, pages and archive check."""
    challenge_id = await closed_flow(live)
    sealer = live.sealer
    assert sealer is not None
    sealer.drops_journals = False
    await sealer.step()  # sealed and archived; the stream stays in Redis
    stream = live.store.keys.challenge_journal(challenge_id)
    assert await redis_client.exists(stream) == 1
    before = await answers(live, challenge_id)
    verified = await journal_verify(live, before[0]["journal_seals"]["given"]["jwks"])

    sealer.drops_journals = True
    assert await sealer.drop_journals({stream}) == {"dropped": 1}
    assert await redis_client.exists(stream) == 0
    tail = live.store.keys.journal_tail(stream)
    assert await redis_client.hget(tail, "seq") == str(len(before[0]["journal"])).encode()
    # The tail goes with the challenge hash: after both, the archive alone holds the journal.
    assert (
        0
        < await redis_client.pexpiretime(tail)
        == await redis_client.pexpiretime(live.store.keys.challenge(challenge_id))
    )
    assert await answers(live, challenge_id) == before
    assert await journal_verify(live, before[0]["journal_seals"]["given"]["jwks"]) == verified


async def test_an_entry_after_the_drop_carries_on_the_numbering(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """A refused resend journaled after the drop is entry n + 1 of the stream, sealed, then dropped too."""
    challenge_id = await closed_flow(live)
    assert live.sealer is not None
    await live.sealer.step()
    stream = live.store.keys.challenge_journal(challenge_id)
    assert await redis_client.exists(stream) == 0
    before = (await evidence(live, challenge_id))["journal"]
    with pytest.raises(grpc.aio.AioRpcError):
        await live.auth.ResendChallenge(
            auth_pb.ResendChallengeRequest(challenge_id=challenge_id, context=CONTEXT)
        )
    middle = await evidence(live, challenge_id)  # the archive's entries and the new one, not sealed yet
    assert middle["journal"][:-1] == before
    assert middle["journal"][-1]["seq"] == str(len(before) + 1)
    await live.sealer.step()
    assert await redis_client.exists(stream) == 0
    after = await evidence(live, challenge_id)
    assert after["journal"] == middle["journal"]
    assert (after["journal_seals"]["entries"], after["journal_seals"]["sealed_entries"]) == (
        len(before) + 1,
    ) * 2


async def test_an_open_challenge_keeps_its_journal_until_it_closes(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """Archived while open: kept in Redis (noted to see again at its expiry); dropped once verified."""
    challenge_id, code = await started(live, await enrolled(live))
    assert live.sealer is not None
    await live.sealer.step()
    stream = live.store.keys.challenge_journal(challenge_id)
    assert await redis_client.exists(stream) == 1
    assert await redis_client.zscore(live.store.keys.journal_kept(), stream) is not None
    assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_VERIFIED
    await live.sealer.step()
    assert await redis_client.exists(stream) == 0
    assert (await evidence(live, challenge_id))["journal_seals"]["valid"] is True


async def test_a_crash_between_the_archive_and_the_drop_loses_nothing(
    live: Live, redis_client: aioredis.Redis, keystore: Pkcs11KeyStore
) -> None:
    """The block archived (its index not written), then the sealer died: a new one drops, nothing is lost."""
    challenge_id = await closed_flow(live)
    sealer = live.sealer
    assert sealer is not None
    stream = live.store.keys.challenge_journal(challenge_id)
    journal = live.store.sealed_journal()
    assert await journal.lease(sealer.holder, timedelta(seconds=5)) is not Lease.ANOTHERS
    seal = await sealer.seal()
    assert seal is not None
    archive = JournalArchive(archive_of(live))
    archive.append(seal, await journal.sealed_entries(seal))  # fsync'ed; then the process dies
    (archive_of(live) / INDEX_FILE).unlink()  # before its index was written
    assert await redis_client.exists(stream) == 1
    await journal.release_lease(sealer.holder)

    again = Sealer(journal, keystore, JournalArchive(archive_of(live)))  # a new process, the same archive
    await again.step()
    assert await redis_client.exists(stream) == 0
    assert await redis_client.xlen(live.store.keys.journal_seals()) == 0
    bundle = await evidence(live, challenge_id)
    assert bundle["journal_seals"]["valid"] is True
    assert len(bundle["journal"]) == bundle["journal_seals"]["sealed_entries"] >= 5


async def test_nothing_is_dropped_that_the_archive_did_not_take(
    live: Live, redis_client: aioredis.Redis, keystore: Pkcs11KeyStore, tmp_path: Path
) -> None:
    """An archive that cannot be written (a file where its directory should be): the stream stays."""
    challenge_id = await closed_flow(live)
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("", encoding="utf-8")
    assert live.sealer is not None
    journal = live.store.sealed_journal()
    failing = Sealer(journal, keystore, JournalArchive(blocked / "journal"), holder=live.sealer.holder)
    await failing.step()  # seals, cannot archive: logged, retried
    stream = live.store.keys.challenge_journal(challenge_id)
    assert await redis_client.exists(stream) == 1
    # The tail keeps the numbering of a live stream (decision 0040); only a drop writes `through`.
    assert await redis_client.hget(live.store.keys.journal_tail(stream), "through") is None


async def test_get_proof_after_the_purge_reads_the_archive(live: Live, redis_client: aioredis.Redis) -> None:
    """Dropped, then purged with its tail: GetProof signs again the claims the archived journal fixed."""
    challenge_id, code = await started(live, await enrolled(live))
    jws = (await verify(live, challenge_id, code)).proof
    assert live.sealer is not None
    await live.sealer.step()
    stream = live.store.keys.challenge_journal(challenge_id)
    assert await redis_client.exists(stream) == 0
    await redis_client.delete(live.store.keys.challenge(challenge_id), live.store.keys.journal_tail(stream))
    again = await proof(live, challenge_id)
    assert again.rsplit(".", 1)[0] == jws.rsplit(".", 1)[0]  # same header and claims (jti included)
    bundle = await evidence(live, challenge_id)
    assert bundle["challenge"] is None
    assert bundle["proof"]["verification"]["claims_match_journal"] is True


async def _xranges(redis_client: aioredis.Redis) -> int:
    stats = await redis_client.info("commandstats")
    return int(stats.get("cmdstat_xrange", {}).get("calls", 0))


async def _dropped_tail(
    live: Live, redis_client: aioredis.Redis, challenge_id: str
) -> tuple[dict[bytes, bytes], int]:
    """Sealed and archived, then dropped: the tail's fields, and how many XRANGEs the drop ran."""
    sealer = live.sealer
    assert sealer is not None
    sealer.drops_journals = False
    await sealer.step()
    sealer.drops_journals = True
    stream = live.store.keys.challenge_journal(challenge_id)
    before = await _xranges(redis_client)
    assert await sealer.drop_journals({stream}) == {"dropped": 1}
    reads = await _xranges(redis_client) - before
    return await redis_client.hgetall(live.store.keys.journal_tail(stream)), reads


async def _proof_entries(live: Live, challenge_id: str) -> int:
    return sum(e["event"] == "challenge.proof" for e in (await evidence(live, challenge_id))["journal"])


async def test_a_dropped_journals_tail_keeps_its_numbering_only(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """The drop reads no entry and leaves the numbering (seq, prev, through); GetProof after it journals no
    second proof entry. The tail marked whether a VERIFIED decision and a proof entry left, for record_proof
    to read: Redis's word, which a writer changed (AW1); GetProof reads the archive instead."""
    challenge_id = await closed_flow(live)
    tail, reads = await _dropped_tail(live, redis_client, challenge_id)
    assert (set(tail), reads) == ({b"seq", b"prev", b"through"}, 0)
    await proof(live, challenge_id)
    assert await _proof_entries(live, challenge_id) == 1


async def test_a_cleared_mark_and_a_deleted_proof_journal_no_second_proof_entry(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """Found from outside (AW1): archived and dropped, its kept proof deleted and the tail's `named` mark
    cleared, GetProof appended a second `challenge.proof` entry, which the sealer sealed: the challenge's
    evidence failed for good (`claims_match_journal`). The journal read from the archive names the proof:
    nothing is appended, the same claims are signed again."""
    challenge_id = await closed_flow(live)
    await _dropped_tail(live, redis_client, challenge_id)
    first = await proof(live, challenge_id)
    stream = live.store.keys.challenge_journal(challenge_id)
    await redis_client.hset(live.store.keys.journal_tail(stream), "named", "0")
    await redis_client.delete(live.store.keys.challenge_proof(challenge_id))
    again = await proof(live, challenge_id)
    assert again.rsplit(".", 1)[0] == first.rsplit(".", 1)[0]
    assert await redis_client.exists(stream) == 0  # nothing appended
    bundle = await evidence(live, challenge_id)
    assert bundle["proof"]["verification"]["claims_match_journal"] is True
    assert await _proof_entries(live, challenge_id) == 1


async def test_an_entry_added_to_a_purged_journal_does_not_unverify_it(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """Found from outside (AW2): purged (hash and tail gone, the archive holding the journal), one entry
    added to its stream in Redis made GetProof and GetChallengeEvidence answer FAILED_PRECONDITION "challenge
    is not verified", for as long as the stream stayed: record_proof looked for the verification in Redis.
    The decision the archive holds, checked by the HSM, stands."""
    challenge_id, code = await started(live, await enrolled(live))
    jws = (await verify(live, challenge_id, code)).proof
    assert live.sealer is not None
    await live.sealer.step()  # sealed, archived, dropped
    stream = live.store.keys.challenge_journal(challenge_id)
    await redis_client.delete(live.store.keys.challenge(challenge_id), live.store.keys.journal_tail(stream))
    await redis_client.xadd(stream, {"event": "challenge.cancelled", "challenge_id": challenge_id})
    again = await proof(live, challenge_id)
    assert again.rsplit(".", 1)[0] == jws.rsplit(".", 1)[0]
    page = await evidence_grpc.EvidenceServiceStub(live.channel).GetChallengeEvidence(
        evidence_pb.GetChallengeEvidenceRequest(challenge_id=challenge_id)
    )
    assert page.proof.rsplit(".", 1)[0] == jws.rsplit(".", 1)[0]


async def test_a_locked_challenges_proof_is_refused_after_the_drop(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """Locked by wrong codes: GetProof refuses after the drop (the archive holds no VERIFIED decision)."""
    challenge_id, code = await started(live, await enrolled(live))
    result = auth_pb.VERIFY_RESULT_WRONG_CODE
    while result == auth_pb.VERIFY_RESULT_WRONG_CODE:
        result = (await verify(live, challenge_id, wrong(code))).result
    assert result == auth_pb.VERIFY_RESULT_LOCKED
    tail, reads = await _dropped_tail(live, redis_client, challenge_id)
    assert (set(tail), reads) == ({b"seq", b"prev", b"through"}, 0)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await proof(live, challenge_id)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_an_unreadable_archive_index_is_answered_internal_without_a_traceback_a_call(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    """Found from outside (AW): since the archive is read for every GetProof and evidence (AV3), its index
    failing (here not a database) made each call an unexpected failure, a traceback logged a call. It is
    `ArchiveUnreadable`: INTERNAL "server misconfigured", one ERROR a minute that says what failed."""
    challenge_id, code = await started(live, await enrolled(live))
    await verify(live, challenge_id, code)
    assert live.sealer is not None
    live.sealer.drops_journals = False
    await live.sealer.step()
    (archive_of(live) / INDEX_FILE).write_bytes(b"not a database" * 100)
    caplog.clear()
    stub = evidence_grpc.EvidenceServiceStub(live.channel)
    for _ in range(5):
        for call in (
            live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=challenge_id)),
            stub.GetChallengeEvidence(evidence_pb.GetChallengeEvidenceRequest(challenge_id=challenge_id)),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            assert (refused.value.code(), refused.value.details()) == (
                grpc.StatusCode.INTERNAL,
                "server misconfigured",
            )
    said = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in said if r.exc_info]
    assert len(said) == 2  # once for each method
    assert all("the journal archive cannot be read" in r.getMessage() for r in said)
