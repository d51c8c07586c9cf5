"""The risk signals and rules in Lua (`_risk_rules.lua`) say what the Python evaluator says, bit for bit.

Hypothesis draws a user's memory (payees paid and added, amounts, IPs, devices, verified operations, wrong
codes, blocks, a number change), an operation, a context and what the operator and the bank said; the memory
goes into a real Redis as the store keeps it, the Lua step reads it with `risk_fetch` and evaluates the rules
compiled by `risk_program`; its signals and its decision must equal `risk_signals.signals` and
`RuleSet.assess` on the same memory, for the default rules and for rule sets that use every operator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from importlib import resources

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sesame.clients import redis_records as rec
from sesame.clients.redis_scripts import PROGRAM_LINE
from sesame.clients.redis_server import EmbeddedRedis
from sesame.clients.risk_program import _KINDS as PROGRAM_KINDS
from sesame.clients.risk_program import _compact, _lua, _section, program, question, signals_of
from sesame.server.domain.model import RequestContext, User, UserStatus
from sesame.server.domain.operation import (
    AddBeneficiary,
    ChangePhone,
    CreditTransfer,
    Login,
    Money,
    Operation,
    Payee,
    digest,
)
from sesame.server.domain.risk import RuleSet
from sesame.server.domain.risk_flow import _new_payee
from sesame.server.domain.risk_rules import default_rules, parse
from sesame.server.domain.risk_signals import (
    IN_FLIGHT_READ,
    AccountSummary,
    Forwarded,
    InFlight,
    RiskHistory,
    SimSwapStatus,
    UserRisk,
    fingerprint,
    in_flight_of,
    signals,
)

pytestmark = pytest.mark.integration

_PIECES = ("_risk_memory.lua", "_risk_rules.lua")
_BODY = """
local x = cjson.decode(ARGV[1])
local program = risk_program_for(x.op)
local open = {pending = KEYS[8], prefix = ARGV[2], digest = ARGV[3]}
local s = risk_signals(KEYS[1], {KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]}, x, open)
local decision, codes, matched, added = risk_assess(program, s, x)
return {risk_kept(program, decision, codes, matched, added), risk_signals_reply(s)}
"""
_KEYS = [
    "{u}:user",
    "{u}:payees",
    "{u}:added",
    "{u}:ips",
    "{u}:devices",
    "{u}:ops",
    "{u}:amounts",
    "{u}:pending",
]
_CHALLENGE = "{u}:ch:"
_OWN = "own"  # stands for the operation's own digest among the open challenges drawn

# Rule sets beside the defaults, over every signal and operator (a clause over a flag, a name, a list).
_OTHER_RULES = [
    """
version = "t-1"
[[rules]]
id = "new-device-and-ip"
description = "d"
when = [
  ["new_device", "==", true], ["new_ip", "!=", false], ["operation", "in", ["credit_transfer", "login"]],
]
decision = "WARN"
reason = "NEW_DEVICE"
[[rules]]
id = "sim"
description = "d"
when = [["sim_swap", "in", ["swapped", "unavailable"]], ["sim_swapped_hours", "<=", 48]]
decision = "DENY"
reason = "SIM_SWAP"
[[rules]]
id = "amount"
description = "d"
when = [["amount_robust_z", ">", 3.5], ["amount_vs_largest", ">=", 1.5], ["amounts_known", ">", 2]]
decision = "HOLD"
reason = "UNUSUAL_AMOUNT"
[[rules]]
id = "usual"
description = "d"
when = [["usual_amount", "<", 500], ["amount_vs_usual", ">", 4]]
decision = "WARN"
reason = "UNUSUAL_AMOUNT"
[[rules]]
id = "currency"
description = "d"
when = [["currency", "in", ["JPY", "KWD"]], ["amount", ">=", 2000], ["new_currency", "==", false]]
decision = "HOLD"
reason = "LARGE"
[[rules]]
id = "new-currency"
description = "d"
when = [["new_currency", "!=", false], ["currency", "!=", "EUR"]]
decision = "WARN"
reason = "NEW_CURRENCY"
""",
    """
version = "t-2"
[[rules]]
id = "velocity"
description = "d"
when = [["transfers_24h", ">=", 3], ["sensitive_ops_1h", ">=", 1]]
decision = "HOLD"
reason = "VELOCITY"
[[rules]]
id = "failures"
description = "d"
when = [["wrong_codes_in_a_row", ">=", 2], ["blocks_in_a_row", "<", 2]]
decision = "WARN"
reason = "FAILURE_BURST"
[[rules]]
id = "forwarded"
description = "d"
when = [["balance_share", ">", 0.5], ["account_age_days", "<", 30], ["payee_first_used_hours", "<", 24]]
decision = "DENY"
reason = "BALANCE"
[[rules]]
id = "added"
description = "d"
when = [["payees_added_24h", ">=", 2], ["payee_burst", ">=", 2], ["phone_changed_hours", "<", 72]]
decision = "HOLD"
reason = "PAYEES_BURST"
[[rules]]
id = "sim-off"
description = "d"
when = [["sim_swap", "!=", "not_swapped"], ["payee_paid_before", "==", false]]
decision = "WARN"
reason = "SIM_SWAP"
""",
]
RULE_SETS = [default_rules(), *(parse(text) for text in _OTHER_RULES)]

NOW = datetime.now(UTC).replace(microsecond=0)  # the present: nothing fixed reaches Redis (decision 0058)
HOUR_MS = 3_600_000
_KINDS = ("login", "credit_transfer", "add_beneficiary", "change_phone")
IBANS = ("FR7630001007941234567890185", "DE89370400440532013000", "FR1420041010050500013M02606")
# Currencies of every ISO 4217 exponent of payments (EUR, USD 2, JPY 0, KWD 3): the amounts' signals are in
# each one's major units. A memory's amounts are mostly in one of them, the user's own; GBP is never in a
# memory, so a transfer in it is a new currency whenever some amounts are known.
CURRENCIES = ("EUR", "USD", "JPY", "KWD")


def _ago(hours: float) -> st.SearchStrategy[int]:
    """Milliseconds before now, up to `hours` (the memory keeps instants to the millisecond), often on a
    signal's window edge (1, 24, 72 hours, a millisecond either side) or on an instant another entry has:
    the step reads a window's members from Redis (decision 0051), Python filters them itself."""
    edges = [0, 1, HOUR_MS // 2] + [h * HOUR_MS + d for h in (1, 24, 72) for d in (-1, 0, 1)]
    return st.one_of(
        st.integers(0, int(hours * HOUR_MS)),
        st.sampled_from([ms for ms in edges if ms <= hours * HOUR_MS]),
    )


@dataclass(frozen=True)
class Pending:
    """A challenge in the user's pending index, as open_challenge.lua leaves it (its hash's fields)."""

    status: str
    risk_open: str | None  # None: a login or a number change, which has none
    digest: str
    opened_ms_ago: int
    expires_in_ms: int  # negative: expired, still indexed


def _pending() -> st.SearchStrategy[Pending]:
    payees = [fingerprint("iban", iban) for iban in IBANS]
    return st.builds(
        Pending,
        status=st.sampled_from(["open", "open", "open", "verified", "cancelled", "voided", "locked"]),
        risk_open=st.one_of(
            st.none(),
            st.just("credit_transfer"),
            st.sampled_from(payees).map(lambda payee: f"add_beneficiary:{payee}"),
        ),
        digest=st.sampled_from([_OWN, "d1", "d2", "d3"]),
        opened_ms_ago=_ago(2),
        expires_in_ms=st.sampled_from([-1, 0, 1, 300_000]),
    )


def _in_flight(pending: list[Pending], own: str) -> list[InFlight]:
    """What the fake store gives the Python evaluator: the open, unexpired ones with `risk_open`."""
    return [
        in_flight_of(
            p.risk_open,
            own if p.digest == _OWN else p.digest,
            NOW - timedelta(milliseconds=p.opened_ms_ago),
        )
        for p in pending
        if p.status == "open" and p.risk_open is not None and p.expires_in_ms > 0
    ]


Case = tuple[User, RiskHistory, Operation, RequestContext, SimSwapStatus, Forwarded, list[Pending]]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """A user with its memory and open challenges, an operation on it and what the caller and the operator
    said."""

    def at(ms_ago: int) -> datetime:
        return NOW - timedelta(milliseconds=ms_ago)

    def instants(keys: list[str], hours: float) -> dict[str, datetime]:
        return {key: at(draw(_ago(hours))) for key in keys}

    ibans = draw(st.lists(st.sampled_from([*IBANS, "X1", "X2", "X3"]), unique=True, max_size=5))
    paid = draw(st.lists(st.sampled_from(IBANS), unique=True, max_size=3))
    changed = draw(st.one_of(st.none(), _ago(400)))
    own = draw(st.sampled_from(CURRENCIES))  # the currency of most of the user's amounts
    user = User(
        "u",
        "c",
        "+33612345678",
        "fr",
        UserStatus.ACTIVE,
        NOW - timedelta(days=400),
        failures=draw(st.integers(0, 5)),
        blocks=draw(st.integers(0, 3)),
        phone_changed_at=None if changed is None else at(changed),
    )
    history = RiskHistory(
        payees_paid=instants([fingerprint("iban", i) for i in paid], 500),
        payees_added=instants([fingerprint("iban", i) for i in ibans], draw(st.sampled_from([2, 30, 100]))),
        amounts=tuple(
            draw(
                st.lists(
                    st.tuples(
                        st.sampled_from([own, own, own, "EUR", "USD"]),
                        st.one_of(st.integers(1, 300_000), st.sampled_from([120_000, 5_000])),
                    ),
                    max_size=12,
                )
            )
        ),
        ips=instants([fingerprint("ip", f"10.0.0.{k}") for k in range(draw(st.integers(0, 3)))], 500),
        devices=instants([fingerprint("device", f"d{k}") for k in range(draw(st.integers(0, 2)))], 500),
        operations=instants(
            [f"{draw(st.sampled_from(_KINDS))}:c{k}" for k in range(draw(st.integers(0, 10)))],
            draw(st.sampled_from([1, 24, 100])),
        ),
    )
    payee = Payee("n", draw(st.sampled_from(IBANS)))
    amount = Money(draw(st.sampled_from([own, own, *CURRENCIES, "GBP"])), draw(st.integers(1, 2_000_000)))
    operations: list[Operation] = [
        Login(),
        AddBeneficiary(payee),
        ChangePhone("+33698765432"),
        CreditTransfer(amount, payee, "t"),
    ]
    operation = draw(st.sampled_from(operations))
    context = RequestContext(
        ip=draw(st.sampled_from(["", "10.0.0.1", "10.0.0.9"])),
        device_id=draw(st.sampled_from(["", "d0", "d7"])),
    )
    sim = draw(
        st.one_of(
            st.sampled_from([SimSwapStatus(state) for state in ("off", "unavailable", "not_swapped")]),
            _ago(48).map(lambda ms: SimSwapStatus("swapped", at(ms))),
        )
    )
    account = AccountSummary(Money("EUR", draw(st.integers(1, 10**7))), at(draw(_ago(10_000))))
    forwarded = Forwarded(
        payee_first_used=draw(st.one_of(st.none(), _ago(200).map(at))),
        account=draw(st.one_of(st.none(), st.just(account))),
    )
    # One digest is one operation, so one `risk_open`: two challenges of one digest differ in nothing else the
    # step reads (drawn apart, a tie of their opening instants made the kept one depend on read order).
    kinds: dict[str, str | None] = {}
    pending = [
        replace(p, risk_open=kinds.setdefault(p.digest, p.risk_open))
        for p in draw(st.lists(_pending(), max_size=5))
    ]
    return user, history, operation, context, sim, forwarded, pending


def _store(
    client: redis.Redis, user: User, history: RiskHistory, pending: Sequence[Pending] = (), own: str = ""
) -> None:
    """The user hash, its memory and its pending challenges as the Redis store keeps them (instants in unix
    ms; `own`, the operation's digest, where a challenge was drawn with `_OWN`)."""
    client.delete(*_KEYS, *[f"{_CHALLENGE}c{k}" for k in range(10)])
    for k, p in enumerate(pending):
        fields = {
            "status": p.status,
            "op_digest": own if p.digest == _OWN else p.digest,
            "created_at": rec.to_ms(NOW) - p.opened_ms_ago,
        }
        if p.risk_open is not None:
            fields["risk_open"] = p.risk_open
        client.hset(f"{_CHALLENGE}c{k}", mapping=fields)
        client.zadd(_KEYS[7], {f"c{k}": rec.to_ms(NOW) + p.expires_in_ms})
    fields = rec.user_fields(user)
    client.hset(_KEYS[0], mapping=dict(zip(fields[::2], fields[1::2], strict=True)))
    parts = [history.payees_paid, history.payees_added, history.ips, history.devices, history.operations]
    for key, part in zip(_KEYS[1:6], parts, strict=True):
        if part:
            client.zadd(key, {member: rec.to_ms(at) for member, at in part.items()})
    if history.amounts:
        client.rpush(_KEYS[6], *[f"{currency}:{minor}" for currency, minor in history.amounts])


@pytest.fixture(scope="module")
def client(redis_server: EmbeddedRedis) -> redis.Redis:
    """A client on the session's Redis (synchronous: Hypothesis drives the examples)."""
    return redis.Redis.from_url(redis_server.url)


@pytest.mark.parametrize("rules", RULE_SETS, ids=lambda rules: rules.version)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=cases())
def test_lua_signals_and_decision_equal_python(
    client: redis.Redis,
    rules: RuleSet,
    case: Case,
) -> None:
    """On the same memory and open challenges, the step's signals are Python's, number for number, and the
    assessment it keeps (decision, reason codes, rule ids, the new payee's instant) is the one Start keeps
    today."""
    user, history, operation, context, sim, forwarded, pending = case
    own = digest(operation).hex()
    want = signals(
        operation=operation,
        user=user,
        history=history,
        context=context,
        sim=sim,
        now=NOW,
        forwarded=forwarded,
        in_flight=_in_flight(pending, own),
    )
    expected = rules.assess(want)
    _store(client, user, history, pending, own)
    asked = question(operation, context, NOW, want)
    kept, said = client.eval(_pieces(rules) + _BODY, len(_KEYS), *_KEYS, asked, _CHALLENGE, own)
    assert signals_of(said) == want
    expected = replace(expected, payee_added_at=_new_payee(expected, operation, UserRisk(user, history), NOW))
    assert kept.decode() == rec.risk_hash_fields(expected)[1]


def _pieces(rules: RuleSet) -> str:
    """The pieces the step includes, with the rules' program in their text as Scripts puts it (0076)."""
    lua = resources.files("sesame.clients").joinpath("lua")
    source = "".join(lua.joinpath(piece).read_text(encoding="utf-8") for piece in _PIECES)
    assert PROGRAM_LINE in source
    return source.replace(PROGRAM_LINE, f"local RISK_PROGRAM = {program(rules)}\n", 1)


# Whether two Lua values are equal all the way down (tables by their keys and values, numbers as doubles).
_SAME = """
local function same(a, b)
  if type(a) ~= 'table' or type(b) ~= 'table' then return a == b end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end
"""


@pytest.mark.parametrize("rules", [default_rules(), *(parse(text) for text in _OTHER_RULES)])
def test_the_program_in_the_script_is_the_json_program_decoded(client: redis.Redis, rules: RuleSet) -> None:
    """Decision 0076: the program the step builds from its Lua text is, for every kind of operation, what
    cjson.decode made of the JSON sections the step decoded before; a section that differs fails."""
    same = (
        _pieces(rules)
        + _SAME
        + """
for i = 1, #ARGV, 2 do
  if not same(risk_program_for(ARGV[i]), cjson.decode(ARGV[i + 1])) then return ARGV[i] end
end
return 'same'
"""
    )
    sections = [item for name in PROGRAM_KINDS for item in (name, _compact(_section(rules, name)))]
    assert client.eval(same, 0, *sections) == b"same"
    changed = [*sections[:-1], sections[-1].replace('"version":"', '"version":"x', 1)]
    assert client.eval(same, 0, *changed) == sections[-2].encode()


@pytest.mark.parametrize(
    "value",
    [
        'quote " backslash \\ ]] [[ newline \n nul \x00 é € 😀 -- not a comment',
        [0.1, 1e-07, -2.5, 3.5e300, 2**53 + 1, -0.0, 0, -17, 1.4826, 72],
        [True, False, [], {}, {"and": "end", "": "x", "a b": [1, [2, [3]]]}],
    ],
)
def test_a_value_in_lua_text_is_what_cjson_decodes_of_its_json(client: redis.Redis, value: object) -> None:
    """Text of any bytes, numbers to the last bit, flags, empty lists and nested ones: the Lua constructor
    builds what cjson.decode makes of the JSON (strings compared byte for byte, numbers as doubles)."""
    script = _SAME + f"return same({_lua(value)}, cjson.decode(ARGV[1])) and 1 or 0"
    assert client.eval(script, 0, _compact(value)) == 1
    assert client.eval(script, 0, _compact([value, 1])) == 0


def _keys_read(client: redis.Redis) -> int:
    stats = client.info("stats")
    return int(stats["keyspace_hits"]) + int(stats["keyspace_misses"])


def _reads_under_the_defaults(client: redis.Redis, operation: Operation) -> int:
    """Keys read by the step for `operation` under the default rules, on a full memory; the SIM swapped."""
    user = User("u", "c", "+33612345678", "fr", UserStatus.ACTIVE, NOW - timedelta(days=400), failures=4)
    ops = {f"credit_transfer:c{k}": NOW - timedelta(minutes=k) for k in range(100)}
    _store(client, user, RiskHistory(amounts=(("EUR", 5_000),) * 30, operations=ops))
    body = _pieces(default_rules()) + _BODY.replace("risk_signals_reply(s)", "{}")
    asked = question(operation, RequestContext(ip="10.0.0.1", device_id="d0"), NOW, {"sim_swap": "swapped"})
    before = _keys_read(client)
    kept, _ = client.eval(body, len(_KEYS), *_KEYS, asked, _CHALLENGE, digest(operation).hex())
    assert kept.decode().startswith("deny|")
    return _keys_read(client) - before


def test_the_step_reads_no_memory_when_no_rule_gets_to_a_memory_signal(client: redis.Redis) -> None:
    """Decision 0051: the signals are computed when a clause first reads one, and the program holds for each
    kind of operation only the rules that may match it. Under the default rules a number change is judged on
    the operator's answer alone: not one key of a full memory is read."""
    assert _reads_under_the_defaults(client, ChangePhone("+33698765432")) == 0


def test_the_step_reads_the_memory_for_a_transfer(client: redis.Redis) -> None:
    """The same memory is read for a transfer, whose default rules compare its signals (the check above
    counts reads: it would pass on a counter that never moves)."""
    transfer = CreditTransfer(Money("EUR", 150_000), Payee("n", IBANS[0]), "t")
    assert _reads_under_the_defaults(client, transfer) > 0


def test_the_step_reads_a_bounded_number_of_open_challenges(client: redis.Redis) -> None:
    """A caller with a large send budget and 100 transfers open: the step reads the 64 that expire last
    (IN_FLIGHT_READ), so a Start costs no more with every challenge opened before it."""
    user = User("u", "c", "+33612345678", "fr", UserStatus.ACTIVE, NOW - timedelta(days=400))
    pending = [Pending("open", "credit_transfer", f"d{k}", 1000 + k, 300_000 + k) for k in range(10)]
    _store(client, user, RiskHistory(), pending)
    for k in range(10, 100):  # beyond _store's ten hashes
        client.hset(
            f"{_CHALLENGE}c{k}",
            mapping={
                "status": "open",
                "risk_open": "credit_transfer",
                "op_digest": f"d{k}",
                "created_at": rec.to_ms(NOW) - 1000,
            },
        )
        client.zadd(_KEYS[7], {f"c{k}": rec.to_ms(NOW) + 300_000 + k})
    transfer = CreditTransfer(Money("EUR", 150_000), Payee("n", IBANS[0]), "t")
    asked = question(transfer, RequestContext(), NOW, {"sim_swap": "off"})
    _, said = client.eval(_pieces(default_rules()) + _BODY, len(_KEYS), *_KEYS, asked, _CHALLENGE, "own")
    assert signals_of(said)["transfers_24h"] == IN_FLIGHT_READ + 1
    client.delete(*[f"{_CHALLENGE}c{k}" for k in range(100)])
