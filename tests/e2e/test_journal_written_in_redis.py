"""What someone who can write to Redis, and not use the HSM, gets from the proofs (decision 0167), through the
real server, Redis and SoftHSM.

Found by an outside audit (AL1, AL2): one XADD of a VERIFIED decision on the journal of a challenge whose code
nobody typed got a signed proof from GetProof, and a bundle that checked valid; a challenge's record edited to
name another user before its code was typed gave a proof naming that user, and a bundle that checked valid
although its opening named the user the code was sent to.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import grpc
import pytest
import redis.asyncio as aioredis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import evidence_service_pb2 as evidence_pb
from sesame.api.v1 import evidence_service_pb2_grpc as evidence_grpc
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.server.domain import proof
from sesame.server.evidence import check_proof, claims_match_journal
from tests.e2e.conftest import Live
from tests.e2e.helpers import enrolled, started, verify
from tests.support.evidence_cli import run_evidence
from tests.support.jws import claims_of

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

EARLIER = b"an hour earlier"


async def _entries(redis_client: aioredis.Redis, live: Live, challenge_id: str) -> list[dict[bytes, bytes]]:
    journal = live.store.keys.challenge_journal(challenge_id)
    return [fields for _, fields in await redis_client.xrange(journal)]


async def _refused_proof(live: Live, challenge_id: str) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=challenge_id))
    return refused.value.code()


async def test_a_decision_written_in_redis_gets_no_proof(live: Live, redis_client: aioredis.Redis) -> None:
    await enrolled(live)
    other, code = await started(live, "alice")
    assert (await verify(live, other, code)).result == auth_pb.VERIFY_RESULT_VERIFIED
    witness = next(e for e in await _entries(redis_client, live, other) if b"witness" in e)[b"witness"]
    never_typed, _ = await started(live, "alice")
    opened = (await _entries(redis_client, live, never_typed))[0]
    forged = {**opened, b"event": b"challenge.verification", b"outcome": b"verified", b"attempts": b"1"}
    journal = live.store.keys.challenge_journal(never_typed)
    await redis_client.xadd(journal, forged)
    assert await _refused_proof(live, never_typed) is grpc.StatusCode.INTERNAL
    # Nor with the witness of another challenge's right code: it is its nonce's and operation's.
    await redis_client.xadd(journal, {**forged, b"witness": witness})
    assert await _refused_proof(live, never_typed) is grpc.StatusCode.INTERNAL
    reply = await live.auth.GetChallenge(auth_pb.GetChallengeRequest(challenge_id=never_typed))
    assert reply.challenge.status == auth_pb.CHALLENGE_STATUS_OPEN


async def test_a_challenge_edited_to_name_another_user_fails_its_bundle(
    live: Live, redis_client: aioredis.Redis
) -> None:
    await enrolled(live, "alice")
    await enrolled(live, "bob")
    challenge_id, code = await started(live, "alice")
    await redis_client.hset(live.store.keys.challenge(challenge_id), "user_id", "bob")
    reply = await verify(live, challenge_id, code)
    assert reply.result == auth_pb.VERIFY_RESULT_VERIFIED
    assert live.sealer is not None
    await live.sealer.step()
    await live.sealer.step()
    done = await asyncio.to_thread(run_evidence, challenge_id, "--target", live.address)
    assert done.returncode != 0, done.stdout[-2000:]
    bundle = json.loads(done.stdout)
    assert "the VERIFIED decision and the opening name another user_id" in done.stderr
    # The proof VerifyChallenge gave (naming bob) does not match that journal either.
    assert claims_of(reply.proof)["sub"] == "bob"
    assert claims_match_journal(claims_of(reply.proof), bundle["journal"]) is False


async def _rewritten(
    redis_client: aioredis.Redis, live: Live, challenge_id: str, changes: dict[bytes, bytes]
) -> None:
    """The challenge's journal written again, same ids, its opening and decisions with `changes` (an `at`
    of EARLIER: each entry's own instant, an hour earlier)."""
    journal = live.store.keys.challenge_journal(challenge_id)
    entries = await redis_client.xrange(journal)
    await redis_client.delete(journal)
    for entry_id, fields in entries:
        changed = fields[b"event"] in {b"challenge.opened", b"challenge.verification", b"challenge.proof"}
        edited = {**fields, **changes}
        if changes.get(b"at") == EARLIER:
            earlier = datetime.fromisoformat(fields[b"at"].decode()) - timedelta(hours=1)
            edited[b"at"] = earlier.isoformat(timespec="milliseconds").encode()
        await redis_client.xadd(journal, edited if changed else fields, id=entry_id)


@pytest.mark.parametrize(
    "changes",
    [
        {b"user_id": b"bob"},  # another user, of the same client
        {b"ip": b"198.51.100.66"},  # the end user's context
        {b"at": EARLIER},  # the instant
    ],
    ids=["user", "ip", "instant"],
)
async def test_a_journal_rewritten_whole_after_the_decision_gets_no_proof(
    live: Live, redis_client: aioredis.Redis, changes: dict[bytes, bytes]
) -> None:
    """Found from outside (AN1): the opening and the decision rewritten alike (another user, instant or IP),
    before any proof was kept, had GetProof sign the rewritten claims. The witness binds the instant and the
    context, the challenge id's tag the user."""
    await enrolled(live, "alice")
    await enrolled(live, "bob")
    challenge_id, code = await started(live, "alice")
    assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_VERIFIED
    await _rewritten(redis_client, live, challenge_id, changes)
    assert await _refused_proof(live, challenge_id) is grpc.StatusCode.INTERNAL


async def test_a_journal_written_again_unchanged_still_gets_its_proof(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """The same rewrite, nothing changed: the proof is signed (what the witness binds is read back whole)."""
    await enrolled(live, "alice")
    challenge_id, code = await started(live, "alice")
    assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_VERIFIED
    await _rewritten(redis_client, live, challenge_id, {})
    jws = (await live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=challenge_id))).proof
    assert claims_of(jws)["sub"] == "alice"


async def _opening_rewritten(
    redis_client: aioredis.Redis,
    live: Live,
    challenge_id: str,
    changes: dict[bytes, bytes],
    dropped: tuple[bytes, ...] = (),
) -> None:
    """The challenge's journal written again, same ids, its opening alone with `changes` and without
    `dropped`."""
    journal = live.store.keys.challenge_journal(challenge_id)
    entries = await redis_client.xrange(journal)
    await redis_client.delete(journal)
    for entry_id, fields in entries:
        edited = {name: value for name, value in {**fields, **changes}.items() if name not in dropped}
        opening = fields[b"event"] == b"challenge.opened"
        await redis_client.xadd(journal, edited if opening else fields, id=entry_id)


A_PASSWORD = {
    b"factor_category": b"knowledge",
    b"factor_method": b"password",
    b"factor_at": datetime.now().astimezone().isoformat(timespec="milliseconds").encode(),
    b"factor_ref": b"forged-ref",
}


@pytest.mark.parametrize(
    ("changes", "dropped"),
    [
        ({b"op": b"credit_transfer"}, ()),  # a login's opening said to be a transfer's
        ({b"op": b"add_beneficiary"}, (b"operation",)),  # the same, the operation's encoding taken out
        (A_PASSWORD, ()),  # a first factor never stated at Start
        ({b"key_version": b"7"}, ()),  # another OTP key than the challenge id's
    ],
    ids=["op", "op-unencoded", "start-factor", "key-version"],
)
async def test_an_opening_rewritten_after_the_decision_gets_no_proof(
    live: Live, redis_client: aioredis.Redis, changes: dict[bytes, bytes], dropped: tuple[bytes, ...]
) -> None:
    """Found from outside (AP1): the opening alone rewritten after the decision (its kind of operation, a
    first factor, its key version), before any proof was kept, had GetProof sign a login as a transfer
    authenticated with a password under VerifyChallenge's jti. The opening's own witness binds them."""
    await enrolled(live, "alice")
    login = op_pb.Operation(login=op_pb.Login())
    challenge_id, code = await started(live, "alice", login)
    assert (await verify(live, challenge_id, code, login)).result == auth_pb.VERIFY_RESULT_VERIFIED
    await _opening_rewritten(redis_client, live, challenge_id, changes, dropped)
    assert await _refused_proof(live, challenge_id) is grpc.StatusCode.INTERNAL


async def test_an_opening_written_again_unchanged_still_gets_its_proof(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """The opening rewritten as it was: the proof is signed, and states a login."""
    await enrolled(live, "alice")
    login = op_pb.Operation(login=op_pb.Login())
    challenge_id, code = await started(live, "alice", login)
    assert (await verify(live, challenge_id, code, login)).result == auth_pb.VERIFY_RESULT_VERIFIED
    await _opening_rewritten(redis_client, live, challenge_id, {})
    jws = (await live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=challenge_id))).proof
    assert claims_of(jws)["op"] == "login"


async def test_another_challenges_proof_written_in_place_is_not_answered(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """Found from outside (AS4): a user's login proof written as another challenge's kept proof was answered
    by GetProof for that transfer, even one never verified. A kept proof must be the challenge's, by the jti
    its decision journaled."""
    await enrolled(live, "alice")
    login = op_pb.Operation(login=op_pb.Login())
    verified_id, code = await started(live, "alice", login)
    assert (await verify(live, verified_id, code, login)).result == auth_pb.VERIFY_RESULT_VERIFIED
    jws = (await live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=verified_id))).proof
    transfer_id, _ = await started(live, "alice")
    await redis_client.set(live.store.keys.challenge_proof(transfer_id), jws)
    assert await _refused_proof(live, transfer_id) is grpc.StatusCode.INTERNAL


async def test_a_user_record_taken_out_gets_no_late_proof(live: Live, redis_client: aioredis.Redis) -> None:
    """Found from outside (AS3): the user's record deleted for the time of a GetProof, nothing held the
    journal's client against: a proof named the client the journal said. A user's record is never deleted."""
    await enrolled(live, "alice")
    challenge_id, code = await started(live, "alice")
    assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_VERIFIED
    user = live.store.keys.user("alice")
    saved = await redis_client.dump(user)
    await redis_client.delete(user)
    assert await _refused_proof(live, challenge_id) is grpc.StatusCode.INTERNAL
    await redis_client.restore(user, 0, saved)
    jws = (await live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=challenge_id))).proof
    assert claims_of(jws)["client_id"] == "acme"


def _high_s(jws: str) -> str:
    """The same proof with its signature's s made n - s: it verifies too, and Sésame never signs it."""
    signed, _, signature = jws.rpartition(".")
    raw = proof.b64url_decode(signature)
    s = proof.P256_ORDER - int.from_bytes(raw[32:], "big")
    return f"{signed}.{proof.b64url(raw[:32] + s.to_bytes(32, 'big'))}"


def _other_claims(jws: str) -> str:
    """The proof's header and signature over its claims with another `sub` and `amr`, its challenge and jti
    kept: a signature that does not verify."""
    header, body, signature = jws.split(".")
    claims = {**json.loads(proof.b64url_decode(body)), "sub": "mallory", "amr": ["pwd"]}
    return f"{header}.{proof.b64url(proof.canonical_json(claims))}.{signature}"


def _wrapped(jws: str) -> str:
    """The proof with a space before it and a newline after: not the compact form Sésame writes."""
    return f" {jws}\n"


def _not_utf8(jws: str) -> bytes:
    return b"\xff" + jws.encode()


@pytest.mark.parametrize("altered", [_other_claims, _high_s, _wrapped, _not_utf8])
async def test_a_kept_proof_altered_in_redis_is_not_answered(
    live: Live, redis_client: aioredis.Redis, altered: Callable[[str], str | bytes]
) -> None:
    """Found from outside (AT4): a kept proof rewritten in Redis with other claims under the real signature,
    or made high-S, was answered by GetProof as it was; only its challenge and jti were compared. Sésame
    answers no proof that `sesame proof verify` would refuse. Nor one wrapped in whitespace, answered as
    written (AU3), nor bytes that are not UTF-8, which failed GetProof and the evidence with a traceback
    (AU4)."""
    await enrolled(live, "alice")
    challenge_id, code = await started(live, "alice")
    assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_VERIFIED
    jws = (await live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=challenge_id))).proof
    kept = live.store.keys.challenge_proof(challenge_id)
    assert await redis_client.get(kept) == jws.encode()
    await redis_client.set(kept, altered(jws))
    assert await _refused_proof(live, challenge_id) is grpc.StatusCode.INTERNAL
    assert await _evidence_proof(live, challenge_id) == ""
    await redis_client.set(kept, jws)
    assert (await live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=challenge_id))).proof == jws


async def _evidence_proof(live: Live, challenge_id: str) -> str:
    stub = evidence_grpc.EvidenceServiceStub(live.channel)
    return (
        await stub.GetChallengeEvidence(evidence_pb.GetChallengeEvidenceRequest(challenge_id=challenge_id))
    ).proof


@pytest.mark.parametrize("whose", ["another challenge's", "its own made high-S"])
async def test_a_whole_proof_appended_to_the_journal_is_not_answered(
    live: Live, redis_client: aioredis.Redis, whose: str
) -> None:
    """Found from outside (AU1): a whole `challenge.proof` entry appended to a verified challenge's journal
    (as journaled before decision 0026) was given back by the keeping script as the proof that stands, and
    the first GetProof answered it unchecked: another user's login for a transfer, or a high-S copy. The
    evidence carried it too. Every proof read from Redis is checked before it is answered."""
    await enrolled(live, "alice")
    await enrolled(live, "bob")
    login = op_pb.Operation(login=op_pb.Login())
    other_id, other_code = await started(live, "bob", login)
    assert (await verify(live, other_id, other_code, login)).result == auth_pb.VERIFY_RESULT_VERIFIED
    challenge_id, code = await started(live, "alice")
    reply = await verify(live, challenge_id, code)
    assert reply.result == auth_pb.VERIFY_RESULT_VERIFIED
    planted = reply.proof
    if whose == "another challenge's":
        planted = (await live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=other_id))).proof
    else:
        planted = _high_s(planted)
    journal = live.store.keys.challenge_journal(challenge_id)
    await redis_client.xadd(
        journal, {"event": "challenge.proof", "challenge_id": challenge_id, "proof": planted}
    )
    assert await _refused_proof(live, challenge_id) is grpc.StatusCode.INTERNAL
    assert await _evidence_proof(live, challenge_id) == ""


async def test_an_archived_journal_written_again_in_redis_is_not_read_for_the_archives(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """Found from outside (AV3): whether the archive was read was Redis's to say (the tail's `through`, the
    stream's entries). A sealed, archived journal, its `through` taken out and a copy with another attempt
    count (a field no witness binds) written back in its stream, the kept proof deleted: GetProof signed the
    copy's claims under the decision's jti, and its bundle checked valid with no sealed entry. The archive
    is the authority for what it holds."""
    await enrolled(live, "alice")
    challenge_id, code = await started(live, "alice")
    assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_VERIFIED
    jws = (await live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=challenge_id))).proof
    journal = live.store.keys.challenge_journal(challenge_id)
    written = await redis_client.xrange(journal)
    assert live.sealer is not None
    await live.sealer.step()
    await live.sealer.step()
    await redis_client.hdel(live.store.keys.journal_tail(journal), "through")
    await redis_client.delete(journal, live.store.keys.challenge_proof(challenge_id))
    for _, fields in written:
        decided = fields[b"event"] in {b"challenge.verification", b"challenge.proof"}
        await redis_client.xadd(journal, {**fields, b"attempts": b"3"} if decided else fields)
    again = (await live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=challenge_id))).proof
    assert (claims_of(again)["attempts"], claims_of(again)["jti"]) == (1, claims_of(jws)["jti"])
    done = await asyncio.to_thread(run_evidence, challenge_id, "--target", live.address)
    bundle = json.loads(done.stdout)
    assert next(e["attempts"] for e in bundle["journal"] if e.get("event") == "challenge.verification") == "1"


@pytest.mark.parametrize("kid", ["sesame-journal-v1", "sesame-proof-v9"])
async def test_a_proof_entry_naming_another_key_gets_its_proof_from_a_published_proof_key(
    live: Live, redis_client: aioredis.Redis, kid: str
) -> None:
    """Found from outside (AV1): GetProof signed with whatever key the decision's proof entry named, a Redis
    field: the journal's seal key (key separation broken), or a proof key not published; the proof was
    answered and kept, `sesame proof verify` refused it, and every later GetProof was INTERNAL. Only a
    published proof key signs; the claims, jti included, are the decision's."""
    await enrolled(live, "alice")
    challenge_id, code = await started(live, "alice")
    reply = await verify(live, challenge_id, code)
    journal = live.store.keys.challenge_journal(challenge_id)
    for entry_id, fields in await redis_client.xrange(journal):
        if fields[b"event"] == b"challenge.proof":
            await redis_client.xdel(journal, entry_id)
            await redis_client.xadd(journal, {**fields, b"kid": kid.encode()})
    jws = (await live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=challenge_id))).proof
    jwks = json.loads((await live.auth.GetProofKeys(auth_pb.GetProofKeysRequest())).jwks_json)
    assert check_proof(jws, jwks).kid.startswith("sesame-proof-v")  # a published proof key's
    assert claims_of(jws)["jti"] == claims_of(reply.proof)["jti"]
    assert (await live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=challenge_id))).proof == jws
    assert await _evidence_proof(live, challenge_id) == jws


async def test_a_decisions_proof_entry_deleted_gets_no_proof_under_another_jti(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """Found from outside (AV2): the decision's proof entry deleted (and no proof kept), GetProof took the
    decision for one that named no proof and signed under a fresh jti, once more after every deletion: one
    decision, any number of valid proofs. The decision's witness binds the jti it named."""
    await enrolled(live, "alice")
    challenge_id, code = await started(live, "alice")
    assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_VERIFIED
    journal = live.store.keys.challenge_journal(challenge_id)
    named = [i for i, fields in await redis_client.xrange(journal) if fields[b"event"] == b"challenge.proof"]
    assert len(named) == 1
    await redis_client.xdel(journal, *named)
    assert await _refused_proof(live, challenge_id) is grpc.StatusCode.INTERNAL
    assert await _evidence_proof(live, challenge_id) == ""


async def test_a_refusal_repeated_logs_its_error_once_a_minute(
    live: Live, redis_client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Found from outside (AV4): a kept proof altered once in Redis, every GetProof a caller repeated wrote
    two ERROR lines (the proof flows' and the call's): 1 MB of log a second from one caller. Each is said
    once a minute, the next line counting those held back; every call is still refused."""
    await enrolled(live, "alice")
    challenge_id, code = await started(live, "alice")
    assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_VERIFIED
    jws = (await live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=challenge_id))).proof
    await redis_client.set(live.store.keys.challenge_proof(challenge_id), _high_s(jws))
    caplog.clear()
    for _ in range(50):
        assert await _refused_proof(live, challenge_id) is grpc.StatusCode.INTERNAL
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len([r for r in errors if r.name == "sesame.proofs"]) == 1  # this challenge's first
    assert len([r for r in errors if r.name == "sesame.grpc"]) <= 1


async def test_a_decoys_refusals_do_not_hold_back_another_challenges_error(
    live: Live, redis_client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Found from outside (AW5): the ERROR quota was per reason alone, so a decoy's altered proof, asked once
    a minute, kept another challenge's tampering out of the ERROR lines (and credited its count to the next
    line, naming some other challenge). The quota is per reason and challenge."""
    await enrolled(live, "alice")
    altered = []
    for _ in range(2):
        challenge_id, code = await started(live, "alice")
        assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_VERIFIED
        jws = (await live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=challenge_id))).proof
        await redis_client.set(live.store.keys.challenge_proof(challenge_id), _high_s(jws))
        altered.append(challenge_id)
    decoy, target = altered
    caplog.clear()
    for _ in range(5):
        assert await _refused_proof(live, decoy) is grpc.StatusCode.INTERNAL
    assert await _refused_proof(live, target) is grpc.StatusCode.INTERNAL
    said = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name == "sesame.proofs"]
    assert len(said) == 2  # the decoy's first, and the target's
