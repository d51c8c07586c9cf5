"""Signed proofs over gRPC, with SoftHSM and Redis: checked with `cryptography` against the served JWK set."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from cryptography.exceptions import InvalidSignature
from pkcs11 import Attribute, KeyType, MechanismFlag, ObjectClass

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import evidence_service_pb2 as evidence_pb
from sesame.api.v1 import evidence_service_pb2_grpc as evidence_grpc
from sesame.clients.redis_store import RedisState
from sesame.hsm.keys import init_keys, rotate_keys
from sesame.hsm.pkcs11 import P256_PARAMS, Pkcs11Config, Pkcs11KeyStore
from sesame.hsm.session import TokenSession
from sesame.server.domain.errors import HsmUnavailable, StoreUnavailable
from sesame.server.domain.model import KeyKind
from sesame.server.domain.proof import IssuedProof, ProofFacts
from sesame.server.grpc.demo import run_demo
from tests.e2e.conftest import Live
from tests.e2e.helpers import enrolled, started, transfer, verify, wrong
from tests.e2e.test_key_readiness import destroy
from tests.support.jws import claims_of, header_of, verified_claims, with_claims
from tests.support.wired_server import start_wired

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


async def served_jwks(live: Live) -> dict[str, Any]:
    """The JWK set the server publishes."""
    reply = await live.auth.GetProofKeys(auth_pb.GetProofKeysRequest())
    jwks: dict[str, Any] = json.loads(reply.jwks_json)
    return jwks


async def a_proof(live: Live, user_id: str = "alice") -> tuple[str, str]:
    """Verify a fresh challenge of the user: (challenge_id, proof)."""
    challenge_id, code = await started(live, await enrolled(live, user_id))
    reply = await verify(live, challenge_id, code)
    assert reply.result == auth_pb.VERIFY_RESULT_VERIFIED
    return challenge_id, reply.proof


async def test_a_proof_verifies_with_the_published_keys(live: Live) -> None:
    """A VERIFIED answer's proof checks, by `cryptography` alone, under the JWK set GetProofKeys serves."""
    challenge_id, jws = await a_proof(live)
    claims = verified_claims(jws, await served_jwks(live))
    assert (claims["sub"], claims["challenge_id"], claims["op"]) == ("alice", challenge_id, "credit_transfer")


async def test_changing_any_claim_breaks_the_proof(live: Live) -> None:
    """Each claim changed in turn, the header and signature kept, fails the signature check."""
    _, jws = await a_proof(live)
    jwks = await served_jwks(live)
    claims = claims_of(jws)
    for name, value in claims.items():
        with pytest.raises(InvalidSignature):
            verified_claims(with_claims(jws, {**claims, name: _changed(value)}), jwks)


def _changed(value: Any) -> Any:
    """Another value of the same JSON type."""
    match value:
        case int():
            return value + 1
        case list():
            return [*value, "x"]
        case dict():
            return {**value, "ip": "192.0.2.66"}
        case _:
            return f"{value}x"


async def test_a_proof_signed_before_a_rotation_still_verifies(
    live: Live, keystore: Pkcs11KeyStore, hsm_config: Pkcs11Config
) -> None:
    """After a proof key rotation, new proofs name the new key and the old proof checks under the new set."""
    _, before = await a_proof(live, "alice")
    rotate_keys(hsm_config, KeyKind.PROOF)
    await keystore.refresh_keys()
    _, after = await a_proof(live, "bob")
    jwks = await served_jwks(live)
    old_kid, new_kid = header_of(before)["kid"], header_of(after)["kid"]
    assert new_kid == (await keystore.current_proof_key()).label != old_kid
    assert verified_claims(before, jwks)["sub"] == "alice"
    assert verified_claims(after, jwks)["sub"] == "bob"


async def test_get_proof_returns_the_proof_verify_gave(live: Live) -> None:
    """GetProof of a verified challenge states what VerifyChallenge's proof stated, byte for byte (header and
    claims, the jti the decision journaled), signed again; then it returns that one proof every time."""
    challenge_id, jws = await a_proof(live)
    again = (await live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=challenge_id))).proof
    assert again.rsplit(".", 1)[0] == jws.rsplit(".", 1)[0]
    assert (
        verified_claims(again, await served_jwks(live))["jti"]
        == verified_claims(jws, await served_jwks(live))["jti"]
    )
    assert (await live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=challenge_id))).proof == again


async def test_get_proof_of_an_unverified_challenge_is_failed_precondition(live: Live) -> None:
    """A challenge with only a wrong code has no proof to give: FAILED_PRECONDITION."""
    challenge_id, code = await started(live, await enrolled(live))
    await verify(live, challenge_id, wrong(code))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=challenge_id))
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION


async def test_evidence_holds_every_attempt_and_the_proof(live: Live) -> None:
    """GetChallengeEvidence returns the challenge, each journal entry with its context, and the proof."""
    challenge_id, code = await started(live, await enrolled(live))
    await verify(live, challenge_id, wrong(code))
    jws = (await verify(live, challenge_id, code)).proof
    evidence = await evidence_grpc.EvidenceServiceStub(live.channel).GetChallengeEvidence(
        evidence_pb.GetChallengeEvidenceRequest(challenge_id=challenge_id)
    )
    journal = [dict(entry.fields) for entry in evidence.journal]
    assert [(e["event"], e["outcome"]) for e in journal][2:] == [
        ("challenge.verification", "wrong_code"),
        ("challenge.verification", "verified"),
        ("challenge.proof", "issued"),
    ]
    assert journal[-1]["jti"] == claims_of(jws)["jti"]
    assert all(e["session_id"] == "sess-1" for e in journal if e["event"] == "challenge.verification")
    # Journaled when first asked for: the same header and claims as VerifyChallenge's (decision 0026).
    assert evidence.proof.rsplit(".", 1)[0] == jws.rsplit(".", 1)[0]
    assert evidence.challenge.masked_phone == "+33*******78"


@contextlib.asynccontextmanager
async def served_on(
    config: Pkcs11Config, redis_store: RedisState, tmp_path: Path
) -> AsyncIterator[tuple[Live, Pkcs11KeyStore]]:
    """A server on a token of the test's own: (the server's stubs, its key store)."""
    store = Pkcs11KeyStore.open(config)
    wired = await start_wired(store, redis_store, tmp_path / "sms.jsonl")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{wired.server.port}")
    live = Live(
        channel,
        auth_grpc.AuthenticationServiceStub(channel),
        enrol_grpc.EnrollmentServiceStub(channel),
        tmp_path / "sms.jsonl",
        redis_store,
        wired.running.metrics,
        address=f"127.0.0.1:{wired.server.port}",
        sealer=wired.sealer,
    )
    try:
        yield live, store
    finally:
        await channel.close()
        await wired.server.stop(0)
        store.close()


@pytest.fixture
async def keyless(
    make_token: Callable[[str], Pkcs11Config], redis_store: RedisState, tmp_path: Path
) -> AsyncIterator[tuple[Live, Pkcs11Config, Pkcs11KeyStore]]:
    """A server whose token holds an OTP key and no proof key yet (the HSM cannot sign)."""
    config = make_token(f"keyless-{secrets.token_hex(4)}")
    rotate_keys(config, KeyKind.OTP)
    async with served_on(config, redis_store, tmp_path) as (live, store):
        yield live, config, store


async def test_a_proof_key_whose_public_half_is_gone_signs_no_more_proofs(
    make_token: Callable[[str], Pkcs11Config],
    redis_store: RedisState,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Found by an outside audit: with the public half of the current proof key destroyed, VerifyChallenge
    spent codes with proofs no published key checked. The next health round fails, and the next proof is
    signed by the newest key that still has both halves; without one, the answer is VERIFIED without a proof,
    which GetProof gives once a ceremony made a key (decision 0154)."""
    config = make_token(f"halves-{secrets.token_hex(4)}")
    init_keys(config)
    newest = rotate_keys(config, KeyKind.PROOF)
    async with served_on(config, redis_store, tmp_path) as (live, store):
        assert (await store.current_proof_key()) == newest
        destroy(store, ObjectClass.PUBLIC_KEY, newest.label)
        with pytest.raises(HsmUnavailable, match="not whole"):
            await store.check()
        _, jws = await a_proof(live, "alice")
        assert header_of(jws)["kid"] == "sesame-proof-v1"
        # The step back, which undoes a rotation away from v1, is said (an outside audit: nobody saw it).
        assert [r for r in caplog.records if f"{newest.label} is not whole on the token" in r.getMessage()]
        assert verified_claims(jws, await served_jwks(live))["sub"] == "alice"
        await store.check()  # whole keys again: SERVING at the next round

        destroy(store, ObjectClass.PUBLIC_KEY, "sesame-proof-v1")
        with pytest.raises(HsmUnavailable, match="not whole"):
            await store.check()
        challenge_id, code = await started(live, await enrolled(live, "bob"))
        reply = await verify(live, challenge_id, code)
        assert (reply.result, reply.proof) == (auth_pb.VERIFY_RESULT_VERIFIED, "")
        # The published halves are read again within a second (AU2): the half destroyed leaves the set.
        deadline = time.monotonic() + 3
        while (await served_jwks(live))["keys"] and time.monotonic() < deadline:  # noqa: ASYNC110 (the server's)
            await asyncio.sleep(0.1)
        assert (await served_jwks(live))["keys"] == []
        # A verification without its proof for want of a key is an HSM failure the alert sees (it was not
        # counted: an outside audit).
        labels = {"dependency": "hsm", "call": "current_keys"}
        assert (live.metrics.registry.get_sample_value("sesame_dependency_failures_total", labels) or 0) >= 1
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=challenge_id))
        assert (refused.value.code(), refused.value.details()) == (
            grpc.StatusCode.INTERNAL,
            "a key is missing in the HSM",
        )
        made = rotate_keys(config, KeyKind.PROOF)
        await store.refresh_keys()
        jws = (await live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=challenge_id))).proof
        assert header_of(jws)["kid"] == made.label == "sesame-proof-v3"  # past every label on the token
        assert verified_claims(jws, await served_jwks(live))["sub"] == "bob"


def _second_pair(store: Pkcs11KeyStore, label: str) -> None:
    """Another P-256 pair generated in the token under `label`, as a PIN holder could: nothing destroyed."""
    token = store._live()

    def make(live: TokenSession) -> None:
        curve = live.session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: P256_PARAMS}, local=True
        )
        curve.generate_keypair(
            store=True,
            label=label,
            capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
            public_template={Attribute.PRIVATE: True},  # as Sésame's own (decision 0153)
            private_template={
                Attribute.PRIVATE: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
            },
        )

    store._worker.run(lambda: token.call(make))


async def test_a_second_pair_under_the_current_proof_label_publishes_neither(
    make_token: Callable[[str], Pkcs11Config],
    redis_store: RedisState,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Found by an outside audit: with a second pair generated under the current proof key's label,
    GetProofKeys published whichever public half the search gave last, and the proofs, signed by the first
    private half, verified under no published key. Neither half is published, the label no longer signs,
    and the next proof is signed by the older whole key (decision 0154)."""
    config = make_token(f"pairs-{secrets.token_hex(4)}")
    init_keys(config)
    newest = rotate_keys(config, KeyKind.PROOF)
    async with served_on(config, redis_store, tmp_path) as (live, store):
        assert (await store.current_proof_key()) == newest
        _second_pair(store, newest.label)
        with pytest.raises(HsmUnavailable, match="not whole"):
            await store.check()
        assert [key["kid"] for key in (await served_jwks(live))["keys"]] == ["sesame-proof-v1"]
        _, jws = await a_proof(live, "alice")
        assert header_of(jws)["kid"] == "sesame-proof-v1"
        assert verified_claims(jws, await served_jwks(live))["sub"] == "alice"
        said = [r.getMessage() for r in caplog.records if r.getMessage().startswith(newest.label)]
        assert f"{newest.label} names 2 different public keys on the token" in said[0]
        await store.check()  # whole keys again: SERVING at the next round


async def test_a_step_back_the_ledger_refuses_is_said_once(
    make_token: Callable[[str], Pkcs11Config], caplog: pytest.LogCaptureFixture
) -> None:
    """Found by an outside audit: while the key ledger refused the record of a step back to an older proof
    key, the step back's ERROR was logged at every call that read the keys again (once a second)."""
    config = make_token(f"refused-{secrets.token_hex(4)}")
    init_keys(config)
    newest = rotate_keys(config, KeyKind.PROOF)
    store = Pkcs11KeyStore.open(config)
    try:
        assert (await store.current_proof_key()) == newest

        async def refused() -> None:
            raise StoreUnavailable("the ledger refuses")

        store.before_rotated_keys_are_used(refused)
        destroy(store, ObjectClass.PUBLIC_KEY, newest.label)
        for _ in range(5):
            with pytest.raises(StoreUnavailable):
                await store.refresh_keys()
        said = [r for r in caplog.records if f"{newest.label} is not whole on the token" in r.getMessage()]
        assert len(said) == 1
    finally:
        store.close()


async def test_a_start_after_the_current_otp_key_is_gone_counts_an_hsm_failure(
    make_token: Callable[[str], Pkcs11Config], redis_store: RedisState, tmp_path: Path
) -> None:
    """Found from outside: with the current OTP key destroyed, Starts answered INTERNAL and no HSM failure was
    counted for the minute the current keys are kept (SesameHsmErrors blind). The MAC's KeyNotFound of a
    current key is counted, and the current keys read again at the next call."""
    config = make_token(f"gone-{secrets.token_hex(4)}")
    init_keys(config)
    async with served_on(config, redis_store, tmp_path) as (live, store):
        user_id = await enrolled(live)
        await started(live, user_id)  # the current keys are read and kept
        destroy(store, ObjectClass.SECRET_KEY, "sesame-otp-v1")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await live.auth.StartChallenge(
                auth_pb.StartChallengeRequest(user_id=user_id, operation=transfer())
            )
        assert refused.value.code() is grpc.StatusCode.INTERNAL
        failures = [
            live.metrics.registry.get_sample_value(
                "sesame_dependency_failures_total", {"dependency": "hsm", "call": call}
            )
            for call in ("mac", "current_keys")
        ]
        assert sum(f or 0 for f in failures) >= 1


async def test_a_verification_the_hsm_cannot_sign_is_verified_and_proven_later(
    keyless: tuple[Live, Pkcs11Config, Pkcs11KeyStore],
) -> None:
    """Without a proof key the answer is VERIFIED, proof empty; once the key exists GetProof issues it."""
    live, config, store = keyless
    challenge_id, code = await started(live, await enrolled(live))
    reply = await verify(live, challenge_id, code)
    assert (reply.result, reply.proof) == (auth_pb.VERIFY_RESULT_VERIFIED, "")
    assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_ALREADY_USED
    rotate_keys(config, KeyKind.PROOF)
    await store.refresh_keys()
    jws = (await live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=challenge_id))).proof
    assert verified_claims(jws, await served_jwks(live))["challenge_id"] == challenge_id


async def test_a_decision_that_named_no_proof_gets_one_jti_once_its_journal_left_redis(
    keyless: tuple[Live, Pkcs11Config, Pkcs11KeyStore], redis_client: aioredis.Redis
) -> None:
    """Found from outside (AW3): a decision made with no proof key at hand names no proof; asked first once
    its journal had left Redis (archived, purged), GetProof signed a fresh jti every call, none journaled,
    each a valid proof of the one authentication. Its jti is now derived from the decision's witness: the
    same every call, before or after the purge."""
    live, config, store = keyless
    challenge_id, code = await started(live, await enrolled(live))
    assert (await verify(live, challenge_id, code)).proof == ""
    for kind in (KeyKind.PROOF, KeyKind.JOURNAL):
        rotate_keys(config, kind)
    await store.refresh_keys()
    assert live.sealer is not None
    await live.sealer.step()  # sealed, archived, dropped
    stream = live.store.keys.challenge_journal(challenge_id)
    assert await redis_client.exists(stream) == 0
    await redis_client.delete(live.store.keys.challenge(challenge_id), live.store.keys.journal_tail(stream))
    keys = await served_jwks(live)
    jtis = set()
    for _ in range(3):
        jws = (await live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=challenge_id))).proof
        jtis.add(verified_claims(jws, keys)["jti"])
    assert len(jtis) == 1


async def test_a_decision_that_named_no_proof_signs_no_jti_written_in_redis(
    keyless: tuple[Live, Pkcs11Config, Pkcs11KeyStore], redis_client: aioredis.Redis
) -> None:
    """Found from outside (AW3): a decision that named no proof binds no jti, so the proof entry GetProof
    journals for it, rewritten in Redis with a jti of the writer's choosing (the kept proof deleted), was
    signed under that jti. Such a decision's proof has the jti its witness gives, and no other."""
    live, config, store = keyless
    challenge_id, code = await started(live, await enrolled(live))
    assert (await verify(live, challenge_id, code)).proof == ""
    rotate_keys(config, KeyKind.PROOF)
    await store.refresh_keys()
    first = (await live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=challenge_id))).proof
    journal = live.store.keys.challenge_journal(challenge_id)
    entry_id, fields = next(
        (i, f) for i, f in await redis_client.xrange(journal) if f[b"event"] == b"challenge.proof"
    )
    assert fields[b"jti"].decode() == claims_of(first)["jti"]
    await redis_client.xdel(journal, entry_id)
    await redis_client.xadd(journal, {**fields, b"jti": b"ab" * 16})
    await redis_client.delete(live.store.keys.challenge_proof(challenge_id))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=challenge_id))
    assert refused.value.code() is grpc.StatusCode.INTERNAL


async def test_a_racing_keep_after_the_drop_journals_no_second_proof_entry(
    keyless: tuple[Live, Pkcs11Config, Pkcs11KeyStore], redis_client: aioredis.Redis
) -> None:
    """Found from outside (AX2): for a decision that named no proof, a GetProof whose read came before
    another's keep, run once the other's entry was sealed and its stream dropped (its kept JWS expired, as it
    may before the tail), found no entry in Redis and appended the same proof entry again: sealed twice, the
    evidence failed for good. The keep notes its entry in the tail, which outlives the drop."""
    live, config, store = keyless
    challenge_id, code = await started(live, await enrolled(live))
    assert (await verify(live, challenge_id, code)).proof == ""
    for kind in (KeyKind.PROOF, KeyKind.JOURNAL):
        rotate_keys(config, kind)
    await store.refresh_keys()
    facts = ProofFacts.from_journal(await live.store.journal.challenge_journal(challenge_id))
    assert facts is not None
    first = (await live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=challenge_id))).proof
    assert live.sealer is not None
    await live.sealer.step()  # sealed, archived, dropped
    journal = live.store.keys.challenge_journal(challenge_id)
    assert await redis_client.exists(journal) == 0
    await redis_client.delete(live.store.keys.challenge_proof(challenge_id))  # the kept JWS expired
    late = IssuedProof(first, claims_of(first)["jti"], header_of(first)["kid"], facts)
    await live.store.proofs.record_proof(late, datetime.now(UTC), journaled=False)  # read before the keep
    assert await redis_client.exists(journal) == 0  # nothing appended


async def test_the_demo_fails_a_verification_without_a_proof(
    keyless: tuple[Live, Pkcs11Config, Pkcs11KeyStore], capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by an outside audit: with no proof key to sign, `sesame demo` printed `ok ... VERIFIED` and
    exited 0, where the README promises a verification "with a signed proof". That line is BAD, exit 1."""
    live, _, _ = keyless
    assert await run_demo(live.address, str(live.sms_file)) == 1
    shown = capsys.readouterr().out
    assert "BAD right code, right operation" in shown
    assert "VERIFIED without a signed proof" in shown
