"""The two scripts of a change of status, one body (decision 0111): restrict_user.lua (suspend, revoke) runs
out of memory, change_user_status.lua (reinstate) is refused whole out of memory. Each makes only its own
actions: the other direction sent to it is an error, and nothing changes, so that the script Redis lets run
out of memory never reinstates."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from sesame.clients import redis_records as rec
from sesame.clients.redis_scripts import Scripts
from sesame.clients.redis_store import RedisState
from sesame.server.domain.errors import StoreUnavailable
from sesame.server.domain.lifecycle import Provenance, StatusAction, StatusChange
from sesame.server.domain.model import UserStatus
from tests import factories

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)  # Redis expires by its own clock: the present (decision 0058)


def by(request_id: str) -> Provenance:
    return Provenance(actor="ops-1", reason="drill", request_id=request_id)


async def sent(store: RedisState, client: aioredis.Redis, script: str, action: StatusAction) -> None:
    """`action` on u-1 sent to `script` itself, as RedisUsers sends a change to the script of its action."""
    keys = store.keys
    noop_limits = [20, 64, 86_400_000]
    args = [action.value, rec.to_ms(NOW), "r-x", "fp", "", *noop_limits, "event", f"user.{action.value}"]
    user = [keys.user("u-1"), keys.user_journal("u-1"), keys.user_changes("u-1"), keys.user_pending("u-1")]
    await Scripts(client).run(script, user, args)


@pytest.mark.parametrize(
    ("script", "action", "status"),
    [
        ("restrict_user", StatusAction.REINSTATE, UserStatus.SUSPENDED),
        ("change_user_status", StatusAction.SUSPEND, UserStatus.ACTIVE),
        ("change_user_status", StatusAction.REVOKE, UserStatus.ACTIVE),
    ],
)
async def test_a_change_sent_to_the_other_direction_s_script_is_refused_and_changes_nothing(
    redis_store: RedisState,
    redis_client: aioredis.Redis,
    script: str,
    action: StatusAction,
    status: UserStatus,
) -> None:
    """u-1 as `status`; `action` sent to `script`, not its own: StoreUnavailable (Redis's error reply),
    the user as it was, nothing journaled, the request id not recorded."""
    await redis_store.users.register_user(factories.a_user(NOW))
    if status is UserStatus.SUSPENDED:
        await redis_store.users.change_user_status(StatusChange("u-1", StatusAction.SUSPEND, NOW, by("s-1")))
    journaled = await redis_client.xlen(redis_store.keys.user_journal("u-1"))
    with pytest.raises(StoreUnavailable):
        await sent(redis_store, redis_client, script, action)
    assert (await redis_store.users.get_user("u-1")).status is status
    assert await redis_client.xlen(redis_store.keys.user_journal("u-1")) == journaled
    assert await redis_client.hget(redis_store.keys.user_changes("u-1"), "r-x") is None
