"""docs/sms.md is what `make sms-docs` writes from the package's templates: never stale."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from sesame.server.domain.sms_templates import default_templates
from sesame.server.sms_docs import markdown

SMS_MD = Path(__file__).parents[2] / "docs" / "sms.md"
DEFAULTS = Path(__file__).parents[2] / "server" / "sesame" / "server" / "sms_templates"


def test_docs_sms_md_is_generated_from_the_templates() -> None:
    """The committed page equals the generated one; run `make sms-docs` after changing a template."""
    assert SMS_MD.read_text(encoding="utf-8") == markdown(default_templates())


def test_the_command_renders_an_operators_directory(tmp_path: Path) -> None:
    """`python -m sesame.server.sms_docs --templates DIR` renders that directory's words."""
    folder = tmp_path / "templates"
    shutil.copytree(DEFAULTS, folder)
    (folder / "en" / "login.txt").write_text("{bank}: code {code} to SIGN IN. {warning}", encoding="utf-8")
    shown = subprocess.run(
        [sys.executable, "-m", "sesame.server.sms_docs", "--templates", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "MaBanque: code 99999999 to SIGN IN. This code never" in shown


def test_the_command_names_a_template_over_the_budget_and_fails(tmp_path: Path) -> None:
    """A template too long for the budget: the page is still written, the file named, exit 1."""
    folder = tmp_path / "templates"
    shutil.copytree(DEFAULTS, folder)
    (folder / "fr" / "login.txt").write_text("{bank}: code {code}. " + "Prudence. " * 20 + "{warning}")
    shown = subprocess.run(
        [sys.executable, "-m", "sesame.server.sms_docs", "--templates", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 1
    assert "### `fr/login.txt`: GSM7" in shown.stdout
    assert f"{folder / 'fr' / 'login.txt'} takes 3 gsm7 parts" in shown.stderr
