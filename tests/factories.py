"""Users and challenges as the tests build them, in one place."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sesame.server.domain.challenges import user_tag
from sesame.server.domain.errors import UserNotFound
from sesame.server.domain.model import Challenge, ChallengeStatus, DeliveryState, User, UserStatus
from sesame.server.domain.operation import Login, Operation

if TYPE_CHECKING:
    from sesame.server.domain.ports import State

PHONE = "+33612345678"


def a_user(now: datetime, **changes: object) -> User:
    """An active user `u-1` of `client-1`, enrolled at `now`."""
    return dataclasses.replace(User("u-1", "client-1", PHONE, "fr", UserStatus.ACTIVE, now), **changes)


def a_challenge(
    now: datetime, operation: Operation | None = None, nonce: bytes = bytes(range(16)), **changes: object
) -> Challenge:
    """An OPEN 6-digit challenge of `u-1`, opened at `now`, valid five minutes, id derived from `nonce`."""
    challenge = Challenge(
        challenge_id=challenge_id(nonce),
        user_id="u-1",
        client_id="client-1",
        operation=operation or Login(),
        nonce=nonce,
        key_version=1,
        digits=6,
        phone=PHONE,
        locale="fr",
        created_at=now,
        expires_at=now + timedelta(minutes=5),
        max_attempts=3,
        attempts=0,
        status=ChallengeStatus.OPEN,
        delivery=DeliveryState.PENDING,
        max_resends=3,
        resend_spacing=timedelta(seconds=30),
        resends=0,
        last_sent_at=now,
    )
    if "user_id" in changes and "challenge_id" not in changes:
        changes["challenge_id"] = challenge_id(nonce, str(changes["user_id"]))  # in its user's place
    return dataclasses.replace(challenge, **changes)


def challenge_id(nonce: bytes, user_id: str = "u-1") -> str:
    """The id of the challenge `a_challenge` makes from `nonce` (key version 1, six digits), for `user_id`."""
    return f"{nonce.hex()}.k1.d6.u{user_tag(user_id)}"


async def its_user_enrolled(store: State, challenge: Challenge) -> Challenge:
    """Enrol the challenge's user, ACTIVE on the challenge's number, unless it is enrolled already: a store
    opens a challenge only for such a user (docs/decisions/0014)."""
    try:
        await store.users.get_user(challenge.user_id)
    except UserNotFound:
        user = a_user(challenge.created_at - timedelta(days=30))
        await store.users.register_user(
            dataclasses.replace(user, user_id=challenge.user_id, secure_phone=challenge.phone)
        )
    return challenge
