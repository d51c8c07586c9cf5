"""Start's step runs open_challenge.lua with its rule set's program in the script's text (decision 0076): a
script of its own per rule set, loaded again by EVALSHA's NOSCRIPT when Redis lost it, each rule set's own."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from sesame.clients.redis_scripts import Scripts
from sesame.clients.redis_store import RedisState
from sesame.clients.risk_program import compiled
from sesame.server.domain.errors import RiskDenied
from sesame.server.domain.opening import RiskQuestion
from sesame.server.domain.risk_rules import default_rules, parse
from tests.contracts.test_start_challenge_contract import an_opening, enrolled

pytestmark = pytest.mark.integration

DENY_TRANSFERS = parse(
    """
version = "deny-transfers-1"
[[rules]]
id = "no-transfer"
description = "d"
when = [["operation", "==", "credit_transfer"]]
decision = "DENY"
reason = "NEW_PAYEE"
"""
)


async def _loaded(client: aioredis.Redis, sha: str) -> bool:
    (exists,) = await client.script_exists(sha)
    return bool(exists)


async def test_start_under_rules_runs_the_script_holding_their_program(
    redis_client: aioredis.Redis, redis_store: RedisState
) -> None:
    """The rules decide in the step (the challenge keeps their version), under the SHA-1 of open_challenge
    with the default rules' program in its text; the script without a program is not what ran."""
    await enrolled(redis_store)
    await redis_client.script_flush()  # the session's server: other tests ran the script without a program
    rules = RiskQuestion(default_rules())
    opened = await redis_store.challenges.start_challenge(an_opening(question=rules))
    assert opened.challenge.risk is not None
    assert opened.challenge.risk.rules_version == default_rules().version
    scripts = Scripts(redis_client)
    assert await _loaded(redis_client, scripts.sha("open_challenge", compiled(default_rules())))
    assert not await _loaded(redis_client, scripts.sha("open_challenge"))


async def test_a_program_script_redis_lost_is_loaded_again(
    redis_client: aioredis.Redis, redis_store: RedisState
) -> None:
    """After SCRIPT FLUSH (a restart without the script cache, a failover to a replica that never ran it), the
    next Start under rules loads its script again and the rules still decide in the step."""
    await enrolled(redis_store)
    rules = RiskQuestion(default_rules())
    await redis_store.challenges.start_challenge(an_opening(question=rules))
    await redis_client.script_flush()
    opened = await redis_store.challenges.start_challenge(an_opening(question=rules))
    assert opened.challenge.risk is not None
    assert opened.challenge.risk.rules_version == default_rules().version
    assert await _loaded(redis_client, Scripts(redis_client).sha("open_challenge", compiled(default_rules())))


async def test_each_rule_set_runs_its_own_program(redis_store: RedisState) -> None:
    """Two rule sets side by side (a rolling upgrade's old and new servers on one Redis): each Start is
    decided by its own, never by the other's script."""
    await enrolled(redis_store)
    defaults = RiskQuestion(default_rules())
    allowed = await redis_store.challenges.start_challenge(an_opening(question=defaults))
    assert allowed.challenge.risk is not None
    with pytest.raises(RiskDenied) as denied:
        await redis_store.challenges.start_challenge(an_opening(question=RiskQuestion(DENY_TRANSFERS)))
    assert denied.value.rules_version == DENY_TRANSFERS.version
    again = await redis_store.challenges.start_challenge(an_opening(question=defaults))
    assert again.challenge.risk is not None
    assert again.challenge.risk.rules_version == default_rules().version
