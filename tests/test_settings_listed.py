"""Every SESAME_* variable the code reads is listed by `sesame serve --help` and in docs/operations.md."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from sesame.server.config import Settings

ROOT = Path(__file__).parent.parent
_VARIABLE = re.compile(r"\bSESAME_[A-Z0-9_]*[A-Z0-9]\b")


def _in_code() -> set[str]:
    """Every SESAME_* name written in our sources (a variable read outside the reader is found too)."""
    names: set[str] = set()
    for root in ("server", "clients", "hsm"):
        for source in (ROOT / root).rglob("*.py"):
            names |= set(_VARIABLE.findall(source.read_text(encoding="utf-8")))
    return names


def _listed_by_help() -> dict[str, str]:
    shown = subprocess.run(
        [sys.executable, "-m", "sesame.server.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    listed = shown.split("settings (default):\n", 1)[1]
    rows = (line.split(None, 1) for line in listed.splitlines() if line.startswith("  SESAME_"))
    return dict(rows)


def _in_the_docs_table() -> set[str]:
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    table = text.split("## Settings", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `SESAME_")]
    return {name for row in rows for name in _VARIABLE.findall(row.split("|")[1])}


def test_serve_help_lists_every_variable_the_code_names() -> None:
    """`sesame serve --help` lists every SESAME_* name in the sources, each with a default."""
    listed = _listed_by_help()
    assert _in_code() <= set(listed)
    assert all(default.strip() for default in listed.values())


def test_serve_help_shows_the_code_defaults() -> None:
    """The defaults shown are those the settings reader applies (a sample across kinds)."""
    listed = _listed_by_help()
    assert listed["SESAME_GRPC_ADDR"] == "127.0.0.1:50051"
    assert listed["SESAME_CODE_TTL_SECONDS"] == "300 (30 to 600)"
    assert listed["SESAME_SMS_PROVIDERS"] == "console (in failover order, among console, kannel, smpp)"
    assert listed["SESAME_SMPP_PORT"] == "2775 (1 to 65535)"


def test_serve_help_lists_the_file_variant_of_every_secret() -> None:
    """Each secret the help says may come from a file (`unset (or X_FILE)`) has X_FILE listed as well."""
    listed = _listed_by_help()
    files = {name for default in listed.values() for name in re.findall(r"\(or (SESAME_\w+_FILE)\)", default)}
    assert "SESAME_SIM_SWAP_TOKEN_FILE" in files
    assert files <= set(listed)


def test_serve_help_shows_paths_under_the_var_dir_as_such() -> None:
    """The console SMS file and the journal archive default under SESAME_VAR_DIR, wherever that is; the help
    says so rather than `var/...`, which is right only for the default var dir."""
    listed = _listed_by_help()
    assert listed["SESAME_SMS_CONSOLE_FILE"] == "<SESAME_VAR_DIR>/sms.jsonl"
    assert listed["SESAME_JOURNAL_ARCHIVE_DIR"] == "<SESAME_VAR_DIR>/journal"


def test_the_console_file_and_the_archive_follow_the_var_dir(tmp_path: Path) -> None:
    """With SESAME_VAR_DIR set and the two paths unset, the settings put both under that directory."""
    settings = Settings.from_env({"SESAME_VAR_DIR": str(tmp_path)})
    assert settings.sms_console_file == tmp_path / "sms.jsonl"
    assert settings.journal_archive_dir == tmp_path / "journal"


def test_the_operations_table_documents_every_listed_variable() -> None:
    """docs/operations.md's settings table has a row for every variable the help lists."""
    assert set(_listed_by_help()) <= _in_the_docs_table()
