"""`RedisStateStore`: the StateStore port on Redis, one Lua script per transition (docs/decisions/0002).

Every transition checks, changes and appends its journal entry in one script, so it is atomic and costs
one round trip. Keys carry hash tags (`{u:<t>}` for a user and its challenges, `{c:<id>}`, see
`redis_keys`) so that an aggregate and its journal stream live together, and a verification runs on one
slot found from the challenge id; opening a challenge and taking a resend also take the number's, caller's
and global send units, across their slots (docs/decisions/0014, 0019). Users and client companies are in
`redis_users`; challenges here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final, cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from sesame.clients import redis_records as rec
from sesame.clients.meter import UNMETERED, CallMeter
from sesame.clients.redis_evidence_index import RedisEvidenceIndex
from sesame.clients.redis_health_notes import RedisHealthNotes
from sesame.clients.redis_journal import RedisJournal
from sesame.clients.redis_keys import Keyspace
from sesame.clients.redis_outbox import RedisOutbox
from sesame.clients.redis_risk import RedisRiskMemory
from sesame.clients.redis_scripts import Scripts, stored_challenge
from sesame.clients.redis_scripts import translated as _translated
from sesame.clients.redis_users import RedisRegistry
from sesame.server.domain import budgets
from sesame.server.domain.budgets import PHONE_TAG, BudgetKind, Charge, SendBudget
from sesame.server.domain.destinations import check_destination, whole_calling_codes
from sesame.server.domain.errors import (
    ChallengeAlreadyExists,
    ChallengeClosed,
    ChallengeConsumed,
    ChallengeMismatch,
    ChallengeNotFound,
    ChallengeNotVerified,
    FieldViolation,
    InvalidRequest,
    PhoneCooling,
    ResendRefused,
    SecurePhoneChanged,
    SendBudgetExhausted,
    SesameError,
    StoreUnavailable,
    UserBlocked,
    UserNotActive,
    UserNotFound,
)
from sesame.server.domain.lifecycle import CLOCK_SKEW, Consumption, Voiding, VoidOutcome
from sesame.server.domain.model import (
    Challenge,
    DeliveryState,
    JournalPage,
    LockoutPolicy,
    RefusalCount,
    RequestContext,
    VerificationAttempt,
    VerificationOutcome,
    VerifyResult,
)
from sesame.server.domain.opening import Opened, Opening
from sesame.server.domain.operation import digest
from sesame.server.domain.ports import Probe, StateStore
from sesame.server.domain.proof import IssuedProof

DEFAULT_RETENTION: Final = timedelta(hours=24)
_STREAM_ID: Final = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")  # what a page token is: a journal entry's id


class RedisStateStore(RedisRegistry):
    """Users, client companies and challenges in Redis; each method is one atomic, journaled transition."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "sesame",
        retention: timedelta = DEFAULT_RETENTION,
        meter: CallMeter = UNMETERED,
    ) -> None:
        """Use `client` (which must not decode responses); keep challenges `retention` past expiry; report
        every round trip to `meter`."""
        super().__init__(client, Keyspace(prefix), Scripts(client, meter))
        self._retention = retention

    def outbox(self) -> RedisOutbox:
        """The SMS outbox in the same Redis, on a pool of its own (docs/decisions/0025)."""
        return RedisOutbox.beside(self._client, prefix=self.keys.prefix)

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

    def sealed_journal(self) -> RedisJournal:
        """The feed, seals and sealer's lease of this store's journals, on the same connections."""
        return RedisJournal(self._client, self.keys, self._scripts)

    def evidence_index(self) -> RedisEvidenceIndex:
        """The users' evidence indexes (decision 0036), on the same connections."""
        return RedisEvidenceIndex(self._client, self.keys)

    def health_notes(self) -> RedisHealthNotes:
        """The health notes' journal (decision 0036), on the same connections and scripts."""
        return RedisHealthNotes(self._client, self.keys, self._scripts)

    def metered(self, meter: CallMeter) -> RedisStateStore:
        """A view of this store (same client and pool) that reports every round trip to `meter`.

        The service's flows use the view; health probes the store itself (a probe is not traffic).
        """
        return RedisStateStore(self._client, prefix=self.keys.prefix, retention=self._retention, meter=meter)

    async def close(self) -> None:
        """Close the client and its connections."""
        with _translated():
            await self._client.aclose()

    def risk_memory(self) -> RedisRiskMemory:
        """The users' risk memory, on this store's client and keyspace (docs/risk.md)."""
        return RedisRiskMemory(self._client, self.keys, self._scripts)

    async def check(self) -> None:
        """Return when Redis answers PING. StoreUnavailable (for the health watcher)."""
        # Through the same pool as the transitions: a pool that cannot reconnect fails here too.
        with _translated():
            await self._client.ping()

    # Challenges ---------------------------------------------------------------------------------

    async def open_challenge(
        self, challenge: Challenge, context: RequestContext, charges: Sequence[Charge] = ()
    ) -> None:
        """Admit, index, charge and store a new challenge in one step (see the port). UserNotFound,
        UserNotActive, SecurePhoneChanged, ChallengeAlreadyExists, SendBudgetExhausted."""
        opening = _opening_of(challenge, context)
        budget_keys, budget_args = self._budgets(charges)
        fields = rec.challenge_fields(challenge)
        args = self._opening_args(opening, challenge.phone, budget_args, _NO_NUMBER_BUDGET, "*")
        args += [len(fields), *fields, *rec.opened_entry(challenge, context)]
        reply = await self._run("open_challenge", self._opening_keys(opening, budget_keys), args)
        if reply[0] != b"opened":
            raise _refused(opening, reply, charges)

    async def start_challenge(self, opening: Opening) -> Opened:
        """Start's one step (see the port): one script, one round trip, unless the stored number's calling
        code is shared with a region outside the allow-list: its region is then checked here, and the
        script runs again for that number (docs/decisions/0025)."""
        charges = budgets.charges(opening.budget, opening.user_id, "", opening.context.caller)
        declared = [c for c in charges if c.subject.kind is not BudgetKind.PHONE]
        budget_keys, budget_args = self._budgets(declared)
        number_budget = self._number_budget(charges)
        codes = ",".join(["", *sorted(whole_calling_codes(opening.countries)), ""])
        keys = self._opening_keys(opening, budget_keys)
        fields = rec.opening_fields(opening)
        tail = [len(fields), *fields, *rec.opening_entry(opening)]
        args = self._opening_args(opening, "", budget_args, number_budget, codes)
        reply = await self._run("open_challenge", keys, [*args, *tail])
        if reply[0] == b"destination":
            number = reply[1].decode()
            check_destination(number, opening.countries)
            # Allowed, under a calling code shared with a region that is not: open for that number only.
            args = self._opening_args(opening, number, budget_args, number_budget, "*")
            reply = await self._run("open_challenge", keys, [*args, *tail])
        match reply[0]:
            case b"opened":
                client_id, phone, locale = (value.decode() for value in reply[1:4])
                return Opened(rec.opened_challenge(opening, client_id, phone, locale), queued=True)
            case b"earlier":
                return Opened(_challenge(rec.pairs(reply[1])), queued=False)
            case b"other_operation":
                raise InvalidRequest([FieldViolation("request_id", "was already used for another operation")])
        raise _refused(opening, reply, charges)

    def _number_budget(self, charges: Sequence[Charge]) -> list[rec.Field]:
        """Where the number's budget stands among the charges, its limit and window, and how the script
        names its key from the number it reads (the prefix and the tag of `BudgetSubject.phone`)."""
        for i, charge in enumerate(charges):
            if charge.subject.kind is BudgetKind.PHONE:
                prefix = self.keys.number_budget_prefix()
                return [i, charge.limit, charge.window // rec.MS, prefix, PHONE_TAG]
        return _NO_NUMBER_BUDGET

    def _opening_keys(self, opening: Opening, budget_keys: Sequence[str]) -> list[str]:
        user_id = opening.user_id
        return [
            *self._challenge_keys(opening.challenge_id),
            self.keys.user(user_id),
            self.keys.user_pending(user_id),
            self.keys.start_request(user_id, opening.request_id),
            *budget_keys,
            self.keys.outbox(),
        ]

    def _opening_args(
        self,
        opening: Opening,
        number: str,
        budget_args: Sequence[rec.Field],
        number_budget: Sequence[rec.Field],
        codes: str,
    ) -> list[rec.Field]:
        """open_challenge.lua's arguments up to the hash fields (see its header)."""
        # Absolute, from the challenge's own expiry: the purge time does not depend on Redis's clock
        # reading at the moment of the call, nor on how long the call took.
        return [
            rec.to_ms(opening.expires_at + self._retention),
            rec.to_ms(opening.created_at),
            rec.to_ms(opening.created_at - CLOCK_SKEW),
            number,
            opening.challenge_id,
            rec.to_ms(opening.expires_at),
            *budget_args,
            *number_budget,
            "1" if opening.cooled else "0",
            codes,
            "1" if opening.request_id else "0",
            self.keys.challenge(opening.challenge_id).removesuffix(opening.challenge_id),
            digest(opening.operation).hex(),
        ]

    async def get_challenge(self, challenge_id: str) -> Challenge:
        """The challenge as stored. ChallengeNotFound."""
        raw = await self._scripts.call(
            "get_challenge", self._client.hgetall(self.keys.challenge(challenge_id))
        )
        if not raw:
            raise ChallengeNotFound(challenge_id)
        return _challenge(cast("dict[bytes, bytes]", raw))

    async def record_verification(
        self, attempt: VerificationAttempt, lockout: LockoutPolicy
    ) -> VerificationOutcome:
        """Decide one attempt and count it for the user, atomically (see the port). ChallengeNotFound."""
        head = rec.challenge_event("challenge.verification", attempt.challenge_id, attempt.at)
        args = [
            rec.to_ms(attempt.at),
            attempt.op_digest.hex(),
            "1" if attempt.code_matches else "0",
            *self.keys.user_keys_beside(attempt.challenge_id),
            lockout.max_failures,
            lockout.first_block // rec.MS,
            lockout.longest_block // rec.MS,
            rec.iso(attempt.at),
            *rec.proof_id_fields(attempt.proof_id),
            *head,
            "op_digest", attempt.op_digest.hex(),
            *rec.context_fields(attempt.context),
        ]  # fmt: skip
        # One round trip on one slot: the challenge and its user share the place the id names (decision 0019).
        reply = await self._run("record_verification", self._refusal_keys(attempt.challenge_id), args)
        if reply[0] == b"not_found":
            raise ChallengeNotFound(attempt.challenge_id)
        result = VerifyResult(reply[0].decode())
        challenge = _challenge(rec.pairs(reply[1]))
        blocked_until = rec.from_ms(int(reply[2])) if int(reply[2]) else None
        return VerificationOutcome(result, attempts_left(result, challenge), challenge, "", blocked_until)

    async def cancel_challenge(self, challenge_id: str, at: datetime, context: RequestContext) -> Challenge:
        """Void an OPEN challenge. ChallengeNotFound, ChallengeClosed."""
        head = rec.challenge_event("challenge.cancel", challenge_id, at)
        args = [rec.to_ms(at), *head, *rec.context_fields(context)]
        reply = await self._run("cancel_challenge", self._refusal_keys(challenge_id), args)
        if reply[0] == b"not_found":
            raise ChallengeNotFound(challenge_id)
        if reply[0] == b"closed":
            raise ChallengeClosed(challenge_id)
        return _challenge(rec.pairs(reply[1]))

    async def record_resend(
        self, challenge_id: str, at: datetime, context: RequestContext, charges: Sequence[Charge] = ()
    ) -> Challenge:
        """Take one resend and its send units atomically (see the port). ChallengeNotFound, ChallengeClosed,
        ResendRefused, SendBudgetExhausted."""
        head = rec.challenge_event("challenge.resend", challenge_id, at)
        budget_keys, budget_args = self._budgets(charges)
        keys = [*self._refusal_keys(challenge_id), *budget_keys, self.keys.outbox()]
        user_key = self.keys.user_keys_beside(challenge_id)[0]
        args = [rec.to_ms(at), user_key, *budget_args, *head, *rec.context_fields(context)]
        reply = await self._run("record_resend", keys, args)
        match reply[0]:
            case b"not_found":
                raise ChallengeNotFound(challenge_id)
            case b"closed":
                raise ChallengeClosed(challenge_id)
            case b"exhausted":
                raise ResendRefused(challenge_id, None)
            case b"too_soon":
                raise ResendRefused(challenge_id, timedelta(milliseconds=int(reply[1])))
            case b"user_blocked":
                raise UserBlocked(reply[2].decode(), timedelta(milliseconds=int(reply[1])))
            case b"budget":
                raise _exhausted(charges, reply)
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
        """Keep the proof once; return the one that stands. ChallengeNotFound, ChallengeNotVerified."""
        challenge_id = proof.facts.challenge_id
        keys = [self.keys.challenge_journal(challenge_id), self.keys.challenge_proof(challenge_id)]
        reply = await self._run("record_proof", keys, [proof.jws, *rec.proof_entry(proof, at)])
        match reply[0]:
            case b"not_found":
                raise ChallengeNotFound(challenge_id)
            case b"not_verified":
                raise ChallengeNotVerified(challenge_id)
            case b"exists":
                return cast("bytes", reply[1]).decode()
        return proof.jws

    # SMS send budgets (docs/decisions/0011, 0014) -------------------------------------------------------

    def _budgets(self, charges: Sequence[Charge]) -> tuple[list[str], list[rec.Field]]:
        """The budgets' keys, and the script arguments: their count, then each one's limit and window."""
        keys = [self.keys.send_budget(c.subject.kind.value, c.subject.key) for c in charges]
        args: list[rec.Field] = [len(charges)]
        for charge in charges:
            args += [charge.limit, charge.window // rec.MS]
        return keys, args

    # The user lifecycle ---------------------------------------------------------------------------

    async def void_challenge(self, challenge_id: str, voiding: Voiding) -> VoidOutcome:
        """Cancel an OPEN challenge, or spend an id never opened (see the port)."""
        head = rec.challenge_event("challenge.void", challenge_id, voiding.at)
        reason = ["void_reason", voiding.reason.value, *rec.provenance_fields(voiding.provenance)]
        args = [voiding.user_id, *head, *reason]
        answer = await self._run("void_challenge", self._challenge_keys(challenge_id), args)
        return VoidOutcome(answer.decode())

    async def consume_challenge(self, consumption: Consumption) -> Challenge:
        """Spend a VERIFIED challenge once for a number change (see the port)."""
        challenge_id = consumption.challenge_id
        args = [
            rec.to_ms(consumption.at),
            consumption.user_id,
            consumption.op_digest.hex(),
            consumption.request_id,
            self._retention // rec.MS,
            *rec.challenge_event("challenge.consume", challenge_id, consumption.at),
            "op_digest", consumption.op_digest.hex(),
            "purpose", "change_phone",
            "request_id", consumption.request_id,
            *rec.context_fields(consumption.context),
        ]  # fmt: skip
        reply = await self._run("consume_challenge", self._refusal_keys(challenge_id), args)
        match reply[0]:
            case b"not_found" | b"stale":
                raise ChallengeNotFound(challenge_id)
            case b"mismatch":
                raise ChallengeMismatch(challenge_id)
            case b"not_verified":
                raise ChallengeNotVerified(challenge_id)
            case b"used":
                raise ChallengeConsumed(challenge_id)
        return _challenge(rec.pairs(reply[1]))

    async def stored_proof(self, challenge_id: str) -> str:
        """The JWS kept by record_proof for the challenge, "" when none was kept yet."""
        raw = cast(
            "bytes | None",
            await self._scripts.call(
                "stored_proof", self._client.get(self.keys.challenge_proof(challenge_id))
            ),
        )
        return "" if raw is None else raw.decode()

    async def challenge_journal(self, challenge_id: str) -> list[dict[str, str]]:
        """The challenge's journal entries, oldest first (they outlive the challenge), as evidence reads them:
        with the chain's fields."""
        return await self._read_journal(
            "challenge_journal", self.keys.challenge_journal(challenge_id), chain=True
        )

    async def challenge_journal_page(self, challenge_id: str, after: str, limit: int) -> JournalPage:
        """A page of the challenge's journal (XRANGE from the entry after the token's, COUNT limit + 1)."""
        if after and _STREAM_ID.fullmatch(after) is None:
            raise InvalidRequest([FieldViolation("page_token", "is not a page token")])
        raw = await self._scripts.call(
            "challenge_journal_page",
            self._client.xrange(
                self.keys.challenge_journal(challenge_id), min=f"({after}" if after else "-", count=limit + 1
            ),
        )
        entries = cast("list[tuple[bytes, dict[bytes, bytes]]]", raw)
        page = entries[:limit]
        next_token = page[-1][0].decode() if len(entries) > limit else ""
        return JournalPage([rec.decoded(fields) for _, fields in page], next_token)

    async def challenge_refusals(self, challenge_id: str) -> list[RefusalCount]:
        """The refusal counts of the challenge, by event then outcome."""
        raw = cast(
            "dict[bytes, bytes]",
            await self._scripts.call(
                "challenge_refusals", self._client.hgetall(self.keys.challenge_refusals(challenge_id))
            ),
        )
        return rec.refusal_counts(raw)

    def _challenge_keys(self, challenge_id: str) -> list[str]:
        return [self.keys.challenge(challenge_id), self.keys.challenge_journal(challenge_id)]

    def _refusal_keys(self, challenge_id: str) -> list[str]:
        """The challenge's keys and its refusal counts, for the scripts that count repeated refusals."""
        return [*self._challenge_keys(challenge_id), self.keys.challenge_refusals(challenge_id)]

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[rec.Field]) -> Any:
        return await self._scripts.run(name, keys, args)


_challenge = stored_challenge


def _refused(opening: Opening, reply: list[Any], charges: Sequence[Charge]) -> SesameError:
    """The typed refusal open_challenge.lua answered (nothing was written)."""
    user_id, now = opening.user_id, rec.to_ms(opening.created_at)
    match reply[0]:
        case b"blocked":
            return UserBlocked(user_id, (int(reply[1]) - now) * rec.MS)
        case b"cooling":
            return PhoneCooling(user_id, (int(reply[1]) - now) * rec.MS)
        case b"exists":
            return ChallengeAlreadyExists(opening.challenge_id)
        case b"exhausted":
            return _exhausted(charges, reply)
    refusal = _USER_REFUSALS.get(reply[0])
    return refusal(user_id) if refusal else StoreUnavailable(f"open_challenge answered {reply[0]!r}")


_USER_REFUSALS: Final[dict[bytes, type[SesameError]]] = {
    b"not_found": UserNotFound,
    b"not_active": UserNotActive,
    b"phone_changed": SecurePhoneChanged,
}


def _opening_of(challenge: Challenge, context: RequestContext) -> Opening:
    """The opening a whole challenge stands for (open_challenge: no request id, no cooling, any country)."""
    return Opening(
        challenge_id=challenge.challenge_id,
        user_id=challenge.user_id,
        operation=challenge.operation,
        nonce=challenge.nonce,
        key_version=challenge.key_version,
        digits=challenge.digits,
        created_at=challenge.created_at,
        expires_at=challenge.expires_at,
        max_attempts=challenge.max_attempts,
        max_resends=challenge.max_resends,
        resend_spacing=challenge.resend_spacing,
        cooled=False,
        countries=frozenset(),
        budget=SendBudget(),
        context=context,
    )


_NO_NUMBER_BUDGET: Final[list[rec.Field]] = [-1, 0, 0, "", ""]


def _exhausted(charges: Sequence[Charge], reply: list[Any]) -> SendBudgetExhausted:
    """The refusal a script answered as (outcome, index of the spent budget, wait in ms)."""
    subject = charges[int(reply[1])].subject
    return SendBudgetExhausted(subject.kind.value, timedelta(milliseconds=int(reply[2])))


def attempts_left(result: VerifyResult, challenge: Challenge) -> int:
    """What the caller may still submit: only a wrong code on a live challenge leaves attempts."""
    return challenge.attempts_left if result is VerifyResult.WRONG_CODE else 0


_: type[StateStore] = RedisStateStore
_probe: type[Probe] = RedisStateStore
