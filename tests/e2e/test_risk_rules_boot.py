"""`sesame serve` refuses a rules file whose thresholds are not finite numbers, saying where.

TOML reads `nan`, `inf` and `-inf` as floats: a DENY rule `["amount", ">=", nan]` never holds (a rule
silently dead), and the program it compiled to carried `NaN` or `Infinity`, which JSON does not have (the
Lua step's decoder happened to take them). The server booted with such a file; it now refuses it as any
other bad rule, with the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.serve_process import run_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

RULES = """version = "2026-12-01.1"

[[rules]]
id = "big-transfer"
description = "A transfer of a large amount"
when = [["operation", "==", "credit_transfer"], ["amount", ">=", {value}]]
decision = "DENY"
reason = "UNUSUAL_AMOUNT"
"""


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "[1000, nan]"])
def test_serve_refuses_a_rule_whose_threshold_is_not_a_finite_number(tmp_path: Path, value: str) -> None:
    """nan, inf and -inf (alone or in an `in` list): exit 2 naming the file's line 6, no traceback."""
    rules = tmp_path / "rules.toml"
    op = "in" if value.startswith("[") else ">="
    rules.write_text(RULES.replace('">=", {value}', f'"{op}", {value}'), encoding="utf-8")
    result = run_serve(tmp_path / "var", {"SESAME_RISK_RULES_FILE": str(rules)})
    assert result.returncode == 2, result.stdout[-2000:]
    assert f"SESAME_RISK_RULES_FILE {rules}: line 6" in result.stdout
    assert "Traceback" not in result.stdout
