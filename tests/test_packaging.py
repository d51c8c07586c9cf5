"""The wheel holds only `sesame/**` (with the generated stubs) and its console script runs."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel once, from the working tree, without network (the build backend is installed)."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("sesame_otp-*.whl")
    return built


def test_wheel_holds_only_the_sesame_namespace(wheel: Path) -> None:
    """Every file is under sesame/ or the dist-info; no sesame/__init__.py (PEP 420)."""
    names = zipfile.ZipFile(wheel).namelist()
    outside = [n for n in names if not n.startswith(("sesame/", "sesame_otp-"))]
    assert outside == []
    assert "sesame/__init__.py" not in names


def test_wheel_carries_every_source_root_and_the_stubs(wheel: Path) -> None:
    """server, hsm, clients, the Lua scripts, the SMS templates and the generated API all ship."""
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "sesame/server/cli.py",
        "sesame/hsm/pkcs11.py",
        "sesame/clients/redis_store.py",
        "sesame/api/v1/authentication_service_pb2.py",
        "sesame/api/v1/authentication_service_pb2_grpc.py",
    ):
        assert expected in names
    assert any(n.startswith("sesame/clients/lua/") and n.endswith(".lua") for n in names)
    # The default SMS templates are read from the package at boot.
    assert {f"sesame/server/sms_templates/{locale}/warning.txt" for locale in ("fr", "en")} <= names


def test_console_script_runs_from_a_fresh_venv(wheel: Path, tmp_path: Path) -> None:
    """`sesame --help` works from the installed wheel alone (no source tree on the path)."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    subprocess.run(
        [str(env_dir / "bin" / "pip"), "install", "--quiet", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    result = subprocess.run(
        [str(env_dir / "bin" / "sesame"), "--help"], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "serve" in result.stdout
    assert "demo" in result.stdout
