"""The vocabulary of the user lifecycle: who asked for a change, what change, what the store answered.

Suspend (loss or theft, CMF L.133-17), reinstate, revoke (RTS Art. 27), change the secure number (an
association, RTS Art. 24) and terminate a client company: see docs/decisions/0010-user-lifecycle.md.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sesame.server.domain.destinations import DEFAULT_COUNTRIES
from sesame.server.domain.model import RequestContext, User, UserStatus
from sesame.server.domain.sent_text import SentText
from sesame.server.domain.sms_templates import SmsTemplates, default_templates

# Replicas' clocks differ a little: a challenge that one replica reads as just expired may still be
# accepted by another, so the open-challenge index keeps (and voiding covers) this much past expiry.
CLOCK_SKEW = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class LifecyclePolicy:
    """Settings of the registry flows, validated at boot (see `sesame.server.config`)."""

    # Payments and new payees wait this long after a change of the secure number: long enough for the
    # holder of the old number to read the notice and call the bank, a weekend included.
    cooling: timedelta = timedelta(hours=72)
    bank_name: str = "MaBanque"
    countries: frozenset[str] = DEFAULT_COUNTRIES  # where a secure number may be (docs/decisions/0011)
    sms_templates: SmsTemplates = field(default_factory=default_templates)  # the notice's words


@dataclass(frozen=True, slots=True)
class Provenance:
    """Who asked for a registry change and why, under which idempotency key: all journaled."""

    actor: str  # the operator or service that asked, as the caller names it
    reason: str  # free text; may be empty except for an override of the number change
    request_id: str  # the caller's idempotency key; a user records the ones it applied
    caller: str = ""  # the calling service's verified identity (mTLS), when there is one


def fingerprint(*parts: str) -> str:
    """What identifies a request under its request id: a retry must carry the same parts."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


class StatusAction(enum.Enum):
    """A change of the user's status asked for by the bank."""

    SUSPEND = "suspend"  # loss or theft of the phone: at once, and pending challenges are voided
    REINSTATE = "reinstate"  # back to ACTIVE; also lifts a block after wrong codes in a row
    REVOKE = "revoke"  # for good: the id is never enrolled again


@dataclass(frozen=True, slots=True)
class StatusChange:
    """Suspend, reinstate or revoke one user."""

    user_id: str
    action: StatusAction
    at: datetime
    provenance: Provenance

    @property
    def fingerprint(self) -> str:
        """The request as its request id stands for it."""
        return fingerprint(self.action.value, self.provenance.actor, self.provenance.reason)


@dataclass(frozen=True, slots=True)
class Unblocking:
    """Lift `user_id`'s block after wrong codes in a row (RTS Art. 4(3)(b)): the back office's decision."""

    user_id: str
    at: datetime
    provenance: Provenance

    @property
    def fingerprint(self) -> str:
        """The request as its request id stands for it."""
        return fingerprint("unblock", self.provenance.actor, self.provenance.reason)


class UnblockOutcome(enum.Enum):
    """What the store did with an unblock it accepted."""

    UNBLOCKED = "unblocked"  # wrong codes in a row, a block, or both, cleared now
    UNCHANGED = "unchanged"  # nothing to lift
    REPLAYED = "replayed"  # this request id was applied already: nothing changed now


@dataclass(frozen=True, slots=True)
class Unblocked:
    """The user after an accepted unblock."""

    outcome: UnblockOutcome
    user: User


class RevocationOutcome(enum.Enum):
    """What revoking one user of a terminated client did."""

    REVOKED = "revoked"
    UNCHANGED = "unchanged"  # revoked already
    FOREIGN = "foreign"  # the id is another client's user: left alone
    FORECLOSED = "foreclosed"  # the id was never enrolled (an enrolment cut short): it never will be


class VoidReason(enum.Enum):
    """Why a pending challenge was voided."""

    USER_SUSPENDED = "user_suspended"
    USER_REVOKED = "user_revoked"
    PHONE_CHANGED = "phone_changed"  # its code went to a number that is no longer the secure one
    USER_BLOCKED = "user_blocked"  # the user was blocked after wrong codes in a row (RTS Art. 4(3)(b))
    SEND_BUDGET = "send_budget"  # its Start's send units were refused: never sent (decision 0046)


@dataclass(frozen=True, slots=True)
class Voiding:
    """Void one pending challenge of `user_id` because of a change of the user."""

    user_id: str
    reason: VoidReason
    at: datetime
    provenance: Provenance
    # The user's (status, number) change counts right after the change that calls for the voiding: only a
    # challenge opened under lower ones, in either, was opened before it (decision 0010, amended). A late
    # or retried voiding then leaves alone what the user opened since. None: whatever is still open (a
    # block, a revocation, which is final, a Start's own challenge).
    opened_before: tuple[int, int] | None = None


class VoidOutcome(enum.Enum):
    """What voiding one challenge did."""

    VOIDED = "voided"  # it was open: cancelled now, even its right code is refused
    CLOSED = "closed"  # verified, locked, voided or cancelled already: left as it is
    GONE = "gone"  # purged after its retention
    FORECLOSED = "foreclosed"  # never opened (the opener is late or died): it never will be
    OPENED_AFTER = "opened_after"  # opened after the change that called for the voiding: left as it is


@dataclass(frozen=True, slots=True)
class AppliedChange:
    """A request id a user recorded: the request's fingerprint and, for a change of status or number, the
    user's (status, number) change counts right after it (None: an unblock, or recorded before them)."""

    fingerprint: str
    counts: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """The user after an accepted status change, and the counts its change left (see `AppliedChange`):
    the change this call made or found in force, or for a retry the one its request made before."""

    user: User
    counts: tuple[int, int] | None
    # For a suspension or a revocation this call made, the user's challenges open at that instant: each is
    # void from it, whichever step marks it so first (decision 0102); 0 otherwise.
    open_at_change: int = 0
    # This call changed the user (its status, or a block a reinstatement lifted): what the metrics count.
    changed: bool = False


@dataclass(frozen=True, slots=True)
class ByChallenge:
    """A number change authorised by a challenge verified on the old number (RTS Art. 24)."""

    challenge_id: str


@dataclass(frozen=True, slots=True)
class ByOverride:
    """A number change the bank's back office decided without a code (the old phone is lost, say)."""

    operator: str  # the bank employee who takes responsibility for it


Authority = ByChallenge | ByOverride


@dataclass(frozen=True, slots=True)
class Consumption:
    """Spend a verified challenge, once, as the authority for a change of `user_id`'s number."""

    challenge_id: str
    user_id: str
    op_digest: bytes  # of the ChangePhone operation naming the new number
    request_id: str  # the change's idempotency key: a retry of the same change may spend it again
    at: datetime
    context: RequestContext


@dataclass(frozen=True, slots=True)
class PhoneChange:
    """Replace `user_id`'s secure number; conditions the store checks atomically with the change."""

    user_id: str
    new_phone: str
    at: datetime
    cooling_until: datetime  # payments and new payees wait until then
    authority: Authority
    provenance: Provenance
    context: RequestContext
    expected_phone: str | None = None  # the number the code went to: still the secure one
    unchanged_since: datetime | None = None  # when that challenge was opened: no status change since
    # The user's (status, number) change counts that challenge was opened under: none counted since
    # (decision 0056); None for a challenge opened before the counts, which keeps `unchanged_since`.
    unchanged_counts: tuple[int, int] | None = None

    @property
    def allowed(self) -> frozenset[UserStatus]:
        """A suspended user's number changes only by override: its codes may be in a thief's hands."""
        if isinstance(self.authority, ByChallenge):
            return frozenset({UserStatus.ACTIVE})
        return frozenset({UserStatus.ACTIVE, UserStatus.SUSPENDED})

    @property
    def fingerprint(self) -> str:
        """The request as its request id stands for it."""
        match self.authority:
            case ByChallenge(challenge_id=challenge_id):
                authority = f"challenge:{challenge_id}"
            case ByOverride(operator=operator):
                authority = f"override:{operator}"
        return fingerprint(
            "change_phone", self.new_phone, authority, self.provenance.actor, self.provenance.reason
        )


class PhoneChangeOutcome(enum.Enum):
    """What the store did with a number change it accepted."""

    CHANGED = "changed"
    REPLAYED = "replayed"  # this request id was applied already: nothing changed now


@dataclass(frozen=True, slots=True)
class PhoneChanged:
    """The user after an accepted number change, and the number it replaced (when changed now)."""

    outcome: PhoneChangeOutcome
    user: User
    previous_phone: str  # "" for a replay
    counts: tuple[int, int] | None  # right after the change, for a replay as recorded (`AppliedChange`)
    open_at_change: int = 0  # the user's challenges open at a change made now: void from it (decision 0102)


@dataclass(frozen=True, slots=True)
class UserNotice:
    """A notice SMS sent to a user about a change of their own (no code in it), for the journal."""

    kind: str  # "phone_changed", "beneficiary_added", "user_blocked" (sms_templates.Kind)
    to: str  # the full number: the store journals it masked
    sent: bool  # whether the gateway took it
    provider_ref: str
    at: datetime
    text: SentText | None = None  # its text's hash and template version, journaled with it (decision 0035)


@dataclass(frozen=True, slots=True)
class ClientTermination:
    """The client company ended the service (résiliation): every user it designated is revoked."""

    client_id: str
    at: datetime
    provenance: Provenance
