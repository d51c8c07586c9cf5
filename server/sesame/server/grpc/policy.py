"""The caller policy: which verified caller may call which RPC, read from a TOML file at boot.

    [callers."payments.mabanque.internal"]
    allow = ["sesame.api.v1.AuthenticationService/*"]

A rule is `<package.Service>/<Method>` or `<package.Service>/*` (every method of the service). Rules are
checked against the RPCs this server answers and wildcards expanded once, so a typo is a boot error rather
than a caller refused in the night, and a call is allowed by one set lookup. Health is open to every caller
and never named. Nothing is allowed that a rule does not name.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sesame.server.domain.errors import ConfigurationError
from sesame.server.grpc.catalogue import GOVERNED, HEALTH_SERVICE

_RULE_SHAPE = "`package.Service/Method` or `package.Service/*`"


@dataclass(frozen=True, slots=True)
class CallerPolicy:
    """For each caller identity, the full names (`package.Service/Method`) of the RPCs it may call."""

    grants: Mapping[str, frozenset[str]]

    def allows(self, caller: str | None, method: str) -> bool:
        """Whether `caller` (None: no verified identity) may call `method` (`package.Service/Method`)."""
        if caller is None:
            return False
        return method in self.grants.get(caller, frozenset())


class InvalidPolicy(ConfigurationError):
    """The policy file is not valid; `problems` lists every reason at once."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("invalid caller policy:\n  - " + "\n  - ".join(problems))
        self.problems = tuple(problems)


def parse_policy(text: str) -> CallerPolicy:
    """The policy in `text` (TOML); InvalidPolicy names every problem, none of them a secret."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # The decoder's message gives the line and column, never the file's content.
        raise InvalidPolicy([f"not valid TOML ({exc})"]) from None
    problems: list[str] = []
    grants = _grants(document, problems)
    if problems:
        raise InvalidPolicy(problems)
    return CallerPolicy(grants)


def _grants(document: Mapping[str, Any], problems: list[str]) -> dict[str, frozenset[str]]:
    problems.extend(
        f'unknown key {key!r}: the file holds only [callers."<identity>"] tables'
        for key in sorted(document.keys() - {"callers"})
    )
    callers = document.get("callers")
    if not isinstance(callers, dict) or not callers:
        problems.append('no caller: give each caller a [callers."<identity>"] table')
        return {}
    return {name: _caller(name, entry, problems) for name, entry in callers.items()}


def _caller(name: str, entry: object, problems: list[str]) -> frozenset[str]:
    where = f'callers."{name}"'
    if not name.strip():
        problems.append(f"{where}: the identity must not be empty")
    if not isinstance(entry, dict):
        problems.append(f"{where} must be a table with an `allow` list")
        return frozenset()
    # An unquoted dotted identity ([callers.a.b]) makes nested tables: say how to write it.
    problems.extend(
        f'{where}: unknown key {key!r} (only `allow`; quote a dotted identity: [callers."a.b"])'
        for key in sorted(entry.keys() - {"allow"})
    )
    rules = entry.get("allow")
    if not isinstance(rules, list) or not rules:
        problems.append(f"{where}.allow must be a non-empty list of {_RULE_SHAPE}")
        return frozenset()
    methods: set[str] = set()
    for index, rule in enumerate(rules):
        methods |= _expand(rule, f"{where}.allow[{index}]", problems)
    return frozenset(methods)


def _expand(rule: object, where: str, problems: list[str]) -> frozenset[str]:
    """The full method names one rule grants; a problem (and nothing granted) when it names no RPC."""
    if not isinstance(rule, str) or rule.count("/") != 1:
        problems.append(f"{where} must be a string {_RULE_SHAPE}")
        return frozenset()
    service, _, method = rule.partition("/")
    if service == HEALTH_SERVICE:
        problems.append(f"{where}: {HEALTH_SERVICE} is open to every caller and is not named")
        return frozenset()
    known = GOVERNED.get(service)
    if known is None:
        problems.append(f"{where}: unknown service {service!r} (known: {', '.join(sorted(GOVERNED))})")
        return frozenset()
    if method == "*":
        return frozenset(f"{service}/{name}" for name in known)
    if method not in known:
        problems.append(f"{where}: {service} has no method {method!r} (known: {', '.join(sorted(known))})")
        return frozenset()
    return frozenset({rule})
