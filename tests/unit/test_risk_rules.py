"""The risk rules file: the defaults load, and a bad file is refused with its line and reason."""

from __future__ import annotations

import pytest

from sesame.server.domain.risk import RiskDecision
from sesame.server.domain.risk_rules import RulesFileError, default_rules, parse

_GOOD = """\
version = "t1"

[[rules]]
id = "big"
description = "A big transfer"
when = [["operation", "==", "credit_transfer"], ["amount", ">=", 1000]]
decision = "HOLD"
reason = "BIG"
"""


class TestDefaults:
    def test_the_defaults_load_and_name_their_version(self) -> None:
        """The shipped file parses; its version carries the file's digest."""
        rules = default_rules()
        assert rules.version.startswith("2026-12-06.1+")
        assert len(rules.rules) >= 8

    def test_the_defaults_cover_every_pattern_of_the_issue(self) -> None:
        """Each default pattern has its reason code."""
        codes = {rule.reason for rule in default_rules().rules}
        assert {
            "NEW_PAYEE",
            "PAYEES_BURST",
            "RECENT_PHONE_CHANGE",
            "UNUSUAL_AMOUNT",
            "NEW_DEVICE",
            "NEW_IP",
            "FAILURE_BURST",
            "VELOCITY",
            "SIM_SWAP",
            "NEW_CURRENCY",
            "PAYEE_NAME_ALERT",
        } <= codes

    def test_every_default_rule_is_explained(self) -> None:
        """Each rule has a description a customer can be told."""
        assert all(len(rule.description) > 20 for rule in default_rules().rules)


class TestParse:
    def test_a_good_file_gives_its_rule(self) -> None:
        """The rule's id, decision, reason and clauses are read."""
        rules = parse(_GOOD)
        (rule,) = rules.rules
        assert (rule.rule_id, rule.decision, rule.reason) == ("big", RiskDecision.HOLD, "BIG")
        assert rules.assess({"operation": "credit_transfer", "amount": 1500}).decision is RiskDecision.HOLD

    def test_the_version_changes_with_the_text(self) -> None:
        """Two files under one version string are still told apart by their digest."""
        assert parse(_GOOD).version != parse(_GOOD.replace("1000", "999")).version

    @pytest.mark.parametrize(
        ("change", "line", "reason"),
        [
            (('"amount", ">="', '"amout", ">="'), 6, "unknown signal"),
            (('"HOLD"', '"HOLDS"'), 7, "decision"),
            (('"BIG"', '"big"'), 8, "reason"),
            (('["amount", ">=", 1000]', '["amount", ">=", "1000"]'), 6, "is a number"),
            (('["amount", ">=", 1000]', '["operation", ">", 1]'), 6, "cannot be ordered"),
            (('["amount", ">=", 1000]', '["currency", ">", "EUR"]'), 6, "cannot be ordered"),
            (('["amount", ">=", 1000]', '["new_currency", "==", "yes"]'), 6, "flag"),
            (('["amount", ">=", 1000]', '["amount", "~", 1]'), 6, "unknown operator"),
            (('id = "big"', 'id = "Big one"'), 4, "id"),
            (('id = "big"', 'id = "big"\nextra = 1'), 5, "unknown key"),
            (('version = "t1"', 'version = ""'), 1, "version"),
            (("decision =", "decision"), 7, "not TOML"),
        ],
    )
    def test_a_bad_file_names_the_line_and_the_reason(
        self, change: tuple[str, str], line: int, reason: str
    ) -> None:
        """Each kind of mistake is refused with where it is and why."""
        with pytest.raises(RulesFileError) as caught:
            parse(_GOOD.replace(*change))
        assert caught.value.line == line
        assert reason in caught.value.reason

    def test_a_rule_may_set_a_threshold_per_currency(self) -> None:
        """`currency` names the transfer's ISO 4217 code: a bank's file holds a yen threshold of its own."""
        rules = parse(
            _GOOD.replace('["amount", ">=", 1000]', '["currency", "==", "JPY"], ["amount", ">=", 150000]')
        )
        transfer = {"operation": "credit_transfer", "amount": 200000}
        assert rules.assess(transfer | {"currency": "JPY"}).decision is RiskDecision.HOLD
        assert rules.assess(transfer | {"currency": "EUR"}).decision is RiskDecision.ALLOW

    def test_a_file_without_rules_is_refused(self) -> None:
        """No rule at all would allow everything silently."""
        with pytest.raises(RulesFileError, match="no \\[\\[rules\\]\\]"):
            parse('version = "x"\n')

    def test_a_rule_id_used_twice_is_refused(self) -> None:
        """Ids name rules in the journal and the metrics: they are unique."""
        with pytest.raises(RulesFileError, match="used twice") as caught:
            parse(_GOOD + _GOOD.split("\n", 2)[2])
        assert caught.value.line == 10
