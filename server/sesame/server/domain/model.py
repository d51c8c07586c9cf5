"""Value types shared by the flows and the ports: users, challenges, keys, messages."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sesame.server.domain.factors import FirstFactor
from sesame.server.domain.operation import Operation, digest
from sesame.server.domain.risk import RiskAssessment

if TYPE_CHECKING:
    from sesame.server.domain.risk_signals import RiskLesson


class MacAlgorithm(enum.Enum):
    """HMAC hash functions the key store can compute (OCRA allows SHA-1, SHA-256, SHA-512)."""

    SHA1 = "SHA1"
    SHA256 = "SHA256"
    SHA512 = "SHA512"


class KeyKind(enum.Enum):
    """The kinds of keys Sésame keeps in the HSM, each versioned by its label `sesame-<kind>-v<N>`."""

    OTP = "otp"  # a generic secret: HMAC for the codes (OCRA)
    PROOF = "proof"  # an EC P-256 key pair: ES256 signatures of the proofs
    JOURNAL = "journal"  # an EC P-256 key pair: ES256 signatures of the journal's seals (decision 0027)

    @property
    def prefix(self) -> str:
        """The label of every key of this kind, without its version number."""
        return f"sesame-{self.value}-v"


OTP_KEY_PREFIX = KeyKind.OTP.prefix
PROOF_KEY_PREFIX = KeyKind.PROOF.prefix


@dataclass(frozen=True, slots=True)
class KeyRef:
    """A key in the HSM, named by its label; secret and private key material never leaves the HSM."""

    label: str

    @classmethod
    def otp(cls, version: int) -> KeyRef:
        """The OTP derivation key of this version (`sesame-otp-v<N>`)."""
        return cls(f"{OTP_KEY_PREFIX}{version}")

    @classmethod
    def proof(cls, version: int) -> KeyRef:
        """The proof signing key pair of this version (`sesame-proof-v<N>`)."""
        return cls(f"{PROOF_KEY_PREFIX}{version}")

    @classmethod
    def of(cls, kind: KeyKind, version: int) -> KeyRef:
        """The key of this kind and version."""
        return cls(f"{kind.prefix}{version}")

    @property
    def otp_version(self) -> int:
        """The version number of an OTP key; ValueError for any other label."""
        return self.version(KeyKind.OTP)

    def version(self, kind: KeyKind) -> int:
        """The version number of a key of `kind`; ValueError for any other label."""
        suffix = self.label.removeprefix(kind.prefix)
        if not self.label.startswith(kind.prefix) or not suffix.isdigit():
            raise ValueError(f"not a {kind.value} key label: {self.label!r}")
        return int(suffix)


def key_versions(labels: Iterable[str], kind: KeyKind) -> list[int]:
    """The versions among `labels` that name keys of `kind`, ascending (other labels are ignored)."""
    versions = []
    for label in labels:
        suffix = label.removeprefix(kind.prefix)
        if label.startswith(kind.prefix) and suffix.isdigit():
            versions.append(int(suffix))
    return sorted(versions)


@dataclass(frozen=True, slots=True)
class PublicKey:
    """The public half of a proof key: a point of the P-256 curve, named by its label (the JWS `kid`)."""

    kid: str
    x: bytes  # 32 bytes, big-endian
    y: bytes  # 32 bytes, big-endian


class UserStatus(enum.Enum):
    """Lifecycle of an enrolled user."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    """When consecutive wrong codes block a user, and for how long (RTS Art. 4(3)(b) and 4(4)).

    The `max_failures`-th wrong code in a row, across challenges, blocks the user: the first block lasts
    `first_block`, each next one twice the last, up to `longest_block`. A right code resets both counts.
    """

    max_failures: int = 5  # RTS Art. 4(3)(b): "shall not exceed five"
    first_block: timedelta = timedelta(minutes=15)
    longest_block: timedelta = timedelta(hours=24)

    def block_length(self, blocks: int) -> timedelta:
        """How long the `blocks`-th block in a row lasts (1 is the first)."""
        length = self.first_block
        for _ in range(1, blocks):
            if length >= self.longest_block:
                break  # doubling on would only overflow
            length *= 2
        return min(length, self.longest_block)


@dataclass(frozen=True, slots=True)
class User:
    """A person designated by a client company, with the one secure phone codes go to."""

    user_id: str
    client_id: str
    secure_phone: str  # E.164, validated as a mobile number at enrolment
    locale: str
    status: UserStatus
    enrolled_at: datetime
    failures: int = 0  # wrong codes in a row since the last right one or the last block
    blocks: int = 0  # blocks in a row since the last right code (each lasts longer)
    blocked_until: datetime | None = None  # no code is sent before then
    status_changed_at: datetime | None = None  # last suspension, reinstatement or revocation
    phone_changed_at: datetime | None = None  # last change of the secure number
    cooling_until: datetime | None = None  # no code for payments or new payees before then
    # Status and number changes counted so far (`status_changes`, `phone_changes`): their order, whatever
    # the clocks of the hosts that made them (decision 0056). Not part of the user's identity.
    changes: tuple[int, int] = field(default=(0, 0), compare=False)

    def is_blocked(self, now: datetime) -> bool:
        """Whether consecutive wrong codes keep the user from being sent a code at `now`."""
        return self.blocked_until is not None and now < self.blocked_until

    def is_cooling(self, now: datetime) -> bool:
        """Whether a recent change of the secure number still holds back payments at `now`."""
        return self.cooling_until is not None and now < self.cooling_until


class ChallengeStatus(enum.Enum):
    """Where a challenge stands; EXPIRED is derived from the clock, never stored."""

    OPEN = "open"
    VERIFIED = "verified"
    LOCKED = "locked"  # every allowed attempt was spent on wrong codes
    VOIDED = "voided"  # a verification named another operation (RTS Art. 5(1)(d))
    CANCELLED = "cancelled"


class DeliveryState(enum.Enum):
    """What the SMS gateway said about the message."""

    PENDING = "pending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    QUEUED = "queued"  # in the outbox, not yet handed to the gateway (docs/decisions/0025)
    # Never delivered, final like FAILED: the challenge expired or closed while its SMS was queued (decision
    # 0025), or the SMSC gave up once the message's validity ran out (SMPP stat EXPIRED, decision 0030).
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Challenge:
    """One SCA challenge: an operation to authorise, the user and number it was sent to, its limits.

    The code itself is not here: it is recomputed in the HSM from `nonce`, the operation digest and
    the key of `key_version` whenever it is needed (to send it, or to check a submitted one).
    """

    challenge_id: str
    user_id: str
    client_id: str
    operation: Operation
    nonce: bytes
    key_version: int
    digits: int
    phone: str
    locale: str
    created_at: datetime
    expires_at: datetime
    max_attempts: int
    attempts: int
    status: ChallengeStatus
    delivery: DeliveryState
    max_resends: int  # how many times the same code may be sent again
    resend_spacing: timedelta  # the least time between two sends of the code
    resends: int  # how many resends were accepted so far
    last_sent_at: datetime  # when the code was last (re)sent: the opening, then each accepted resend
    # What the risk rules decided when it was opened (docs/risk.md): journaled with its opening, kept with the
    # challenge (a retry by request id answers it, its proof states it: decision 0032); None without rules.
    risk: RiskAssessment | None = None
    # Why its SMS was dead-lettered (docs/decisions/0033): `expired`, `max_tries`, or the providers' final
    # word (`bad_number`, `bad_content`, `refused`); shown while `delivery` is FAILED or EXPIRED.
    delivery_reason: str = ""
    # The first factor the caller stated with StartChallenge, kept for the proof (decision 0042); None: none.
    start_factor: FirstFactor | None = None
    # The bank's Verification of Payee answer for the payee (one of PAYEE_VERIFICATIONS), which the SMS
    # states (decision 0099); '' without a payee or an answer.
    payee_verification: str = ""
    # The user's `changes` its opening step read (`user_changes`, decision 0056); None: opened before the
    # counts existed. Not part of the challenge's identity.
    opened_changes: tuple[int, int] | None = field(default=None, compare=False)

    @property
    def op_digest(self) -> bytes:
        """SHA-256 of the canonical encoding of the operation."""
        return digest(self.operation)

    @property
    def attempts_left(self) -> int:
        """How many more codes may be submitted."""
        return max(self.max_attempts - self.attempts, 0)

    @property
    def resends_left(self) -> int:
        """How many more times the code may be sent again."""
        return max(self.max_resends - self.resends, 0)

    @property
    def next_send_at(self) -> datetime:
        """The earliest instant at which a resend is accepted (if any is left)."""
        return self.last_sent_at + self.resend_spacing

    def is_expired(self, now: datetime) -> bool:
        """Whether the validity window has closed at `now`."""
        return now >= self.expires_at


class VerifyResult(enum.Enum):
    """Outcome of one submitted code."""

    VERIFIED = "verified"
    WRONG_CODE = "wrong_code"
    EXPIRED = "expired"
    LOCKED = "locked"
    ALREADY_USED = "already_used"
    OPERATION_MISMATCH = "operation_mismatch"
    VOIDED = "voided"  # the challenge was voided earlier (mismatch) or cancelled
    USER_BLOCKED = (
        "user_blocked"  # the user is blocked after wrong codes in a row: the code was not evaluated
    )


@dataclass(frozen=True, slots=True)
class RequestContext:
    """The end user's context as the calling banking service forwards it (journaled as evidence)."""

    ip: str = ""
    device_id: str = ""
    session_id: str = ""
    user_agent: str = ""
    # The calling service's verified identity (its mTLS certificate), set by Sésame from the connection,
    # never from the request: who asked is evidence too. Empty without mTLS.
    caller: str = ""
    # The factor the caller verified before the SMS code, as it asserts it (StartChallenge, VerifyChallenge
    # only); journaled with the start and the attempt, named in the proof (decision 0035).
    first_factor: FirstFactor | None = None
    # The bank's Verification of Payee answer for the operation's payee (one of PAYEE_VERIFICATIONS, '' not
    # told): journaled, and the risk signal `payee_verification` (decision 0099).
    payee_verification: str = ""


# What a Verification of Payee may answer (Reg. (EU) 2024/886; the proto's PayeeVerification).
PAYEE_VERIFICATIONS = ("match", "close_match", "no_match", "not_possible")


@dataclass(frozen=True, slots=True)
class VerificationAttempt:
    """What the verify flow hands the store: the facts it computed, never the code itself."""

    challenge_id: str  # its tag names the user's place; the store reads the user from the challenge
    op_digest: bytes
    code_matches: bool
    at: datetime
    context: RequestContext
    # What the proof will be known by if this attempt is VERIFIED, drawn before the decision: the store
    # journals it with a VERIFIED decision only, so the signed proof is fixed by the journal (decision 0026).
    proof_id: ProofId | None = None
    # The notice a VERIFIED decision queues in the outbox in the same step (`beneficiary_added` for an
    # added payee, "" none; docs/decisions/0033); a block that starts always queues its alert.
    notice: str = ""
    # What a VERIFIED decision teaches its user's risk memory in the same step (decision 0032); None: no rules
    risk: RiskLesson | None = None
    # The right code's witness (`codes.witnessed`), journaled with a VERIFIED decision only: a proof signed
    # later from the journal is signed for a decision the HSM checked (decision 0167); "" for a wrong code.
    witness: str = ""


@dataclass(frozen=True, slots=True)
class ProofId:
    """The `jti` and `kid` of a proof, chosen before its decision and journaled with it (decision 0026)."""

    jti: str  # 32 hex digits, random: unique, not secret
    kid: str  # the label of the proof key that signs it


@dataclass(frozen=True, slots=True)
class VerificationOutcome:
    """What the store decided, atomically, for one attempt."""

    result: VerifyResult
    attempts_left: int
    challenge: Challenge
    proof: str = ""  # the signed proof (compact JWS) of a VERIFIED attempt, once issued; "" otherwise
    blocked_until: datetime | None = None  # set when this wrong code started a block of the user


@dataclass(frozen=True, slots=True)
class RefusalCount:
    """How often one kind of refusal was answered for a challenge. Only the first one was journaled.

    A refusal (a code for a spent challenge, a resend too soon, a second cancel...) changes nothing and
    anyone may repeat it: counting the repeats instead of journaling each keeps the journal bounded.
    """

    event: str  # challenge.verification, challenge.resend, challenge.cancel, challenge.consume
    outcome: str  # already_used, user_blocked, ...; too_soon, ...; refused; used, replayed, ...
    count: int  # every refusal of the kind, the journaled one included
    last_at: datetime


@dataclass(frozen=True, slots=True)
class JournalPage:
    """Part of a journal, oldest first, and where the next part starts."""

    entries: list[dict[str, str]]
    next_token: str  # opaque; "" when there is no more


@dataclass(frozen=True, slots=True)
class SmsMessage:
    """One SMS to send. `text` may hold a code: adapters must never log it unmasked."""

    to: str
    text: str
    challenge_id: str  # "" for a notice, which belongs to no challenge and carries no code
    # The message's own reference, the same on every attempt (the outbox's entry): each provider's
    # reference is made from it, and the provider sees it (decision 0030). "": one is drawn per attempt.
    reference: str = ""
    # How long the text means anything (a code's time left when it is sent): a provider asks its SMSC to
    # drop the message past it rather than deliver a dead code hours later (decision 0123). None: no limit.
    valid_for: timedelta | None = None


@dataclass(frozen=True, slots=True)
class SentPart:
    """The message a provider's own message id is (a part of): its challenge, our reference, its parts."""

    challenge_id: str
    provider_ref: str
    parts: int


@dataclass(frozen=True, slots=True)
class SentSms:
    """The gateway's acknowledgement."""

    provider_ref: str
    sent_at: datetime
    # The provider's own message ids, to record beside our reference (SMPP: one per part; Kannel's
    # sendsms answers with none).
    provider_ids: tuple[str, ...] = ()
    # The providers asked before the one that took it whose attempt may have reached the phone all the same
    # (no answer in time, the connection lost, some parts taken: decision 0096), each as `<its provider
    # reference>:<failure>`: the journal names every provider the code may have gone through (decision 0120).
    unconfirmed: tuple[str, ...] = ()
    # The provider holds the message for later, having no route to its SMSC now (Kannel's `3: Queued for
    # later delivery`, answered while no SMSC is connected): taken, not on its way (decision 0124).
    queued: bool = False
