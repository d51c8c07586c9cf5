"""The ports: what the flows (and the health watcher) need from the outside world, and nothing else.

Each port has a real adapter (`sesame.hsm`, `sesame.clients`) and a fake for unit tests
(`tests/fakes/`); one contract suite per port runs against both so that fakes cannot drift.
Verbs say the effect. Missing things raise typed errors (`sesame.server.domain.errors`), never None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime, timedelta

    from sesame.server.domain.budgets import BudgetSubject, Charge, Hold, Spending
    from sesame.server.domain.dispatching import (
        Backlog,
        DeadLetter,
        FailedTry,
        NoticeAddressee,
        NoticeFailure,
        QueuedSms,
    )
    from sesame.server.domain.evidence_index import EvidenceMatch, IndexedOpening
    from sesame.server.domain.lifecycle import (
        AppliedChange,
        ClientTermination,
        Consumption,
        PhoneChange,
        PhoneChanged,
        Provenance,
        RevocationOutcome,
        StatusChange,
        StatusChanged,
        Unblocked,
        Unblocking,
        UserNotice,
        Voiding,
        VoidOutcome,
    )
    from sesame.server.domain.model import (
        Challenge,
        DeliveryState,
        JournalPage,
        KeyRef,
        LockoutPolicy,
        MacAlgorithm,
        PublicKey,
        RefusalCount,
        RequestContext,
        SentPart,
        SentSms,
        SmsMessage,
        User,
        VerificationAttempt,
        VerificationOutcome,
    )
    from sesame.server.domain.opening import Opened, Opening
    from sesame.server.domain.proof import IssuedProof
    from sesame.server.domain.resending import ResendClaim, Resent
    from sesame.server.domain.risk import RiskAssessment
    from sesame.server.domain.risk_signals import SimSwapStatus
    from sesame.server.domain.sent_text import SentText


class KeyStore(Protocol):
    """Key custody: secret and private keys stay inside; MACs, signatures, public keys, random bytes leave."""

    async def mac(self, key: KeyRef, data: bytes, algorithm: MacAlgorithm) -> bytes:
        """HMAC of `data` under `key`, computed by the key store. KeyNotFound, HsmUnavailable."""
        ...

    async def random(self, n: int) -> bytes:
        """`n` bytes from the key store's random generator. HsmUnavailable."""
        ...

    async def current_otp_key(self) -> KeyRef:
        """The newest `sesame-otp-v<N>` key, which new challenges use. KeyNotFound if there is none."""
        ...

    async def sign(self, key: KeyRef, data: bytes) -> bytes:
        """ES256 signature of `data` under the proof key `key`, computed by the key store.

        ECDSA P-256 over SHA-256(data), raw r || s (64 bytes), as JWS wants it. KeyNotFound (also for a
        label that names no proof key), HsmUnavailable.
        """
        ...

    async def public_keys(self) -> list[PublicKey]:
        """The public half of every `sesame-proof-v<N>` key held, oldest first. HsmUnavailable."""
        ...

    async def current_proof_key(self) -> KeyRef:
        """The newest `sesame-proof-v<N>` key, which new proofs are signed with. KeyNotFound if none."""
        ...


class Users(Protocol):
    """The enrolled users and their lifecycle, on each user's slot; each method is one atomic
    transition, journaled in the user's journal (docs/decisions/0010)."""

    async def register_user(self, user: User, *, caller: str = "", request_id: str = "") -> User:
        """Enrol `user`, journaled with the `caller` and `request_id` that asked ("" none); the same
        enrolment again is a no-op returning the stored user.

        UserAlreadyExists when the id is enrolled otherwise (another client, phone or locale).
        """
        ...

    async def get_user(self, user_id: str) -> User:
        """The enrolled user. UserNotFound."""
        ...

    async def change_user_status(self, change: StatusChange) -> StatusChanged:
        """Suspend, reinstate or revoke, atomically and journaled; the current state again changes nothing.

        The request id is recorded with the user's change counts right after the step. A request id applied
        before answers the user as it is now, with the counts recorded then. UserNotFound, UserNotActive (the
        user is revoked, and that is final), RequestIdReused, NoopsFull (a reinstatement that would change
        nothing, no room left to remember its request id: decision 0150).
        """
        ...

    async def unblock_user(self, unblocking: Unblocking) -> Unblocked:
        """Clear the wrong codes in a row and the block's end, atomically and journaled; keep `blocks`.

        A request id applied before answers the user as it is now (REPLAYED). UserNotFound, UserNotActive
        (revoked), RequestIdReused, NoopsFull (nothing to lift, no room left to remember its request id).
        """
        ...

    async def revoke_client_user(
        self, client_id: str, user_id: str, at: datetime, provenance: Provenance
    ) -> RevocationOutcome:
        """Revoke a user on behalf of its terminated client; an id never enrolled is spent for good."""
        ...

    async def change_secure_phone(self, change: PhoneChange) -> PhoneChanged:
        """Replace the secure number and start the cooling period, atomically and journaled.

        UserNotFound, UserNotActive (status not allowed for this authority), ChallengeMismatch (the
        expected number or status changed meanwhile), RequestIdReused.
        """
        ...

    async def applied_change(self, user_id: str, request_id: str) -> AppliedChange | None:
        """What the user recorded of the change applied under this request id, if any."""
        ...

    async def record_user_notice(self, user_id: str, notice: UserNotice) -> None:
        """Journal a notice sent to the user (the number masked)."""
        ...


class Clients(Protocol):
    """The client companies: their status and the index of the users they designated, on each client's
    slot."""

    async def enlist_user(self, client_id: str, user_id: str, at: datetime) -> None:
        """Add the user to its client's index of users. ClientTerminated."""
        ...

    async def delist_user(self, client_id: str, user_id: str) -> None:
        """Take the user back out of its client's index, and the client's record with its last user: an
        enrolment refused because the id is another client's user leaves nothing behind."""
        ...

    async def client_users(self, client_id: str) -> list[str]:
        """Every user id ever enlisted for the client."""
        ...

    async def terminate_client(self, termination: ClientTermination) -> bool:
        """Mark the client terminated (no enrolment from then on), journaled; again changes nothing. Whether
        this call terminated it.

        ClientNotFound.
        """
        ...


class Challenges(Protocol):
    """The challenges, in their user's slot (docs/decisions/0019); each method is one atomic transition,
    journaled in the challenge's journal, that may also read or count for the user the challenge names."""

    async def open_challenge(
        self, challenge: Challenge, context: RequestContext, charges: Sequence[Charge] = ()
    ) -> None:
        """Open a new challenge in one atomic step (docs/decisions/0014): only while its user is ACTIVE and
        its number is the user's secure number; indexed among the user's pending challenges (entries that
        expired before its creation, less the clock skew, are dropped); one unit of each charge taken at its
        creation time; stored OPEN until its expiry (plus retention). Never overwrites one.

        Refused with nothing written: UserNotFound, UserNotActive, SecurePhoneChanged (the number is no longer
        the secure one), ChallengeAlreadyExists (the id was used), SendBudgetExhausted (on the first spent
        charge, with the exact wait until one of its units frees).
        """
        ...

    async def start_challenge(self, opening: Opening) -> Opened:
        """StartChallenge's one atomic step (docs/decisions/0025): read the user, refuse, or claim the
        request id, charge the send budgets, open, journal and queue the SMS in the outbox.

        In the security order, each refusal writing nothing: UserNotFound, UserNotActive, UserBlocked and
        PhoneCooling (`opening.cooled` only) with their waits, DestinationNotAllowed (the stored number's
        region is not in `opening.countries`), PhoneUnchanged (a `change_phone` to the stored number,
        compared in this step so that no change of number comes between); then a request id already claimed
        answers the challenge it opened (`queued` False, nothing charged or sent), or InvalidRequest on
        `request_id` when that challenge is for another operation; ChallengeAlreadyExists;
        SendBudgetExhausted (the user's; the number's, caller's and global units are held by `SendUnits`,
        decision 0046). Otherwise the challenge is opened for the user's current secure number, with the
        user's client and locale, and its SMS is queued (`queued` True).
        """
        ...

    async def get_challenge(self, challenge_id: str) -> Challenge:
        """The challenge as stored. ChallengeNotFound."""
        ...

    async def record_verification(
        self, attempt: VerificationAttempt, lockout: LockoutPolicy
    ) -> VerificationOutcome:
        """Decide one attempt and carry it over to the challenge's user, atomically (docs/decisions/0013).

        Exactly one concurrent winner, single use, and no code of a blocked user evaluated. Order:
        terminal states answer first (ALREADY_USED, VOIDED, LOCKED) without counting; then EXPIRED; then,
        while the user is blocked, USER_BLOCKED without looking at the code or counting; then the attempt
        is counted; a foreign operation digest voids the challenge (OPERATION_MISMATCH); a wrong code
        gives WRONG_CODE, locks the challenge when it spent the last attempt and counts one more wrong
        code in a row for the user, the `lockout.max_failures`-th of which blocks the user (the outcome's
        `blocked_until`) and restarts the count; a right code marks it VERIFIED and resets the user's
        counts. The user is the one the stored challenge names, in the place the id's tag names (nothing
        the caller says is trusted for it). ChallengeNotFound (also for an id whose tag was forged).
        """
        ...

    async def cancel_challenge(self, challenge_id: str, at: datetime, context: RequestContext) -> Challenge:
        """Void an OPEN challenge on the caller's request. ChallengeNotFound, ChallengeClosed."""
        ...

    async def record_resend(
        self,
        challenge_id: str,
        at: datetime,
        context: RequestContext,
        charges: Sequence[Charge] = (),
        hold: str = "",
    ) -> Challenge:
        """Take one of the challenge's resends at `at` and one unit of each charge, atomically, and return
        the challenge. The queued SMS carries `hold`, the name its other units are held under (0046).

        Refused, and journaled as refused, when the challenge is not OPEN or has expired (ChallengeClosed),
        when no resend is left or the last send is more recent than the challenge's spacing
        (ResendRefused). Refused with nothing written, no resend spent, when a charge is spent
        (SendBudgetExhausted). No attempt counter changes. ChallengeNotFound.
        """
        ...

    async def record_resend_once(  # noqa: PLR0913 (record_resend's, and the claim)
        self,
        challenge_id: str,
        at: datetime,
        context: RequestContext,
        charges: Sequence[Charge],
        hold: str,
        *,
        claim: ResendClaim,
    ) -> Resent:
        """As `record_resend`, the claim's request id claimed in the same step, kept until the challenge's
        expiry (decision 0065). A request id claimed on this challenge, while it is open, answers the resend
        that claimed it (`Resent.earlier_hold` its hold, `queued` whether its SMS is still in the outbox,
        the challenge's resends as after it): nothing taken, queued or journaled. Claimed on another
        challenge: InvalidRequest on `request_id`, nothing written. Refused as `record_resend` is, nothing
        claimed."""
        ...

    async def withdraw_resend(
        self, known: Challenge, at: datetime, context: RequestContext, request_id: str = "", hold: str = ""
    ) -> None:
        """Give back the resend of the challenge (as `known` before it) taken at `at`, and its user's unit
        (the one named by its `hold`, decision 0101: '' none), its last send time back to `known`'s,
        journaled (outcome `withdrawn`): its other send units were refused (decision 0046). Nothing when the
        challenge's last send is no longer that resend. The `request_id` the resend claimed is given up
        either way (its call was refused; decision 0065)."""
        ...

    async def record_delivery(
        self, challenge_id: str, state: DeliveryState, provider_ref: str, at: datetime, provider_id: str = ""
    ) -> bool:
        """Note what the SMS gateway said about the challenge's message, journaled with the provider's own
        message id when its report carries one (`provider_id`, decision 0041). Whether the report moved its
        message forward: False for one that moved nothing (a repeat, a late one; journaled for the first
        few only) or that names a message beyond the challenge's bound (dropped). ChallengeNotFound."""
        ...

    async def start_claimed(self, user_id: str, request_id: str) -> bool:
        """Whether a Start's request id is claimed (by the challenge it opened, or by the rules' denial): its
        retry is answered by `start_challenge` before anything is charged (a read, nothing written)."""
        ...

    async def pending_challenges(self, user_id: str, expiring_after: datetime) -> list[str]:
        """The ids of the user's challenges still open whose expiry is after `expiring_after` (older ones are
        dropped); a challenge leaves the index in the step that closes it (decision 0093)."""
        ...

    async def void_challenge(self, challenge_id: str, voiding: Voiding) -> VoidOutcome:
        """Cancel the challenge if OPEN and opened before `voiding.opened_before`, journaled with the reason;
        spend an id never opened. Idempotent. A challenge opened after is left as it is, unjournaled
        (OPENED_AFTER); one opened before the counts existed is voided."""
        ...

    async def consume_challenge(self, consumption: Consumption) -> Challenge:
        """Spend a VERIFIED challenge, once, as the authority for a number change; journaled.

        The same request id again gets the challenge back. ChallengeNotFound (also past its retention),
        ChallengeMismatch (another user or operation), ChallengeNotVerified, ChallengeConsumed.
        """
        ...


class Proofs(Protocol):
    """The proofs of verified challenges, kept once (docs/decisions/0026)."""

    async def record_proof(self, proof: IssuedProof, at: datetime, *, journaled: bool) -> str:
        """Keep the proof of a verified challenge, atomically, once; return the proof that stands.

        The caller has read the journal from its authority and had its VERIFIED decision checked (decision
        0167): `journaled` says whether that journal names the proof. The first proof kept stands for good:
        when one is already there, it is returned and `proof` is dropped. The `challenge.proof` journal entry
        (jti, kid) is the one the VERIFIED decision wrote (decision 0026), or is appended here when the
        journal names none (and no racing call appended it since). Works from the journal alone, so also
        after the challenge itself was purged. ChallengeNotFound (the journal left Redis whole).
        """
        ...

    async def stored_proof(self, challenge_id: str) -> str:
        """The proof `record_proof` kept for the challenge, "" when none was kept."""
        ...


class ChallengeJournal(Protocol):
    """What the challenges' journals hold, read for evidence; the journals outlive the challenges."""

    async def challenge_journal(self, challenge_id: str) -> list[dict[str, str]]:
        """The challenge's journal entries, oldest first; empty for an id never opened. They outlive it."""
        ...

    async def challenge_journal_page(self, challenge_id: str, after: str, limit: int) -> JournalPage:
        """At most `limit` journal entries after the page token `after` ("": from the first), oldest first.

        The page's `next_token` continues it. InvalidRequest (field `page_token`) for a token that no page
        of a journal gives.
        """
        ...

    async def challenge_refusals(self, challenge_id: str) -> list[RefusalCount]:
        """How often each kind of refusal was answered for the challenge (only the first is journaled).

        Ordered by event, then outcome; empty when there was none. It outlives the challenge, as the journal.
        """
        ...


class SendUnits(Protocol):
    """The number's, caller's and global send budgets, in a place of their own (decision 0046): units held
    for an SMS by a script sent concurrently with the step that queues it, spent by the dispatcher before it
    hands the SMS over. A hold never spent stops counting after its grace. StoreUnavailable."""

    async def take(self, hold: Hold, charges: Sequence[Charge], dropping: Sequence[Charge] = ()) -> None:
        """Hold one unit of each charge under the hold's name, all or nothing (a budget this name already
        holds is held once; a name already spent holds nothing), and give up the name's units of
        `dropping`. SendBudgetExhausted (the first spent charge, with the exact wait): nothing written."""
        ...

    async def release(self, name: str, withdrawn_for: timedelta | None = None) -> None:
        """Give back the units held under `name` (its SMS was refused); a spent hold is left as it is. With
        `withdrawn_for` (an SMS was queued under it) the name stays withdrawn that long: a late take holds
        nothing, a spend answers WITHDRAWN; without, nothing of the hold is left."""
        ...

    async def spend(
        self, name: str, number: BudgetSubject | None, at: datetime, grace: timedelta
    ) -> Spending:
        """Spend the units held under `name`, once (a second call answers SPENT again); UNHELD when no hold
        exists or none for `number`'s budget, WITHDRAWN when it was released, EXHAUSTED when the hold
        lapsed (held longer than `grace`) and a budget filled meanwhile (taken again now when none did)."""
        ...


@dataclass(frozen=True)
class State:
    """The state ports, one per aggregate, as the flows are given them (docs/decisions/0038)."""

    users: Users
    clients: Clients
    challenges: Challenges
    proofs: Proofs
    journal: ChallengeJournal
    send_units: SendUnits


class SmsGateway(Protocol):
    """Outbound SMS."""

    async def send(self, message: SmsMessage) -> SentSms:
        """Hand the message to the gateway. DeliveryFailed."""
        ...


class Outbox(Protocol):
    """The SMS queued by Start and Resend, read by dispatchers in a consumer group (docs/decisions/0025).

    Each entry goes to one consumer; it stays pending with that consumer until settled, and an entry idle
    past a timeout (its consumer died) is claimed by another. StoreUnavailable.
    """

    async def take(self, consumer: str, count: int, wait: timedelta) -> list[QueuedSms]:
        """Up to `count` entries no consumer was given yet, now theirs; waits up to `wait` for one. Each
        carries its challenge as stored when it was taken, where the outbox read both in one step."""
        ...

    async def reclaim(self, consumer: str, idle: timedelta, count: int) -> list[QueuedSms]:
        """Up to `count` entries pending with any consumer for longer than `idle`, now `consumer`'s, each
        with its challenge as `take` gives it."""
        ...

    async def keep(self, consumer: str, entries: Sequence[QueuedSms]) -> int:
        """`consumer` is still sending these entries: those still pending with it start their idle time
        again, so that `reclaim` does not take them as a dead consumer's; the others are left as they are.
        How many were kept."""
        ...

    async def challenge(self, queued: QueuedSms) -> Challenge:
        """The challenge the queued SMS carries the code of, as stored now. ChallengeNotFound."""
        ...

    async def settle(  # noqa: PLR0913 (the entry, what became of it, and what is journaled with it)
        self,
        queued: QueuedSms,
        state: DeliveryState,
        provider_ref: str,
        at: datetime,
        text: SentText | None = None,
        *,
        provider_ids: tuple[str, ...] = (),
        unconfirmed: tuple[str, ...] = (),
        held: bool = False,
    ) -> bool:
        """Record what became of the entry's SMS on its challenge (journaled, as record_delivery, with the
        record of its `text` when one was rendered, the provider's own message ids when it gave any:
        decision 0041, the earlier providers that may have taken it too: decision 0120, and whether the
        provider holds it for later, `held`: decision 0124) and remove the entry, in one atomic step; an
        entry whose challenge was purged is removed all the same. Asked again for the same attempt
        (`queued.attempt`) after the step ran (its answer lost), it writes nothing and answers False: one
        journal entry per send (decision 0056)."""
        ...

    async def settle_notice(self, queued: QueuedSms, user_id: str, notice: UserNotice) -> bool:
        """Journal the notice the entry held as the user's (sent or failed, the number masked) and remove
        the entry, in one atomic step (docs/decisions/0033); asked again for the same attempt after the step
        ran, it writes nothing and answers False (decision 0056)."""
        ...

    async def addressee(self, queued: QueuedSms) -> NoticeAddressee | None:
        """The old number (and the text's new number and locale) an override's notice goes to, as its step
        kept them beside the user (decision 0041); None once gone. Settling or dead-lettering that notice
        (`settle_notice`, `fail_notice`) removes them in its step."""
        ...

    async def fail(
        self, queued: QueuedSms, failure: str, at: datetime, allowed: int, *, text: SentText | None = None
    ) -> FailedTry:
        """A send of the entry that did not reach the phone (`failure`: the gateway's reason, or `expired`),
        in one atomic step: the entry stays pending for another try (journaled), or, once it was given to
        dispatchers `allowed` times (0: none more) or its code has expired, it is dead-lettered: FAILED
        (EXPIRED) with the reason on the challenge, journaled, removed, and a masked dead letter kept.
        Journaled with the record of the `text` the providers were handed, when one was (decision 0041)."""
        ...

    async def fail_notice(
        self, queued: QueuedSms, user_id: str, notice: UserNotice, failed: NoticeFailure
    ) -> FailedTry:
        """A send of the notice the entry holds that did not reach the phone, in one atomic step (decision
        0041): the entry stays pending for another try (the try journaled as the user's), or, once given to
        dispatchers `failed.allowed` times (0: none more) or past its age limit, it is dead-lettered: the
        notice journaled failed with the reason, the entry removed, a masked dead letter kept. Nothing is
        written on the challenge."""
        ...

    async def backlog(self) -> Backlog:
        """How many entries are not settled, and when the oldest was queued."""
        ...


class DeadLetters(Protocol):
    """The SMS the outbox gave up on, for the operators (docs/decisions/0033). StoreUnavailable."""

    async def recent(self, count: int) -> list[DeadLetter]:
        """The last `count` dead letters, newest first (masked: never a code, never a whole number)."""
        ...


class ProviderIds(Protocol):
    """A provider's own message ids, leading back to our message for as long as its receipts may come, so
    that a receipt finds its challenge after a restart (docs/decisions/0030)."""

    async def remember(self, provider_id: str, part: SentPart, until: datetime) -> None:
        """Note that `provider_id` is (a part of) the message `part` says, until `until`. StoreUnavailable."""
        ...

    async def owner(self, provider_id: str) -> SentPart:
        """The message a provider id is (a part of). ProviderIdUnknown; StoreUnavailable."""
        ...

    async def delivered_parts(self, provider_ref: str, provider_id: str, parts: int, until: datetime) -> int:
        """Note one part delivered (each id counts once, and no more than the message's `parts` ids are
        kept); how many of the message's are. Out of memory too (decision 0111). StoreUnavailable."""
        ...


class Probe(Protocol):
    """A dependency the service cannot serve without, asked whether it answers now (health checks).

    Implemented by the real adapters only: the fakes cannot fail, and the flows never call it.
    """

    async def check(self) -> None:
        """Return when the dependency answers a cheap request. StoreUnavailable, HsmUnavailable."""
        ...


class Clock(Protocol):
    """Where time comes from (UTC, timezone-aware)."""

    def now(self) -> datetime:
        """The current instant."""
        ...


class ReferenceClock(Protocol):
    """The clock every worker's is compared with: the shared state store's (decision 0104)."""

    async def reference_now(self) -> datetime:
        """The store's current instant (UTC, timezone-aware). StoreUnavailable."""
        ...


class SimSwapCheck(Protocol):
    """The mobile operator's SIM-swap check (CAMARA SIM Swap: retrieveSimSwapDate / checkSimSwap)."""

    async def status(self, phone: str, *, fresh: bool = False) -> SimSwapStatus:
        """Whether the SIM of `phone` (E.164) changed within the configured window; `fresh`: asked now, not
        read from an answer kept a while. SimSwapUnavailable."""
        ...


class RiskMeter(Protocol):
    """Where risk decisions are counted (the metrics: the domain knows no Prometheus)."""

    def decided(self, operation: str, assessment: RiskAssessment) -> None:
        """Count one assessment: its decision, each reason, each rule."""
        ...

    def sim_swap(self, state: str) -> None:
        """Count one answer (or silence) of the operator's SIM-swap API, by state."""
        ...


class EvidenceIndex(Protocol):
    """Each user's challenges by time and transaction id, kept for the evidence retention (decision 0036)."""

    async def index(self, openings: Sequence[IndexedOpening], now: datetime, retention: timedelta) -> None:
        """Keep `openings` (idempotent) and drop each touched user's entries older than `now - retention`."""
        ...

    async def find(
        self, user_id: str, since: datetime | None, until: datetime | None, transaction_id: str = ""
    ) -> list[EvidenceMatch]:
        """The user's challenges opened in [since, until) (unbounded when None), oldest first; only those of
        `transaction_id` when given."""
        ...

    async def find_page(
        self, user_id: str, since: datetime | None, until: datetime | None, offset: int, count: int
    ) -> list[EvidenceMatch]:
        """`find`'s list from its `offset`-th match, at most `count` of them: only those are read (0054)."""
        ...

    async def held(self, user_id: str, matches: Sequence[EvidenceMatch]) -> set[str]:
        """The challenge ids of `matches` the user's index holds (each looked up, the index not read)."""
        ...


class HealthNotes(Protocol):
    """The health notes' journal (decision 0036): what each worker saw of its dependencies, and when."""

    @property
    def stream(self) -> str:
        """The journal stream the notes are in."""
        ...

    async def note(self, at: datetime, worker: str, parts: Mapping[str, bool], retention: timedelta) -> None:
        """Journal that `worker` saw each of `parts` up (True) or down at `at`; drop notes older than
        `retention`."""
        ...

    async def notes(self, since: datetime | None, until: datetime | None) -> list[tuple[str, dict[str, str]]]:
        """The notes of [since, until] with the last one before `since`: ids and fields, oldest first."""
        ...
