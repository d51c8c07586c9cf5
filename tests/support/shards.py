"""Users that share a shard: a load or a backlog in one shard, spread so that no user holds more challenges
open than a user may (IN_FLIGHT_READ, decision 0095)."""

from __future__ import annotations

import itertools

from sesame.clients.redis_keys import Keyspace


def one_shard(user_id: str, count: int) -> list[str]:
    """`count` user ids in the shard of `user_id`, itself first."""
    keys = Keyspace()
    shard = keys.shard_of_user(user_id)
    others = (f"{user_id}-{n}" for n in itertools.count(1))
    return [user_id, *itertools.islice((u for u in others if keys.shard_of_user(u) == shard), count - 1)]
