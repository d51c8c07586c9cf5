"""Signed proofs of authentication: compact JWS (RFC 7515), ES256, over canonical JSON claims.

A proof states what Sésame decided for one VERIFIED challenge: who (`sub`, `client_id`), for which operation
(`op`, and `op_digest`, the dynamic linking of RTS Art. 5), how (`amr`: the SMS factor and the first factor
the caller asserted, `first_factor`; `key_version`, `attempts`), when (`iat`), from where (`ctx`, as the
calling service forwarded it) and at whose request (`azp`, the calling service's identity, decision 0035).
It holds no code and no phone number.

This module is pure: it builds the claims and the JWS signing input, and reads a proof back. The signature
comes from the KeyStore (an EC P-256 key in the HSM); checking it is the verifier's business (any JOSE
library, or `sesame proof verify`). See docs/decisions/0009-signed-proofs.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sesame.server.domain import factors
from sesame.server.domain.errors import JournalDisagrees
from sesame.server.domain.model import (
    ProofId,
    PublicKey,
    RequestContext,
    VerificationAttempt,
    VerificationOutcome,
    VerifyResult,
)
from sesame.server.domain.operation import decode, kind

ALGORITHM = "ES256"
TYPE = "sesame-proof+jwt"
SIGNATURE_BYTES = 64  # ES256: r || s, 32 bytes each, big-endian (RFC 7518 section 3.4)
# The order n of the P-256 group (SEC 2 section 2.4.2). (r, s) and (r, n - s) both verify: a proof is
# signed with the low s only, so that one decision has one proof and a flipped copy is refused.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
CONTEXT_CLAIMS = ("ip", "device_id", "session_id")
FLAGGED = frozenset({"warn", "hold"})  # the risk decisions a proof states (decision 0032)


@dataclass(frozen=True, slots=True)
class ProofFacts:
    """What a proof states: from the decision, or later from the challenge's journal (the same facts)."""

    challenge_id: str
    user_id: str
    client_id: str
    op: str  # the operation type: login, credit_transfer, add_beneficiary, change_phone
    op_digest: str  # hex SHA-256 of the operation's canonical encoding
    key_version: int  # the OTP key the code was derived with
    attempts: int  # attempts used, the verified one included
    verified_at: datetime
    context: RequestContext
    # The risk rules' decision at Start when it was WARN or HOLD (lower case), its reason codes and rules'
    # version: the proof's `risk` claim, so that the payment system can hold the transfer (decision 0032).
    risk_decision: str = ""
    risk_reasons: tuple[str, ...] = ()
    risk_rules_version: str = ""
    # The first factor stated with StartChallenge, named in `amr` and `first_factor` beside Verify's (0042).
    start_factor: factors.FirstFactor | None = None

    @classmethod
    def of(cls, outcome: VerificationOutcome, attempt: VerificationAttempt) -> ProofFacts:
        """The facts of a VERIFIED decision."""
        challenge = outcome.challenge
        risk = challenge.risk
        flagged = risk is not None and risk.decision.name.lower() in FLAGGED
        return cls(
            risk_decision=risk.decision.name.lower() if flagged and risk else "",
            risk_reasons=risk.codes if flagged and risk else (),
            risk_rules_version=risk.rules_version if flagged and risk else "",
            challenge_id=challenge.challenge_id,
            user_id=challenge.user_id,
            client_id=challenge.client_id,
            op=kind(challenge.operation).name.lower(),
            op_digest=challenge.op_digest.hex(),
            key_version=challenge.key_version,
            attempts=challenge.attempts,
            verified_at=attempt.at,
            context=attempt.context,
            start_factor=challenge.start_factor,
        )

    @classmethod
    def from_journal(cls, entries: Sequence[Mapping[str, str]]) -> ProofFacts | None:
        """The facts of the journaled VERIFIED attempt; None when the journal holds none.

        JournalDisagrees when the decision names another challenge, user, client or operation than the
        opening: a challenge's record edited in Redis before its code was typed gave a proof naming another
        user than the one the code was sent to, and a bundle that checked valid (an outside audit).
        """
        found = verified_entries(entries)
        if found is None:
            return None
        opened, verified = found
        decision, reasons, version = _journaled_risk(opened)
        return cls(
            risk_decision=decision,
            risk_reasons=reasons,
            risk_rules_version=version,
            challenge_id=verified["challenge_id"],
            user_id=verified["user_id"],
            client_id=verified["client_id"],
            op=opened.get("op", ""),
            op_digest=verified["op_digest"],
            key_version=int(opened["key_version"]),
            attempts=int(verified["attempts"]),
            verified_at=datetime.fromisoformat(verified["at"]),
            context=RequestContext(
                **{name: verified.get(name, "") for name in (*CONTEXT_CLAIMS, "user_agent", "caller")},
                first_factor=factors.from_journal(verified),
            ),
            start_factor=factors.from_journal(opened),
        )


def decided(challenge_id: str, at: datetime, context: RequestContext, jti: str = "") -> bytes:
    """The canonical bytes of what a VERIFIED decision states that its witness binds (decision 0167): the
    challenge, the instant (to the millisecond, as journaled) and the end user's context and first factor,
    as VerifyChallenge had them and as the journal gives them back, and the jti of the proof it named. The
    user is bound by the challenge id's tag, the operation by the code. A journal rewritten to another
    instant or IP had GetProof sign them (an outside audit); its proof entry deleted, GetProof signed a proof
    under a fresh jti each time (AV2). A decision that named no proof (`jti` ""), as one journaled before
    the jti was bound, gives the bytes it gave then. Each value length-prefixed, the factor 0 or 4 values
    and the jti 0 or 1: no two decisions give the same bytes."""
    values = [challenge_id, _ms(at), context.ip, context.device_id, context.session_id, context.user_agent]
    named = [jti] if jti else []
    return _length_prefixed([*values, context.caller, *_factor_values(context.first_factor), *named])


def opening_stated(
    challenge_id: str, user_id: str, op: str, op_digest: str, start_factor: factors.FirstFactor | None
) -> bytes:
    """The canonical bytes of what a proof states of a challenge's opening, that its witness binds (the
    opening entry's `witness`, decision 0167): the challenge, its user, the operation's kind and digest (as
    journaled: the kind's name in lower case, the digest in hex) and the first factor stated with
    StartChallenge. An opening rewritten after the decision to another kind of operation, or to a first
    factor never stated, had GetProof sign them (an outside audit, AP1). The key version is the challenge
    id's, whose key the witness comes from. Length-prefixed as `decided`, apart from it by its first value."""
    values = ["opened", challenge_id, user_id, op, op_digest]
    return _length_prefixed([*values, *_factor_values(start_factor)])


def _factor_values(factor: factors.FirstFactor | None) -> list[str]:
    if factor is None:
        return []
    return [factor.category.value, factor.method, _ms(factor.verified_at), factor.reference]


def _length_prefixed(values: Sequence[str]) -> bytes:
    return "".join(f"{len(value)}:{value}" for value in values).encode()


def _ms(at: datetime) -> str:
    """An instant to the millisecond, UTC, as the journal keeps it."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds")


# What a VERIFIED decision's entry and its challenge's opening must both name alike.
_BOUND = ("challenge_id", "user_id", "client_id", "op_digest")


def verified_entries(
    entries: Sequence[Mapping[str, str]],
) -> tuple[Mapping[str, str], Mapping[str, str]] | None:
    """The opening and the first VERIFIED decision of a challenge's journal; None without both.
    JournalDisagrees when they name another challenge, user, client or operation."""
    opened = next((e for e in entries if e.get("event") == "challenge.opened"), None)
    verified = next((e for e in entries if _is_verified(e)), None)
    if opened is None or verified is None:
        return None
    differ = [name for name in _BOUND if verified.get(name) != opened.get(name)]
    if differ:
        raise JournalDisagrees(f"the VERIFIED decision and the opening name another {', '.join(differ)}")
    if "operation" in opened and not _journals_its_operation(opened):
        # Its `op` rewritten to another kind (a login's proof said credit_transfer: an outside audit, AP2).
        raise JournalDisagrees("the opening's operation is not the one its op and op_digest name")
    return opened, verified


def _journals_its_operation(opened: Mapping[str, str]) -> bool:
    """Whether the opening's journaled operation (canonical, base64url) is of its `op` kind and digest."""
    try:
        raw = b64url_decode(opened["operation"])
        journaled = decode(raw)
    except ValueError:
        return False
    return (
        journaled.encode() == raw
        and hashlib.sha256(raw).hexdigest() == opened.get("op_digest")
        and kind(journaled).name.lower() == opened.get("op")
    )


def journaled_id(entries: Sequence[Mapping[str, str]]) -> ProofId | None:
    """The jti and kid journaled for the challenge's proof (decision 0026: by the decision), or None."""
    named = next((e for e in entries if e.get("event") == "challenge.proof" and e.get("jti")), None)
    return None if named is None else ProofId(named["jti"], named.get("kid", ""))


def _journaled_risk(opened: Mapping[str, str]) -> tuple[str, tuple[str, ...], str]:
    """The WARN or HOLD the opening journaled, its reason codes and rules' version; empty for any other."""
    if opened.get("risk_decision", "") not in FLAGGED:
        return "", (), ""
    reasons = tuple(code for code in opened.get("risk_reasons", "").split(",") if code)
    return opened["risk_decision"], reasons, opened.get("risk_rules_version", "")


def _is_verified(entry: Mapping[str, str]) -> bool:
    return (
        entry.get("event") == "challenge.verification" and entry.get("outcome") == VerifyResult.VERIFIED.value
    )


@dataclass(frozen=True, slots=True)
class IssuedProof:
    """A signed proof, what it is known by (`jti`, `kid`) and the facts it states (for the journal)."""

    jws: str
    jti: str
    kid: str
    facts: ProofFacts


def claims(facts: ProofFacts, *, issuer: str, jti: str) -> dict[str, Any]:
    """The claims of a proof; the context the caller forwarded appears only where it is not empty."""
    body: dict[str, Any] = {
        "iss": issuer,
        "sub": facts.user_id,
        "client_id": facts.client_id,
        "challenge_id": facts.challenge_id,
        "op": facts.op,
        "op_digest": facts.op_digest,
        "amr": factors.amr(facts.start_factor, facts.context.first_factor),
        "key_version": facts.key_version,
        "iat": int(facts.verified_at.timestamp()),
        "attempts": facts.attempts,
        "jti": jti,
    }
    context = {name: getattr(facts.context, name) for name in CONTEXT_CLAIMS if getattr(facts.context, name)}
    if context:
        body["ctx"] = context
    first_factor = factors.proof_claim(facts.start_factor, facts.context.first_factor)
    if first_factor is not None:
        body["first_factor"] = first_factor
    if facts.context.caller:
        body["azp"] = facts.context.caller  # the calling service (its mTLS identity): who asked
    if facts.risk_decision:
        body["risk"] = {
            "decision": facts.risk_decision.upper(),
            "reasons": list(facts.risk_reasons),
            "rules_version": facts.risk_rules_version,
        }
    return body


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8: one byte string per value (RFC 8785's form for our keys and ints)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signing_input(kid: str, body: Mapping[str, Any]) -> bytes:
    """`BASE64URL(header) . BASE64URL(claims)`: the bytes the key signs (RFC 7515 section 5.1)."""
    header = {"alg": ALGORITHM, "kid": kid, "typ": TYPE}
    return f"{b64url(canonical_json(header))}.{b64url(canonical_json(body))}".encode("ascii")


def compact(signed: bytes, signature: bytes) -> str:
    """The compact serialisation of a signing input and its raw ES256 signature, made low-S."""
    if len(signature) != SIGNATURE_BYTES:
        raise ValueError(f"an ES256 signature is {SIGNATURE_BYTES} bytes, not {len(signature)}")
    return f"{signed.decode('ascii')}.{b64url(low_s(signature))}"


def low_s(signature: bytes) -> bytes:
    """The same ES256 signature (raw r || s) with s in the lower half of the group order: n - s if s > n/2."""
    s = int.from_bytes(signature[32:], "big")
    if P256_ORDER // 2 < s < P256_ORDER:
        s = P256_ORDER - s
    return signature[:32] + s.to_bytes(32, "big")


def is_low_s(signature: bytes) -> bool:
    """Whether the s of a raw r || s signature is at most n/2 (the only form Sésame issues)."""
    return int.from_bytes(signature[32:], "big") <= P256_ORDER // 2


@dataclass(frozen=True, slots=True)
class ParsedProof:
    """A proof read back: its header and claims, the bytes that were signed and the signature."""

    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes

    @property
    def kid(self) -> str:
        """The label of the key that signed it."""
        return str(self.header["kid"])


def parse(jws: str) -> ParsedProof:
    """Read a compact JWS of ours (signature unchecked). ValueError when it is not one."""
    parts = jws.split(".")
    if len(parts) != 3:
        raise ValueError("a compact JWS has three parts")
    header, body = (_json_object(part) for part in parts[:2])
    if header.get("alg") != ALGORITHM or header.get("typ") != TYPE or not isinstance(header.get("kid"), str):
        raise ValueError(f"not a Sésame proof header (alg {ALGORITHM}, typ {TYPE}, a kid)")
    signature = b64url_decode(parts[2])
    if len(signature) != SIGNATURE_BYTES:
        raise ValueError(f"an ES256 signature is {SIGNATURE_BYTES} bytes")
    return ParsedProof(header, body, f"{parts[0]}.{parts[1]}".encode("ascii"), signature)


def _json_object(part: str) -> dict[str, Any]:
    try:
        value = json.loads(b64url_decode(part))
    except UnicodeDecodeError as exc:
        raise ValueError("a JWS part is not UTF-8 JSON") from exc
    except RecursionError:
        # Deep nesting ("[[[[..."): the parser's stack runs out before the part could be refused as a shape.
        raise ValueError("a JWS part is nested too deeply") from None
    if not isinstance(value, dict):
        raise ValueError("a JWS part is not a JSON object")  # noqa: TRY004 (a malformed proof, like the rest)
    return value


def jwk(key: PublicKey) -> dict[str, str]:
    """The public key as a JWK (RFC 7517, RFC 7518 section 6.2): EC P-256, for ES256 signatures."""
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(key.x),
        "y": b64url(key.y),
        "kid": key.kid,
        "alg": ALGORITHM,
        "use": "sig",
    }


def jwk_set(keys: Iterable[PublicKey]) -> dict[str, list[dict[str, str]]]:
    """A JWK set of the keys, in the order given."""
    return {"keys": [jwk(key) for key in keys]}


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """The bytes of unpadded base64url text. ValueError for any other character, and for a text that is not
    the one encoding of its bytes (its last character's unused bits set: RFC 4648 section 3.5): four texts
    decoded to one signature, and a copy someone altered verified (an outside audit)."""
    if "=" in text:
        raise ValueError("JWS base64url carries no padding")
    try:
        decoded = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except binascii.Error as exc:
        raise ValueError("not base64url") from exc
    if base64.urlsafe_b64encode(decoded).rstrip(b"=").decode() != text:
        raise ValueError("not the canonical base64url of its bytes")
    return decoded
