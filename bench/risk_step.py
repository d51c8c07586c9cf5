"""Redis CPU of the risk part of Start's step (`_risk_memory.lua`, `_risk_rules.lua`), per call.

A private redis-server, one user whose memory is full (every part at its `RiskLimits` cap), and the rules'
section of open_challenge.lua run alone (the program built, the question decoded, the memory read, the signals
and the rules) through EVALSHA; the figure is the slow log's duration of each EVALSHA (threshold 0), so it
is Redis's own time in the script, not a round trip. `empty` runs the same script with nothing to do (the
floor of an EVALSHA). Two memory shapes: `spread` (months of use, few entries in the signals' windows)
and `recent` (every entry in the last hour, as a load benchmark leaves them: the windows hold all of it).

`--whole` measures open_challenge.lua itself instead, through the store as Start calls it: transfers of one
user whose memory is as a load benchmark leaves it (the payee paid, 100 transfers in the last minutes, 30
amounts) and who has 64 open (the most, decision 0095: the oldest is taken out of the index before each Start,
a ZPOPMIN counted in the CPU), with the risk part and without (no rules: the step skips it), send budgets out
of the way.

    .venv/bin/python -m bench.risk_step --calls 3000
    .venv/bin/python -m bench.risk_step --calls 1000 --whole
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import statistics
import tempfile
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import redis
import redis.asyncio as aioredis

from bench.redis_costs import script_names
from sesame.clients import redis_records as rec
from sesame.clients.redis_risk import memory_parts
from sesame.clients.redis_scripts import PROGRAM_LINE
from sesame.clients.redis_server import EmbeddedRedis
from sesame.clients.redis_store import RedisState
from sesame.clients.risk_program import compiled, question
from sesame.server.domain.budgets import SendBudget
from sesame.server.domain.challenges import ChallengeRef, user_tag
from sesame.server.domain.destinations import DEFAULT_COUNTRIES
from sesame.server.domain.model import RequestContext, User, UserStatus
from sesame.server.domain.opening import Opening, RiskQuestion
from sesame.server.domain.operation import AddBeneficiary, CreditTransfer, Login, Money, Operation, Payee
from sesame.server.domain.risk_rules import default_rules
from sesame.server.domain.risk_signals import IN_FLIGHT_READ, RiskLimits, fingerprint

_PIECES = ("_risk_memory.lua", "_risk_rules.lua")
# open_challenge.lua's risk section, less a DENY's journal entry (a DENY is rare; the user here is allowed).
_BODY = """
if ARGV[1] == '-' then return 0 end
local parts = {KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]}
local x = cjson.decode(ARGV[2])
local program = risk_program_for(x.op)
local decision, codes, matched, added = risk_assess(program, risk_signals(KEYS[1], parts, x), x)
return risk_kept(program, decision, codes, matched, added)
"""
_KEYS = ["{u}:user", "{u}:payees", "{u}:added", "{u}:ips", "{u}:devices", "{u}:ops", "{u}:amounts"]
NOW = datetime.now(UTC).replace(microsecond=0)  # the present: nothing fixed reaches Redis (decision 0058)
HOUR_MS = 3_600_000


def _fill(client: redis.Redis, span_ms: int, rng: random.Random) -> None:
    """A user at its caps: each instant drawn within `span_ms` before now."""
    client.delete(*_KEYS)
    for field, value in (("status", "active"), ("phone", "+33612345678"), ("failures", "1")):
        client.hset(_KEYS[0], field, value)
    limits = RiskLimits()
    now = rec.to_ms(NOW)
    caps = [limits.payees, limits.added, limits.ips, limits.devices, limits.operations]
    kinds = ("login", "credit_transfer", "add_beneficiary", "credit_transfer")
    for key, cap, what in zip(_KEYS[1:6], caps, ("iban", "iban", "ip", "device", "op"), strict=True):
        members = {}
        for k in range(cap):
            name = f"{kinds[k % 4]}:c{k}" if what == "op" else fingerprint(what, f"{what}{k}")
            members[name] = now - rng.randrange(span_ms)
        client.zadd(key, members)
    client.rpush(_KEYS[6], *[f"EUR:{rng.randrange(1_000, 300_000)}" for _ in range(limits.amounts)])


def _operations() -> dict[str, Operation]:
    payee = Payee("n", "FR7630001007941234567890185")  # not among the memory's payees
    return {
        "login": Login(),
        "add_beneficiary": AddBeneficiary(payee),
        "credit_transfer": CreditTransfer(Money("EUR", 150_000), payee, "t"),
    }


def _measure(
    server: EmbeddedRedis, client: redis.Redis, sha: str, args: list[str], calls: int
) -> tuple[float, float, float]:
    """µs of Redis time per EVALSHA, the median and the lower quartile over `calls` calls (pipelines of
    100), from the slow log at threshold 0: on a shared machine a call preempted mid-script is slower, and
    the median leaves those out as long as fewer than half are."""
    client.config_set("slowlog-max-len", calls + 10)
    client.config_set("slowlog-log-slower-than", 0)
    client.slowlog_reset()
    cpu = _cpu_us(server)
    for _ in range(max(calls // 100, 1)):
        pipe = client.pipeline(transaction=False)
        for _ in range(100):
            pipe.evalsha(sha, len(_KEYS), *_KEYS, *args)
        pipe.execute()
    cpu = (_cpu_us(server) - cpu) / calls
    client.config_set("slowlog-log-slower-than", 10_000)
    took = sorted(
        entry["duration"]
        for entry in client.slowlog_get(calls + 10)
        if entry["command"].split()[:1] in ([b"EVALSHA"], ["EVALSHA"])
    )
    return statistics.median(took), took[len(took) // 4], cpu


def _cpu_us(server: EmbeddedRedis) -> float:
    """redis-server's CPU time so far (user + system, every thread), µs: unlike a duration, not inflated
    when another process preempts it (clock ticks: 10 ms, so measure a second or more of it)."""
    fields = Path(f"/proc/{int(server.pid_file.read_text())}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1e6 / os.sysconf("SC_CLK_TCK")


_BIG = SendBudget(per_user=10**7, per_phone=10**7, per_caller=10**8, overall=10**8)


def _opening(n: int, operation: Operation, question: RiskQuestion | None) -> Opening:
    """The n-th Start of the user `u`, now, as Start hands it to the store."""
    ref = ChallengeRef(n.to_bytes(16, "big"), 1, 6, user_tag("u"))
    at = datetime.now(UTC)
    at = at.replace(microsecond=at.microsecond // 1000 * 1000)  # the store keeps milliseconds
    return Opening(
        challenge_id=ref.challenge_id,
        user_id="u",
        operation=operation,
        nonce=ref.nonce,
        key_version=1,
        digits=6,
        created_at=at,
        expires_at=at + timedelta(minutes=5),
        max_attempts=3,
        max_resends=3,
        resend_spacing=timedelta(seconds=30),
        cooled=True,
        countries=DEFAULT_COUNTRIES,
        budget=_BIG,
        context=RequestContext(caller="bench", ip="10.0.0.1"),
        question=question,
    )


def _durations(client: redis.Redis, shas: set[str], calls: int) -> tuple[float, float]:
    """The slow log's EVALSHA durations of the scripts `shas`: median and lower quartile."""
    took = sorted(
        entry["duration"]
        for entry in client.slowlog_get(100 * calls)
        if entry["command"].split()[0] == b"EVALSHA" and entry["command"].split()[1].decode() in shas
    )
    return statistics.median(took), took[len(took) // 4]


async def _whole(server: EmbeddedRedis, calls: int) -> None:
    url = server.url
    client, store = redis.Redis.from_url(url), RedisState.on(aioredis.Redis.from_url(url))
    created = datetime.now(UTC) - timedelta(days=400)
    await store.users.register_user(User("u", "c", "+33612345678", "fr", UserStatus.ACTIVE, created))
    parts, pending = memory_parts(store.challenges.keys, "u"), store.challenges.keys.user_pending("u")
    payee = Payee("Jean DUPONT", "FR7630006000011234567890189")
    now = rec.to_ms(datetime.now(UTC))
    client.zadd(parts[0], {fingerprint("iban", payee.iban): now - 1000})
    client.zadd(parts[4], {f"credit_transfer:c{k}": now - 1000 * k for k in range(100)})
    client.rpush(parts[5], *["EUR:125000"] * 30)
    transfer = CreditTransfer(Money("EUR", 125_000), payee, "bench")
    # Start's script, with the default rules' program in its text or without (decision 0076).
    shas = {sha for sha, name in script_names().items() if name == "open_challenge"}
    numbers = itertools.count(1)
    print(f"open_challenge.lua, µs per call over {calls}: the slow log's median and lower quartile, then")
    print("redis-server's CPU per Start (its every command, the slow log's logging included)")
    for label, asked in (
        ("risk in the step", RiskQuestion(default_rules(), {"sim_swap": "off"})),
        ("no rules", None),
    ):
        client.config_set("slowlog-max-len", 100 * calls)
        client.config_set("slowlog-log-slower-than", 0)
        client.slowlog_reset()
        cpu = _cpu_us(server)
        for _ in range(calls):
            # The most a user may have open (decision 0095): the oldest leaves the index, the read is full.
            if client.zcard(pending) >= IN_FLIGHT_READ:
                client.zpopmin(pending)
            await store.challenges.start_challenge(_opening(next(numbers), transfer, asked))
        cpu = (_cpu_us(server) - cpu) / calls
        client.config_set("slowlog-log-slower-than", 10_000)
        median, quartile = _durations(client, shas, calls)
        print(f"  transfer, {label:16}: {median:7.1f} {quartile:7.1f} {cpu:7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--whole", action="store_true", help="open_challenge.lua itself, through the store")
    options = parser.parse_args()
    calls = options.calls
    if options.whole:
        with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp)) as server:
            asyncio.run(_whole(server, calls))
        return
    lua = resources.files("sesame.clients").joinpath("lua")
    rules = default_rules()
    source = "".join(lua.joinpath(piece).read_text(encoding="utf-8") for piece in _PIECES) + _BODY
    source = source.replace(PROGRAM_LINE, f"local RISK_PROGRAM = {compiled(rules)}\n", 1)
    context = RequestContext(ip="10.0.0.250", device_id="d-new")
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp)) as server:
        client = redis.Redis.from_url(server.url)
        sha = client.script_load(source)
        rng = random.Random(6)
        print(f"µs per call over {calls}: the slow log's median and lower quartile, redis-server's CPU")
        median, quartile, cpu = _measure(server, client, sha, ["-", "-"], calls)
        print(f"  {'empty (no rules)':23}: {median:7.1f} {quartile:7.1f} {cpu:7.1f}")
        for shape, span in (("spread", 180 * 24 * HOUR_MS), ("recent", HOUR_MS)):
            _fill(client, span, rng)
            for name, operation in _operations().items():
                args = ["+", question(operation, context, NOW, {"sim_swap": "not_swapped"})]
                median, quartile, cpu = _measure(server, client, sha, args, calls)
                print(f"  {shape:6} {name:16}: {median:7.1f} {quartile:7.1f} {cpu:7.1f}")


if __name__ == "__main__":
    main()
