"""The dependency rules (a pure domain; only gRPC imports the API), as import-linter contracts."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).parent.parent


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def test_contracts_hold() -> None:
    """Every contract is kept by the code as it is."""
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" not in result.stdout.lower().replace("0 broken", "")


def test_a_domain_import_of_redis_is_caught(tmp_path: Path) -> None:
    """The contracts would fail if the domain imported an adapter library (they can fail)."""
    domain = tmp_path / "server" / "sesame" / "server" / "domain"
    domain.mkdir(parents=True)
    (tmp_path / "server" / "sesame" / "server" / "__init__.py").write_text("")
    (domain / "__init__.py").write_text("")
    (domain / "leak.py").write_text("import redis\n")
    for root in ("hsm/sesame/hsm", "clients/sesame/clients", "gen/sesame/api"):
        (tmp_path / root).mkdir(parents=True)
        (tmp_path / root / "__init__.py").write_text("")
    config = (ROOT / "pyproject.toml").read_text()
    (tmp_path / "pyproject.toml").write_text(config)
    (tmp_path / ".importlinter").write_text(
        textwrap.dedent(
            """
            [importlinter]
            root_package = sesame
            include_external_packages = True

            [importlinter:contract:domain]
            name = domain is pure
            type = forbidden
            source_modules = sesame.server.domain
            forbidden_modules = redis
            """
        )
    )
    env_path = ":".join(str(tmp_path / r) for r in ("server", "hsm", "clients", "gen"))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache", ".importlinter"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode != 0
    assert "sesame.server.domain.leak" in result.stdout
