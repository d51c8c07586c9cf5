"""The enrolment flows: designate a user with a secure phone, describe a user."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sesame.server.domain.model import User, UserStatus

if TYPE_CHECKING:
    from sesame.server.domain.ports import Clock, StateStore


@dataclass(frozen=True, slots=True)
class EnrollRequest:
    """A validated EnrollUser call."""

    user_id: str
    client_id: str
    secure_phone: str
    locale: str


class EnrollmentFlows:
    """The user registry as the client company sees it."""

    def __init__(self, *, store: StateStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def enroll(self, request: EnrollRequest) -> User:
        """Register the user, or return it unchanged when this exact enrolment was already done."""
        user = User(
            user_id=request.user_id,
            client_id=request.client_id,
            secure_phone=request.secure_phone,
            locale=request.locale,
            status=UserStatus.ACTIVE,
            enrolled_at=self._clock.now(),
        )
        return await self._store.register_user(user)

    async def get(self, user_id: str) -> User:
        """The enrolled user."""
        return await self._store.get_user(user_id)
