"""`RedisStateStore`: the StateStore port on Redis, one Lua script per transition (docs/decisions/0002).

Every transition checks, changes and appends its journal entry in one script, so it is atomic and costs
one round trip. Keys carry hash tags (`{u:<id>}`, `{ch:<id>}`) so that every script touches a single
Redis Cluster slot: an aggregate and its journal stream live together.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from importlib import resources
from typing import Any, Final, cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from sesame.clients import redis_records as rec
from sesame.server.domain.errors import (
    ChallengeAlreadyExists,
    ChallengeClosed,
    ChallengeNotFound,
    ChallengeNotVerified,
    ResendRefused,
    StoreUnavailable,
    UserAlreadyExists,
    UserNotFound,
)
from sesame.server.domain.model import (
    Challenge,
    DeliveryState,
    LockoutPolicy,
    RequestContext,
    User,
    VerificationAttempt,
    VerificationOutcome,
    VerifyResult,
)
from sesame.server.domain.ports import Probe, StateStore
from sesame.server.domain.proof import IssuedProof

DEFAULT_RETENTION: Final = timedelta(hours=24)
_SCRIPTS: Final = (
    "register_user",
    "record_failed_attempt",
    "record_successful_attempt",
    "open_challenge",
    "record_verification",
    "cancel_challenge",
    "record_resend",
    "record_delivery",
    "record_proof",
)


class RedisStateStore:
    """Users and challenges in Redis; each method is one atomic, journaled transition."""

    def __init__(
        self, client: aioredis.Redis, *, prefix: str = "sesame", retention: timedelta = DEFAULT_RETENTION
    ) -> None:
        """Use `client` (which must not decode responses); keep challenges `retention` past expiry."""
        self._client = client
        self._prefix = prefix
        self._retention = retention
        lua = resources.files("sesame.clients").joinpath("lua")
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(lua.joinpath(f"{name}.lua").read_text(encoding="utf-8"))
            for name in _SCRIPTS
        }

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "sesame",
        retention: timedelta = DEFAULT_RETENTION,
        timeout: float = 2.0,
    ) -> RedisStateStore:
        """A store on its own connection pool, with bounded socket timeouts and no blind retries."""
        # A transition that timed out may have run; replaying it would count an attempt twice or answer
        # ALREADY_USED to the caller who won. The caller retries with its request id instead.
        client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=30,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, prefix=prefix, retention=retention)

    async def close(self) -> None:
        """Close the client and its connections."""
        with _translated():
            await self._client.aclose()

    async def check(self) -> None:
        """Return when Redis answers PING. StoreUnavailable (for the health watcher)."""
        # Through the same pool as the transitions: a pool that cannot reconnect fails here too.
        with _translated():
            await self._client.ping()

    # Keys ---------------------------------------------------------------------------------------

    def user_key(self, user_id: str) -> str:
        """The user hash."""
        return f"{self._prefix}:{{u:{user_id}}}:user"

    def user_journal_key(self, user_id: str) -> str:
        """The user's journal stream, in the user's slot."""
        return f"{self._prefix}:{{u:{user_id}}}:journal"

    def request_key(self, user_id: str, request_id: str) -> str:
        """The idempotency key of one StartChallenge request, in the user's slot."""
        return f"{self._prefix}:{{u:{user_id}}}:request:{request_id}"

    def challenge_key(self, challenge_id: str) -> str:
        """The challenge hash."""
        return f"{self._prefix}:{{ch:{challenge_id}}}:challenge"

    def challenge_journal_key(self, challenge_id: str) -> str:
        """The challenge's journal stream, in the challenge's slot."""
        return f"{self._prefix}:{{ch:{challenge_id}}}:journal"

    # Users --------------------------------------------------------------------------------------

    async def register_user(self, user: User) -> User:
        """Enrol `user`; the same enrolment again returns the stored user. UserAlreadyExists."""
        fields = rec.user_fields(user)
        keys = self._user_keys(user.user_id)
        args = [user.client_id, user.secure_phone, len(fields), *fields, *rec.enrolled_entry(user)]
        reply = await self._run("register_user", keys, args)
        if reply[0] == b"conflict":
            raise UserAlreadyExists(user.user_id)
        return _user(rec.pairs(reply[1]))

    async def get_user(self, user_id: str) -> User:
        """The enrolled user. UserNotFound."""
        with _translated():
            raw = await self._client.hgetall(self.user_key(user_id))
        if not raw:
            raise UserNotFound(user_id)
        return _user(cast("dict[bytes, bytes]", raw))

    async def record_failed_attempt(self, user_id: str, at: datetime, lockout: LockoutPolicy) -> User:
        """Count a wrong code in a row; block at the policy's count (see the port). UserNotFound."""
        args = [
            rec.to_ms(at),
            lockout.max_failures,
            lockout.first_block // rec.MS,
            lockout.longest_block // rec.MS,
            *rec.user_event("user.failed_attempt", user_id, at),
        ]
        reply = await self._run("record_failed_attempt", self._user_keys(user_id), args)
        if reply[0] == b"not_found":
            raise UserNotFound(user_id)
        return _user(rec.pairs(reply[1]))

    async def record_successful_attempt(self, user_id: str, at: datetime) -> None:
        """Reset the wrong codes and blocks in a row (see the port). UserNotFound."""
        head = rec.user_event("user.successful_attempt", user_id, at)
        if await self._run("record_successful_attempt", self._user_keys(user_id), head) != 1:
            raise UserNotFound(user_id)

    # Challenges ---------------------------------------------------------------------------------

    async def open_challenge(self, challenge: Challenge, context: RequestContext) -> None:
        """Store a new challenge until its expiry plus retention. ChallengeAlreadyExists."""
        fields = rec.challenge_fields(challenge)
        # Absolute, from the challenge's own expiry: the purge time does not depend on Redis's clock
        # reading at the moment of the call, nor on how long the call took.
        purge_at = rec.to_ms(challenge.expires_at + self._retention)
        keys = self._challenge_keys(challenge.challenge_id)
        args = [purge_at, len(fields), *fields, *rec.opened_entry(challenge, context)]
        if await self._run("open_challenge", keys, args) != 1:
            raise ChallengeAlreadyExists(challenge.challenge_id)

    async def claim_request(self, user_id: str, request_id: str, challenge_id: str, until: datetime) -> str:
        """Bind the request id to `challenge_id` (SET NX GET: one atomic round trip)."""
        with _translated():
            earlier = await self._client.set(
                self.request_key(user_id, request_id), challenge_id, nx=True, get=True, pxat=rec.to_ms(until)
            )
        return challenge_id if earlier is None else cast("bytes", earlier).decode()

    async def get_challenge(self, challenge_id: str) -> Challenge:
        """The challenge as stored. ChallengeNotFound."""
        with _translated():
            raw = await self._client.hgetall(self.challenge_key(challenge_id))
        if not raw:
            raise ChallengeNotFound(challenge_id)
        return _challenge(cast("dict[bytes, bytes]", raw))

    async def record_verification(self, attempt: VerificationAttempt) -> VerificationOutcome:
        """Count one attempt and decide it atomically (see the port). ChallengeNotFound."""
        head = rec.challenge_event("challenge.verification", attempt.challenge_id, attempt.at)
        args = [
            rec.to_ms(attempt.at),
            attempt.op_digest.hex(),
            "1" if attempt.code_matches else "0",
            *head,
            "op_digest", attempt.op_digest.hex(),
            *rec.context_fields(attempt.context),
        ]  # fmt: skip
        reply = await self._run("record_verification", self._challenge_keys(attempt.challenge_id), args)
        if reply[0] == b"not_found":
            raise ChallengeNotFound(attempt.challenge_id)
        result = VerifyResult(reply[0].decode())
        challenge = _challenge(rec.pairs(reply[1]))
        return VerificationOutcome(result, attempts_left(result, challenge), challenge)

    async def cancel_challenge(self, challenge_id: str, at: datetime, context: RequestContext) -> Challenge:
        """Void an OPEN challenge. ChallengeNotFound, ChallengeClosed."""
        head = rec.challenge_event("challenge.cancel", challenge_id, at)
        args = [rec.to_ms(at), *head, *rec.context_fields(context)]
        reply = await self._run("cancel_challenge", self._challenge_keys(challenge_id), args)
        if reply[0] == b"not_found":
            raise ChallengeNotFound(challenge_id)
        if reply[0] == b"closed":
            raise ChallengeClosed(challenge_id)
        return _challenge(rec.pairs(reply[1]))

    async def record_resend(self, challenge_id: str, at: datetime, context: RequestContext) -> Challenge:
        """Take one resend atomically (see the port). ChallengeNotFound, ChallengeClosed, ResendRefused."""
        head = rec.challenge_event("challenge.resend", challenge_id, at)
        args = [rec.to_ms(at), *head, *rec.context_fields(context)]
        reply = await self._run("record_resend", self._challenge_keys(challenge_id), args)
        match reply[0]:
            case b"not_found":
                raise ChallengeNotFound(challenge_id)
            case b"closed":
                raise ChallengeClosed(challenge_id)
            case b"exhausted":
                raise ResendRefused(challenge_id, None)
            case b"too_soon":
                raise ResendRefused(challenge_id, timedelta(milliseconds=int(reply[1])))
        return _challenge(rec.pairs(reply[1]))

    async def record_delivery(
        self, challenge_id: str, state: DeliveryState, provider_ref: str, at: datetime
    ) -> None:
        """Note what the SMS gateway said. ChallengeNotFound."""
        head = rec.challenge_event("challenge.delivery", challenge_id, at)
        args = [state.value, provider_ref, *head, "provider_ref", provider_ref]
        if await self._run("record_delivery", self._challenge_keys(challenge_id), args) != 1:
            raise ChallengeNotFound(challenge_id)

    async def record_proof(self, proof: IssuedProof, at: datetime) -> str:
        """Journal the proof once; return the one that stands. ChallengeNotFound, ChallengeNotVerified."""
        challenge_id = proof.facts.challenge_id
        keys = [self.challenge_journal_key(challenge_id)]
        reply = await self._run("record_proof", keys, rec.proof_entry(proof, at))
        match reply[0]:
            case b"not_found":
                raise ChallengeNotFound(challenge_id)
            case b"not_verified":
                raise ChallengeNotVerified(challenge_id)
            case b"exists":
                return cast("bytes", reply[1]).decode()
        return proof.jws

    # Journal ------------------------------------------------------------------------------------

    async def user_journal(self, user_id: str) -> list[dict[str, str]]:
        """The user's journal entries, oldest first."""
        return await self._read_journal(self.user_journal_key(user_id))

    async def challenge_journal(self, challenge_id: str) -> list[dict[str, str]]:
        """The challenge's journal entries, oldest first (they outlive the challenge)."""
        return await self._read_journal(self.challenge_journal_key(challenge_id))

    async def _read_journal(self, key: str) -> list[dict[str, str]]:
        with _translated():
            entries = cast("list[tuple[bytes, dict[bytes, bytes]]]", await self._client.xrange(key))
        return [rec.decoded(fields) for _, fields in entries]

    # Plumbing -----------------------------------------------------------------------------------

    def _user_keys(self, user_id: str) -> list[str]:
        return [self.user_key(user_id), self.user_journal_key(user_id)]

    def _challenge_keys(self, challenge_id: str) -> list[str]:
        return [self.challenge_key(challenge_id), self.challenge_journal_key(challenge_id)]

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[rec.Field]) -> Any:
        with _translated():
            return await self._scripts[name](keys=keys, args=args)


def attempts_left(result: VerifyResult, challenge: Challenge) -> int:
    """What the caller may still submit: only a wrong code on a live challenge leaves attempts."""
    return challenge.attempts_left if result is VerifyResult.WRONG_CODE else 0


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Library and socket failures become StoreUnavailable: nothing of redis-py leaves this module."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StoreUnavailable(type(exc).__name__) from exc


def _user(raw: dict[bytes, bytes]) -> User:
    try:
        return rec.user_from_hash(raw)
    except rec.CorruptRecord as exc:
        raise StoreUnavailable("corrupt user record") from exc


def _challenge(raw: dict[bytes, bytes]) -> Challenge:
    try:
        return rec.challenge_from_hash(raw)
    except rec.CorruptRecord as exc:
        raise StoreUnavailable("corrupt challenge record") from exc


_: type[StateStore] = RedisStateStore
_probe: type[Probe] = RedisStateStore
