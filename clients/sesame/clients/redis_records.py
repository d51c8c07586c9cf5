"""How users, challenges and journal entries are laid out in Redis: hash fields and stream fields.

Times are stored as integer Unix milliseconds, so that the Lua scripts can compare them; they read back
as UTC datetimes truncated to the millisecond. The operation is stored as its canonical bytes and its
digest as hex, so that the scripts can compare a submitted digest without decoding anything.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from sesame.server.domain import factors
from sesame.server.domain.factors import FirstFactor
from sesame.server.domain.lifecycle import AppliedChange, Provenance, UserNotice
from sesame.server.domain.model import (
    Challenge,
    ChallengeStatus,
    DeliveryState,
    ProofId,
    RefusalCount,
    RequestContext,
    User,
    UserStatus,
)
from sesame.server.domain.opening import Opening
from sesame.server.domain.operation import ChangePhone, MalformedEncoding, Operation, decode, digest, kind
from sesame.server.domain.privacy import mask_phone
from sesame.server.domain.proof import IssuedProof
from sesame.server.domain.risk import RiskAssessment, RiskDecision, RiskReason
from sesame.server.domain.risk_signals import in_flight_field

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)

Field = str | bytes | int
"""One element of a flat field/value argument list, as Redis commands take them."""


class CorruptRecord(ValueError):
    """A stored hash that does not read back as a domain value (a foreign or damaged record)."""


def to_ms(at: datetime) -> int:
    """Unix milliseconds of a timezone-aware instant (floored)."""
    return (at - EPOCH) // MS


def from_ms(ms: int) -> datetime:
    """The UTC instant of Unix milliseconds."""
    return EPOCH + ms * MS


def iso(at: datetime) -> str:
    """ISO 8601 UTC with milliseconds, as the journal shows times."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds")


def pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    """A flat [field, value, ...] reply (HGETALL from a script) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def user_fields(user: User) -> list[Field]:
    """The user hash, flat."""
    return [
        "user_id", user.user_id,
        "client_id", user.client_id,
        "phone", user.secure_phone,
        "locale", user.locale,
        "status", user.status.value,
        "enrolled_at", to_ms(user.enrolled_at),
        "failures", user.failures,
        "blocks", user.blocks,
        "blocked_until", optional_ms(user.blocked_until),
        "status_changed_at", optional_ms(user.status_changed_at),
        "phone_changed_at", optional_ms(user.phone_changed_at),
        "cooling_until", optional_ms(user.cooling_until),
    ]  # fmt: skip


def optional_ms(at: datetime | None) -> int:
    """Unix milliseconds, 0 for none (the hash and the scripts read 0 as never)."""
    return 0 if at is None else to_ms(at)


def optional_time(raw: Mapping[bytes, bytes], field: bytes) -> datetime | None:
    """A time field of a hash; absent or 0 is none (records written before the field existed read so)."""
    ms = int(raw.get(field, b"0"))
    return from_ms(ms) if ms else None


def user_from_hash(raw: Mapping[bytes, bytes]) -> User:
    """The user a hash holds (users enrolled before the lockout fields existed read as never blocked)."""
    try:
        return User(
            user_id=raw[b"user_id"].decode(),
            client_id=raw[b"client_id"].decode(),
            secure_phone=raw[b"phone"].decode(),
            locale=raw[b"locale"].decode(),
            status=UserStatus(raw[b"status"].decode()),
            enrolled_at=from_ms(int(raw[b"enrolled_at"])),
            failures=int(raw.get(b"failures", b"0")),
            blocks=int(raw.get(b"blocks", b"0")),
            blocked_until=optional_time(raw, b"blocked_until"),
            status_changed_at=optional_time(raw, b"status_changed_at"),
            phone_changed_at=optional_time(raw, b"phone_changed_at"),
            cooling_until=optional_time(raw, b"cooling_until"),
            changes=(int(raw.get(b"status_changes", b"0")), int(raw.get(b"phone_changes", b"0"))),
        )
    except (KeyError, ValueError) as exc:
        raise CorruptRecord("user record") from exc


def challenge_fields(challenge: Challenge) -> list[Field]:
    """The challenge hash, flat."""
    return [
        "challenge_id", challenge.challenge_id,
        "user_id", challenge.user_id,
        "client_id", challenge.client_id,
        "operation", challenge.operation.encode(),
        "op_digest", challenge.op_digest.hex(),
        "nonce", challenge.nonce.hex(),
        "key_version", challenge.key_version,
        "digits", challenge.digits,
        "phone", challenge.phone,
        "locale", challenge.locale,
        "created_at", to_ms(challenge.created_at),
        "expires_at", to_ms(challenge.expires_at),
        "max_attempts", challenge.max_attempts,
        "attempts", challenge.attempts,
        "status", challenge.status.value,
        "delivery", challenge.delivery.value,
        "max_resends", challenge.max_resends,
        "resend_spacing_ms", challenge.resend_spacing // MS,
        "resends", challenge.resends,
        "last_sent_at", to_ms(challenge.last_sent_at),
        *([] if challenge.risk is None else risk_hash_fields(challenge.risk)),
        *([] if challenge.start_factor is None else factor_hash_fields(challenge.start_factor)),
        *in_flight_fields(challenge.operation),
        *(["payee_check", challenge.payee_verification] if challenge.payee_verification else []),
    ]  # fmt: skip


def in_flight_fields(operation: Operation) -> list[Field]:
    """`risk_open`, for an operation the velocity signals count while its challenge is open (decision 0090):
    what Start's step reads of the user's other pending challenges (_risk_rules.lua)."""
    field = in_flight_field(operation)
    return [] if field is None else ["risk_open", field]


def factor_hash_fields(factor: FirstFactor) -> list[Field]:
    """The first factor stated at Start as the challenge keeps it for the proof (decision 0042): one field,
    `<category>|<method>|<verified at, unix ms>|<reference>`, within Redis's listpack bound in ordinary cases.
    Methods and categories hold no `|` (a closed list); the reference is last, whatever it holds."""
    parts = [factor.category.value, factor.method, str(to_ms(factor.verified_at)), factor.reference]
    return ["start_factor", "|".join(parts)]


def factor_from_hash(raw: Mapping[bytes, bytes]) -> FirstFactor | None:
    """The first factor `factor_hash_fields` kept; None when Start stated none."""
    kept = raw.get(b"start_factor")
    if kept is None:
        return None
    category, method, at, reference = kept.decode().split("|", 3)
    return FirstFactor(factors.FactorCategory(category), method, from_ms(int(at)), reference)


def risk_hash_fields(risk: RiskAssessment) -> list[Field]:
    """The rules' decision as the challenge keeps it: a retry by request id answers it, a proof states it.

    One field, `<decision>|<rules version>|<codes>|<rule ids>|<payee added, unix ms>` with empty parts cut
    from the end and no descriptions (the rules that matched tell them again: `RiskFlows.described`): under
    Redis's listpack bound (64 bytes) in ordinary cases, so that a flow's bytes stay within their bound
    (tests/e2e/test_memory_per_flow.py). Codes, ids and versions hold no `|` (checked at boot).
    """
    added = "" if risk.payee_added_at is None else str(to_ms(risk.payee_added_at))
    codes, rules = ",".join(risk.codes), ",".join(risk.rules)
    parts = [risk.decision.name.lower(), risk.rules_version, codes, rules, added]
    while parts[-1] == "":
        parts.pop()
    return ["risk", "|".join(parts)]


def risk_from_hash(raw: Mapping[bytes, bytes]) -> RiskAssessment | None:
    """The decision `risk_hash_fields` kept, its reasons without descriptions; None without rules."""
    kept = raw.get(b"risk")
    if kept is None:
        return None
    decision, version, codes, rules, added = [*kept.decode().split("|"), "", "", ""][:5]
    return RiskAssessment(
        RiskDecision[decision.upper()],
        tuple(RiskReason(code, "") for code in codes.split(",") if code),
        version,
        tuple(rule for rule in rules.split(",") if rule),
        from_ms(int(added)) if added else None,
    )


def challenge_from_hash(raw: Mapping[bytes, bytes]) -> Challenge:
    """The challenge a hash holds."""
    try:
        return Challenge(
            challenge_id=raw[b"challenge_id"].decode(),
            user_id=raw[b"user_id"].decode(),
            client_id=raw[b"client_id"].decode(),
            operation=decode(raw[b"operation"]),
            nonce=bytes.fromhex(raw[b"nonce"].decode()),
            key_version=int(raw[b"key_version"]),
            digits=int(raw[b"digits"]),
            phone=raw[b"phone"].decode(),
            locale=raw[b"locale"].decode(),
            created_at=from_ms(int(raw[b"created_at"])),
            expires_at=from_ms(int(raw[b"expires_at"])),
            max_attempts=int(raw[b"max_attempts"]),
            attempts=int(raw[b"attempts"]),
            status=ChallengeStatus(raw[b"status"].decode()),
            delivery=DeliveryState(raw[b"delivery"].decode()),
            max_resends=int(raw[b"max_resends"]),
            resend_spacing=int(raw[b"resend_spacing_ms"]) * MS,
            resends=int(raw[b"resends"]),
            last_sent_at=from_ms(int(raw[b"last_sent_at"])),
            delivery_reason=raw.get(b"delivery_reason", b"").decode(),
            risk=risk_from_hash(raw),
            start_factor=factor_from_hash(raw),
            payee_verification=raw.get(b"payee_check", b"").decode(),
            opened_changes=opened_changes(raw),
        )
    except (KeyError, ValueError, TypeError, MalformedEncoding) as exc:
        raise CorruptRecord("challenge record") from exc


def opened_changes(raw: Mapping[bytes, bytes]) -> tuple[int, int] | None:
    """The user's counts a challenge was opened under (`user_changes`, decision 0056); None: before them."""
    return counts_from(raw.get(b"user_changes"))


def counts_from(kept: bytes | None) -> tuple[int, int] | None:
    """A user's (status, number) change counts as the scripts keep them, `<status>:<number>`; None: none."""
    if not kept:
        return None
    status, number = kept.split(b":")
    return int(status), int(number)


def counts_field(counts: tuple[int, int] | None) -> str:
    """The counts as the scripts take them, `<status>:<number>`; '' for none."""
    return "" if counts is None else f"{counts[0]}:{counts[1]}"


def applied_change(kept: bytes) -> AppliedChange:
    """A request id's record among the user's applied ones: `<fingerprint>@<status>:<number>` for a change of
    status or number, the bare fingerprint for an unblock and for a change recorded before the counts."""
    fingerprint, _, counts = kept.partition(b"@")
    return AppliedChange(fingerprint.decode(), counts_from(counts))


def context_fields(context: RequestContext) -> list[Field]:
    """The end user's context and the calling service as journal fields (empty strings when unknown)."""
    return [
        "ip", context.ip,
        "device_id", context.device_id,
        "session_id", context.session_id,
        "user_agent", context.user_agent,
        "caller", context.caller,
        *first_factor_fields(context),
        *(["payee_verification", context.payee_verification] if context.payee_verification else []),
    ]  # fmt: skip


def first_factor_fields(context: RequestContext) -> list[Field]:
    """The first factor the caller asserted (Start, Verify), when it did (decision 0035)."""
    factor = context.first_factor
    if factor is None:
        return []
    named = factors.journal_fields(factor, iso(factor.verified_at))
    return [item for pair in named.items() for item in pair]


def enrolled_entry(user: User, caller: str = "", request_id: str = "") -> list[Field]:
    """Journal entry of an enrolment, with the caller and request id that asked; the phone masked only."""
    return [
        "event", "user.enrolled",
        "at", iso(user.enrolled_at),
        "user_id", user.user_id,
        "client_id", user.client_id,
        "phone", mask_phone(user.secure_phone),
        "locale", user.locale,
        "status", user.status.value,
        *(["caller", caller] if caller else []),
        *(["request_id", request_id] if request_id else []),
    ]  # fmt: skip


def opened_entry(challenge: Challenge, context: RequestContext) -> list[Field]:
    """Journal entry of a new challenge; the phone appears masked only."""
    return [
        "event", "challenge.opened",
        "at", iso(challenge.created_at),
        "challenge_id", challenge.challenge_id,
        "user_id", challenge.user_id,
        "client_id", challenge.client_id,
        "op_digest", challenge.op_digest.hex(),
        "outcome", "opened",
        "attempts", challenge.attempts,
        "status", challenge.status.value,
        "phone", mask_phone(challenge.phone),
        "expires_at", iso(challenge.expires_at),
        "key_version", challenge.key_version,
        "op", kind(challenge.operation).name.lower(),
        *operation_fields(challenge.operation),
        *context_fields(context),
        *risk_fields(challenge),
    ]  # fmt: skip


def denial_head(user_id: str, at: datetime, op: str, detail: Operation | None) -> list[Field]:
    """A DENY's journal entry's fields before the number (decision 0042; open_challenge.lua adds the masked
    number, the decision, reasons, rules, version and context): the event, its instant, the user, the
    operation's kind and, when known, the operation refused (its digest and encoding, as an opening journals
    it)."""
    refused = [] if detail is None else ["op_digest", digest(detail).hex(), *operation_fields(detail)]
    return ["event", "risk.denied", "at", iso(at), "user_id", user_id, "op", op, *refused]


def risk_fields(challenge: Challenge) -> list[Field]:
    """The risk rules' decision on the challenge's operation, when they were asked (docs/risk.md)."""
    if challenge.risk is None:
        return []
    return [item for pair in challenge.risk.journal_fields().items() for item in pair]


def operation_fields(operation: Operation) -> list[Field]:
    """The operation as authorised, in its canonical encoding (base64url), kept by the journal and its archive
    for the evidence's retention, long after the challenge is purged (issue 8 item 3). Not for a change of
    number: its encoding holds the whole new number; its digest and the number change's entries suffice."""
    if isinstance(operation, ChangePhone):
        return []
    return ["operation", base64.urlsafe_b64encode(operation.encode()).decode().rstrip("=")]


def opened_challenge(
    opening: Opening, client_id: str, phone: str, locale: str, risk: RiskAssessment | None = None
) -> Challenge:
    """The challenge Start's script opened: the opening, with what the script read of its user (and the
    rules' decision when the step made it; else the opening's)."""
    return Challenge(
        challenge_id=opening.challenge_id,
        user_id=opening.user_id,
        client_id=client_id,
        operation=opening.operation,
        nonce=opening.nonce,
        key_version=opening.key_version,
        digits=opening.digits,
        phone=phone,
        locale=locale,
        created_at=from_ms(to_ms(opening.created_at)),
        expires_at=from_ms(to_ms(opening.expires_at)),
        max_attempts=opening.max_attempts,
        attempts=0,
        status=ChallengeStatus.OPEN,
        delivery=DeliveryState.QUEUED,
        max_resends=opening.max_resends,
        resend_spacing=opening.resend_spacing,
        resends=0,
        last_sent_at=from_ms(to_ms(opening.created_at)),
        risk=risk or opening.risk,  # journaled with the opening and kept in the hash (docs/risk.md)
        start_factor=opening.context.first_factor,  # journaled with the opening, kept for the proof (0042)
        payee_verification=opening.payee_verification,  # its SMS states it (decision 0099)
    )


_FROM_USER = frozenset({"client_id", "phone", "locale"})  # what Start's script fills in from the user


def opening_fields(opening: Opening, draft: Challenge | None = None) -> list[Field]:
    """The challenge hash Start's script writes, flat, less what it reads from the user. `draft`: the
    opening's `opened_challenge` without the user's part, when the caller has it already."""
    fields = challenge_fields(draft or opened_challenge(opening, "", "", ""))
    return [item for name, value in zip(fields[::2], fields[1::2], strict=True) if name not in _FROM_USER
            for item in (name, value)]  # fmt: skip


def opening_entry(opening: Opening, draft: Challenge | None = None) -> list[Field]:
    """Journal entry of a new challenge, less the client and the masked phone the script appends (`draft`:
    as for `opening_fields`)."""
    entry = opened_entry(draft or opened_challenge(opening, "", "", ""), opening.context)
    kept = [item for name, value in zip(entry[::2], entry[1::2], strict=True) if name not in _FROM_USER
            for item in (name, value)]  # fmt: skip
    return [*kept, *(["witness", opening.witness] if opening.witness else [])]


def proof_id_fields(proof_id: ProofId | None) -> list[Field]:
    """The jti and kid a VERIFIED decision journals for its proof, two empty strings when there is none."""
    return ["", ""] if proof_id is None else [proof_id.jti, proof_id.kid]


def proof_entry(proof: IssuedProof, at: datetime) -> list[Field]:
    """Journal entry of an issued proof: its id and key; the JWS is kept beside the journal (0026)."""
    facts = proof.facts
    return [
        "event", "challenge.proof",
        "at", iso(at),
        "challenge_id", facts.challenge_id,
        "user_id", facts.user_id,
        "client_id", facts.client_id,
        "op_digest", facts.op_digest,
        "outcome", "issued",
        "attempts", facts.attempts,
        "status", "verified",
        "jti", proof.jti,
        "kid", proof.kid,
    ]  # fmt: skip


def provenance_fields(provenance: Provenance) -> list[Field]:
    """Who asked for a registry change and why, as journal fields."""
    return [
        "actor", provenance.actor,
        "reason", provenance.reason,
        "request_id", provenance.request_id,
        "caller", provenance.caller,
    ]  # fmt: skip


def user_event(event: str, user_id: str, at: datetime) -> list[Field]:
    """The head of a user journal entry the script completes."""
    return ["event", event, "at", iso(at), "user_id", user_id]


def challenge_event(event: str, challenge_id: str, at: datetime) -> list[Field]:
    """The head of a journal entry the script completes from the stored challenge."""
    return ["event", event, "at", iso(at), "challenge_id", challenge_id]


def refusal_counts(raw: Mapping[bytes, bytes]) -> list[RefusalCount]:
    """The refusal counts hash (`<event>:<outcome>` -> count, `<event>:<outcome>:last_at` -> unix ms)."""
    counts = []
    for field, value in raw.items():
        event, _, outcome = field.decode().partition(":")
        if ":" in outcome:
            continue  # a last_at field, read with its count
        last_at = from_ms(int(raw.get(field + b":last_at", b"0")))
        counts.append(RefusalCount(event, outcome, int(value), last_at))
    return sorted(counts, key=lambda count: (count.event, count.outcome))


def decoded(entry: Mapping[bytes, bytes]) -> dict[str, str]:
    """A journal entry as text."""
    return {key.decode(): value.decode() for key, value in entry.items()}


# The fields `_journal.lua` adds to every entry for the seals: its number in its stream and the id of its
# predecessor (docs/decisions/0027). Evidence keeps them; a reader of the events alone does not need them.
CHAIN_FIELDS = frozenset({"seq", "prev"})


def event_fields(entry: Mapping[bytes, bytes]) -> dict[str, str]:
    """A journal entry as text, without the chain's fields."""
    return {name: value for name, value in decoded(entry).items() if name not in CHAIN_FIELDS}


def notice_entry(user_id: str, notice: UserNotice, *extra: Field) -> list[Field]:
    """The user journal's `user.notice` entry: the number masked, its text's hash and template version when
    the text was written (decision 0035), then `extra` fields; never the text itself."""
    entry: list[Field] = [
        "event", "user.notice",
        "at", iso(notice.at),
        "user_id", user_id,
        "kind", notice.kind,
        "phone", mask_phone(notice.to),
        "outcome", "sent" if notice.sent else "failed",
        "provider_ref", notice.provider_ref,
        *extra,
    ]  # fmt: skip
    if notice.text is not None:
        entry += [item for pair in notice.text.journal_fields().items() for item in pair]
    return entry
