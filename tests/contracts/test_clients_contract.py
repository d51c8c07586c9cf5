"""The Clients contract: the fake and Redis enlist, list and terminate alike, and revoke a terminated
client's users alike."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sesame.server.domain.errors import ClientNotFound, ClientTerminated, UserNotActive
from sesame.server.domain.lifecycle import ClientTermination, RevocationOutcome
from sesame.server.domain.model import UserStatus
from tests import factories
from tests.contracts.test_lifecycle_contract import BY, NOW, enrolled


class TestClients:
    TERMINATION = ClientTermination("client-1", NOW, BY)

    async def test_enlisted_users_are_listed(self, store):
        """Every user enlisted for a client is listed once."""
        for user_id in ("u-2", "u-1", "u-2"):
            await store.clients.enlist_user("client-1", user_id, NOW)
        assert await store.clients.client_users("client-1") == ["u-1", "u-2"]

    async def test_a_terminated_client_enlists_nobody(self, store):
        """After the termination, enlisting raises ClientTerminated."""
        await store.clients.enlist_user("client-1", "u-1", NOW)
        await store.clients.terminate_client(self.TERMINATION)
        with pytest.raises(ClientTerminated):
            await store.clients.enlist_user("client-1", "u-2", NOW)
        assert await store.clients.client_users("client-1") == ["u-1"]

    async def test_a_user_delisted_leaves_nothing_of_a_client_it_made(self, store):
        """Delisting takes the id out; the client's record goes with its last user, so that it is unknown
        again (an enrolment refused as another client's user made it: an outside audit)."""
        await store.clients.enlist_user("client-1", "u-1", NOW)
        await store.clients.enlist_user("client-1", "u-2", NOW)
        await store.clients.delist_user("client-1", "u-2")
        assert await store.clients.client_users("client-1") == ["u-1"]
        await store.clients.delist_user("client-1", "u-1")
        assert await store.clients.client_users("client-1") == []
        with pytest.raises(ClientNotFound):
            await store.clients.terminate_client(self.TERMINATION)

    async def test_an_unknown_client_is_not_found(self, store):
        """Terminating a client that never enlisted a user raises ClientNotFound."""
        with pytest.raises(ClientNotFound):
            await store.clients.terminate_client(self.TERMINATION)

    async def test_termination_is_journaled_each_time(self, store):
        """The client's journal records the termination, then a second call as unchanged."""
        await store.clients.enlist_user("client-1", "u-1", NOW)
        assert await store.clients.terminate_client(self.TERMINATION) is True
        assert await store.clients.terminate_client(self.TERMINATION) is False  # what the metrics count
        entries = await store.clients.client_journal("client-1")
        assert [(e["event"], e["outcome"], e["actor"]) for e in entries] == [
            ("client.terminate", "terminated", "ops-42"),
            ("client.terminate", "unchanged", "ops-42"),
        ]

    async def test_repeated_terminations_are_journaled_twenty_an_hour_then_counted(self, store):
        """A terminated client's termination asked again, 45 times in an hour: its first 20 journaled as
        `unchanged`, the rest only counted, the count sealed with the next one journaled, an hour later
        (decision 0054's bound, for a client: a retry loop grows neither Redis nor the archive)."""
        await store.clients.enlist_user("client-1", "u-1", NOW)
        for k in range(46):
            await store.clients.terminate_client(
                ClientTermination("client-1", NOW + timedelta(seconds=k), BY)
            )
        await store.clients.terminate_client(
            ClientTermination("client-1", NOW + timedelta(hours=1, seconds=2), BY)
        )
        entries = await store.clients.client_journal("client-1")
        assert [e["outcome"] for e in entries] == ["terminated"] + ["unchanged"] * 21
        assert [e.get("unjournaled_before") for e in entries[-2:]] == [None, "25"]

    async def test_a_clients_user_is_revoked_then_unchanged(self, store):
        """Revoking for the client revokes its user, and a second time changes nothing."""
        await enrolled(store)
        outcomes = [await store.users.revoke_client_user("client-1", "u-1", NOW, BY) for _ in range(2)]
        assert outcomes == [RevocationOutcome.REVOKED, RevocationOutcome.UNCHANGED]
        assert (await store.users.get_user("u-1")).status is UserStatus.REVOKED

    async def test_another_clients_user_is_left_alone(self, store):
        """A user of another client is FOREIGN and stays ACTIVE."""
        await enrolled(store)
        assert await store.users.revoke_client_user("client-2", "u-1", NOW, BY) is RevocationOutcome.FOREIGN
        assert (await store.users.get_user("u-1")).status is UserStatus.ACTIVE

    async def test_an_id_never_enrolled_is_spent_for_good(self, store):
        """An enlisted id with no user yet is FORECLOSED, and its enrolment afterwards is refused."""
        assert (
            await store.users.revoke_client_user("client-1", "u-1", NOW, BY) is RevocationOutcome.FORECLOSED
        )
        with pytest.raises(UserNotActive):
            await store.users.register_user(factories.a_user(NOW))
