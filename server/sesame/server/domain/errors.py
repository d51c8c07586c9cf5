"""The error tree of Sésame: every failure a flow or an adapter can report, as a type.

Adapters translate their library's exceptions into these at the boundary; the gRPC layer maps them to
status codes in one table (`sesame.server.grpc.status`). Messages never carry a code, a PIN, key
material or a full phone number.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import ClassVar, Literal


class SesameError(Exception):
    """Root of every error Sésame raises on purpose."""

    # Whether a call's ERROR line may quote the error's text: it never holds a key, a value or a secret.
    said_in_log: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One reason why one request field is invalid (`field` is the proto field path)."""

    field: str
    description: str


class InvalidRequest(SesameError):
    """The caller sent bad input; nothing was changed."""

    def __init__(self, violations: list[FieldViolation]) -> None:
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))
        self.violations = tuple(violations)


class RequestIdReused(InvalidRequest):
    """The caller's idempotency key was already used, for a different request, on this user."""

    def __init__(self) -> None:
        super().__init__([FieldViolation("request_id", "was already used for another request")])


class NotFoundError(SesameError):
    """A named thing does not exist."""


class UserNotFound(NotFoundError):
    """No user is enrolled under this id."""


class ChallengeNotFound(NotFoundError):
    """No challenge exists under this id (never opened, or purged after its retention)."""


class ProviderIdUnknown(NotFoundError):
    """A provider's message id names no message we remember (never sent by us, or forgotten)."""


class ClientNotFound(NotFoundError):
    """No user was ever enrolled for this client company."""


class UserAlreadyExists(SesameError):
    """A different user is already enrolled under this id."""


class ChallengeAlreadyExists(SesameError):
    """A challenge was already opened under this id; ids are never reused."""


class UserNotActive(SesameError):
    """The user's status forbids this: no code for a suspended or revoked user, no change to a revoked one."""


class SecurePhoneChanged(SesameError):
    """The user's secure number changed while a code was about to be sent to the old one: nothing was sent."""


class ClientTerminated(SesameError):
    """The client company terminated the service: none of its users may be enrolled again."""


class PhoneUnchanged(SesameError):
    """The new secure number is the user's secure number already."""


class PhoneCooling(SesameError):
    """The secure number changed recently: no code for payments or new payees for `retry_after`."""

    def __init__(self, user_id: str, retry_after: timedelta) -> None:
        super().__init__(user_id)
        self.retry_after = retry_after


class ChallengeUnusable(SesameError):
    """A challenge named to authorise something (a change of number, a proof) cannot authorise it."""


class ChallengeNotVerified(ChallengeUnusable):
    """The challenge was not verified (still open, locked, voided, cancelled or expired): it authorises no
    change of number, and no proof can be issued for it."""


class ChallengeMismatch(ChallengeUnusable):
    """The challenge is another user's or another operation's, or the user changed since it was opened."""


class ChallengeConsumed(ChallengeUnusable):
    """The challenge was already spent on a ChangeSecurePhone request, whether that request changed the number
    or was refused (a verified code authorises one thing once; a suspension or a change since it was opened
    leaves it unusable anyway)."""


class UserBlocked(SesameError):
    """Too many wrong codes in a row: no code is sent to the user for `retry_after`."""

    def __init__(self, user_id: str, retry_after: timedelta) -> None:
        super().__init__(user_id)
        self.retry_after = retry_after


class ChallengeClosed(SesameError):
    """The challenge can no longer be acted upon (verified, voided, locked, cancelled or expired)."""


class ResendRefused(SesameError):
    """The code may not be sent again now: too soon after the last send, or no resend is left.

    `retry_after` is how long to wait, or None when no resend is left (a new challenge is needed).
    """

    def __init__(self, challenge_id: str, retry_after: timedelta | None) -> None:
        super().__init__(challenge_id)
        self.retry_after = retry_after


class SendBudgetExhausted(SesameError):
    """The user, or the destination number, was sent as many codes as its budget allows in the window.

    `subject` is `user` or `phone` (never the number); `retry_after` is the exact wait until a unit frees.
    """

    def __init__(self, subject: str, retry_after: timedelta) -> None:
        super().__init__(subject)
        self.subject = subject
        self.retry_after = retry_after


class NoopsFull(SesameError):
    """A reinstatement or an unblock that would change nothing (the user is as asked already), and no room is
    left among the user's remembered request ids of calls that changed nothing until `retry_after`: refused,
    not answered and forgotten, since its retry, taken as a new call, would lift a suspension or a block made
    since (decision 0150)."""

    def __init__(self, user_id: str, retry_after: timedelta) -> None:
        super().__init__(user_id)
        self.retry_after = retry_after


class DestinationNotAllowed(SesameError):
    """The number is in a country Sésame does not send SMS to; the message is the region, never the number."""


class KeyNotFound(SesameError):
    """The HSM holds no key under this label."""


class KeyVersionUnavailable(SesameError):
    """A challenge names an OTP key version this HSM does not hold: a replica without a key its peers
    hold, or a token that lost it. A server fault, never an unknown challenge (the caller may retry)."""

    def __init__(self, key_version: int) -> None:
        super().__init__(f"key version {key_version}")
        self.key_version = key_version


class KeyReplaced(SesameError):
    """The HSM holds, under a label the store saw, another key than the one seen: a replaced token."""

    def __init__(self, label: str) -> None:
        super().__init__(label)
        self.label = label


class HsmUnavailable(SesameError):
    """The HSM could not be reached or failed; the operation may be retried."""


class StoreUnavailable(SesameError):
    """The state store could not be reached or failed; the operation may be retried. Its text is redis-py's
    class and Redis's reply code, never a key or a value (decision 0062)."""

    said_in_log = True


class StoreCorrupt(StoreUnavailable):
    """A record in the state store is damaged (a field a step cannot read): refused before any write. Not a
    failure that passes: callers are told INTERNAL, not to retry (it answered UNAVAILABLE "retry later", and a
    caller's retries met the same record for ever: an outside audit). Handled as the store failing inside."""


class SimNumberMoved(StoreUnavailable):
    """Start's step did not open: the operator's SIM-swap answer is about another number than the user's.

    `number` is the stored one: Start asks the operator about it and runs the step again (decision 0045).
    Nothing was written. Should it escape (the number kept moving), the caller may retry.
    """

    def __init__(self, number: str) -> None:
        super().__init__("the user's secure number is not the one the operator was asked about")
        self.number = number


class JournalDisagrees(SesameError):
    """A challenge's journal holds a VERIFIED decision Sésame did not make: its entries name other users,
    clients, challenges or operations than the opening's, or it carries no witness the HSM made (decision
    0167). Someone wrote to Redis: no proof is signed from it."""


class Overloaded(SesameError):
    """This worker already runs as many calls as it may: the call was shed, nothing was done; retry."""


class DeadlinePassed(SesameError):
    """The caller's deadline passed before a step that changes anything began: nothing was done (the caller
    was told DEADLINE_EXCEEDED; a retry does the work)."""


class EvidenceBusy(Overloaded):
    """This worker already gathers as many first pages of users' evidence as it may at once (each may take
    hundreds of megabytes, decision 0146): the call was shed, nothing was done; retry in a moment."""


class ClockOff(SesameError):
    """This worker's clock is off the shared store's by more than a worker's may be: the call was refused,
    nothing was done; retry (on a worker in step). `offset` is the worker's clock less the store's."""

    def __init__(self, offset: timedelta) -> None:
        super().__init__(f"clock {offset.total_seconds():+.1f} s off the state store's")
        self.offset = offset


# Why a gateway did not take a message: a bounded set, for the metrics label and the rate-limited log.
# `throttled`, `unavailable` (a temporary refusal) and `unreachable` come before the provider took the
# message; `timeout` and `lost` leave it unknown, `partial` says it took some parts of it; `bad_number`,
# `bad_content` and `refused` are the provider's final word (docs/decisions/0030).
DeliveryFailure = Literal[
    "unreachable",
    "timeout",
    "refused",
    "error",
    "throttled",
    "unavailable",
    "lost",
    "bad_number",
    "bad_content",
    "partial",
]


class DeliveryFailed(SesameError):
    """The SMS gateway refused or failed to take the message; `reason` says which way, in a bounded set."""

    def __init__(self, message: str, reason: DeliveryFailure = "error") -> None:
        super().__init__(message)
        self.reason: DeliveryFailure = reason


class NothingSent(DeliveryFailed):
    """The provider got nothing of the message through no fault of its own (an SMPP session that ended
    before the request was written): no circuit breaker counts it (an outside audit)."""


class DeliveryRefused(DeliveryFailed):
    """Every provider gave its final word on the message (refused number, text or account): no later try
    would do better, so the outbox dead-letters it at once (docs/decisions/0033)."""


class ConfigurationError(SesameError):
    """Settings are missing or invalid; the service refuses to start."""


class RedisUrlUnusable(ConfigurationError):
    """A Redis URL the client cannot use (no URL at all, a port out of range, a scheme, an option, a cluster
    seed): `fault` says what, never quoting the URL, which may hold the password. The message names
    SESAME_REDIS_URL, where every URL comes from but a command's `--redis` option: the command line names the
    option for those (decision 0108)."""

    def __init__(self, fault: str) -> None:
        super().__init__(f"the Redis URL (SESAME_REDIS_URL) cannot be used: {fault}")
        self.fault = fault


class KeyExposed(ConfigurationError):
    """A key of Sésame's in the HSM is, or once was, readable or exportable (not sensitive, extractable, or
    made so once): it is not served (docs/decisions/0079). The message names its label, never its value."""

    def __init__(self, label: str, reasons: tuple[str, ...]) -> None:
        super().__init__(
            f"the HSM key {label} is not protected ({', '.join(reasons)}): its value may be known outside "
            "the HSM, so it is not served. Make a new version (`sesame keys rotate --kind <its kind>`) if it "
            "is the current one, then destroy it with the HSM's tools"
        )
        self.label = label
        self.reasons = reasons


class KeyAttributeUnsupported(ConfigurationError):
    """The HSM refused an attribute of a new key's template (CKR_ATTRIBUTE_TYPE_INVALID): a token older than
    the PKCS#11 version that names it. No key was made (docs/decisions/0079)."""

    def __init__(self, attributes: tuple[str, ...], setting: str) -> None:
        super().__init__(
            f"the HSM refused {', '.join(attributes)} in a new key's template (a token older than PKCS#11 "
            f"2.40): no key was made. Use an HSM that knows it; or, accepting that a holder of the PIN can "
            f"copy the keys made there, set {setting}"
        )
        self.attributes = attributes


class ScriptSpansSlots(ConfigurationError):
    """A Lua script was given keys in more than one hash slot of a Redis Cluster, which runs a script on one
    slot only (docs/decisions/0047): the key layout does not fit the cluster. Nothing ran; a retry fails the
    same way, so it is not StoreUnavailable."""

    def __init__(self, script: str) -> None:
        super().__init__(f"script {script} touches keys in several hash slots (a cluster runs one slot)")
        self.script = script


class RiskDenied(SesameError):
    """The risk rules deny the operation (docs/risk.md): no challenge was opened, no SMS sent.

    `codes` and `descriptions` are the matching rules' reasons (ours, never the caller's values),
    `rules_version` the rules that decided. `again`: the request id was denied before, so this is a
    retry of one attempt, journaled and counted once (decision 0050).
    """

    def __init__(  # noqa: PLR0913 (the denial's parts, as the step answers them)
        self,
        user_id: str,
        codes: tuple[str, ...],
        descriptions: tuple[str, ...],
        rules_version: str,
        rules: tuple[str, ...] = (),  # the matched rules' ids, for the metrics
        *,
        again: bool = False,
    ) -> None:
        super().__init__(user_id)
        self.codes = codes
        self.descriptions = descriptions
        self.rules_version = rules_version
        self.rules = rules
        self.again = again


class SimSwapUnavailable(SesameError):
    """The operator's SIM-swap API did not answer in time or failed (a risk signal, never an answer)."""
