"""The Users contract: the in-memory fake and Redis must answer alike, branch by branch (lifecycle in
test_lifecycle_contract.py, unblocking in test_users_unblock_contract.py)."""

from __future__ import annotations

import pytest

from sesame.server.domain.errors import UserAlreadyExists, UserNotFound
from tests.contracts.state_cases import NOW, a_user


class TestUsers:
    async def test_registered_user_reads_back_equal(self, store):
        """A registered user is read back field for field."""
        user = a_user()
        assert await store.users.register_user(user) == user
        assert await store.users.get_user("u-1") == user

    async def test_same_enrolment_again_returns_the_stored_user(self, store):
        """Registering the same user id, client, phone and locale again (a retry, later) is a no-op returning
        what is stored."""
        await store.users.register_user(a_user())
        again = await store.users.register_user(a_user(enrolled_at=NOW))
        assert again == a_user()
        assert len(await store.users.user_journal("u-1")) == 1

    @pytest.mark.parametrize(
        "change", [{"client_id": "client-2"}, {"secure_phone": "+33700000000"}, {"locale": "en"}]
    )
    async def test_other_enrolment_under_the_same_id_is_refused(self, store, change):
        """Another client, phone or locale under an enrolled id raises UserAlreadyExists and changes nothing
        (another locale was answered as the stored user, its language silently kept: an outside audit's)."""
        await store.users.register_user(a_user())
        with pytest.raises(UserAlreadyExists):
            await store.users.register_user(a_user(**change))
        assert await store.users.get_user("u-1") == a_user()

    async def test_unknown_user_is_not_found(self, store):
        """Reading a user never enrolled raises UserNotFound."""
        with pytest.raises(UserNotFound):
            await store.users.get_user("nobody")

    async def test_enrolment_is_journaled_with_the_phone_masked(self, store):
        """Enrolment writes one user.enrolled entry that shows only the masked phone."""
        await store.users.register_user(a_user())
        [entry] = await store.users.user_journal("u-1")
        assert (entry["event"], entry["user_id"], entry["client_id"]) == ("user.enrolled", "u-1", "client-1")
        assert entry["phone"] == "+33*******78"
