"""The Docker image, read from its files (no Docker engine runs here; the image build itself is untested):
production by default, no dev tools in the runtime stage, no secrets or venvs in the build context."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.serve_process import run_serve

ROOT = Path(__file__).parent.parent
# The container's own listening addresses and directory: where this machine's test server may not go.
_PLACES = ("SESAME_VAR_DIR", "SESAME_GRPC_ADDR", "SESAME_METRICS_ADDR", "SESAME_HEALTH_ADDR")


@dataclass(frozen=True, slots=True)
class Instruction:
    """One Dockerfile instruction: its keyword and its arguments, continuation lines joined."""

    keyword: str
    arguments: str


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, comments dropped and `\\` continuations joined."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            found.append(Instruction(keyword.upper(), arguments.strip()))
    return found


def runtime_stage() -> list[Instruction]:
    """The instructions of the last stage: what the image that runs is made of."""
    every = instructions(ROOT.joinpath("Dockerfile").read_text(encoding="utf-8"))
    last_from = max(i for i, instruction in enumerate(every) if instruction.keyword == "FROM")
    return every[last_from:]


def image_env() -> dict[str, str]:
    """The ENV the runtime stage sets (KEY=value pairs)."""
    env = {}
    for instruction in runtime_stage():
        if instruction.keyword == "ENV":
            for pair in shlex.split(instruction.arguments):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def dev_only_packages() -> list[str]:
    """The names of pyproject.toml's dev extra (grpcio-tools, pytest, mypy, ruff...)."""
    pyproject = ROOT.joinpath("pyproject.toml").read_text(encoding="utf-8")
    block = pyproject.split("dev = [", 1)[1].split("]", 1)[0]
    return [re.split(r"[<>=\[ ]", item.strip().strip('",'))[0] for item in re.findall(r'"[^"]+"', block)]


def test_the_image_is_production_by_default() -> None:
    """The runtime stage sets SESAME_ENV=production: development only when `-e SESAME_ENV=development`."""
    assert image_env()["SESAME_ENV"] == "production"


def test_the_image_refuses_to_start_with_its_own_defaults(tmp_path: Path) -> None:
    """`sesame serve` with the image's ENV and nothing else exits non-zero naming what production needs."""
    settings = {k: v for k, v in image_env().items() if k not in _PLACES}
    result = run_serve(tmp_path / "var", settings)
    assert result.returncode != 0
    for needed in (
        "SESAME_TLS_CERT_FILE",
        "SESAME_TLS_CLIENT_CA_FILE",
        "SESAME_AUTHZ_POLICY_FILE",
        "SESAME_SMS_PROVIDERS (or SESAME_SMS_GATEWAY) has console",
        "SESAME_REDIS_URL",
        "SESAME_PKCS11_MODULE",
    ):
        assert needed in result.stdout
    assert not (tmp_path / "var").exists()


def test_the_runtime_stage_installs_the_runtime_lock_and_no_dev_tool() -> None:
    """The runtime stage installs requirements.lock with hashes and the wheel without its dependencies."""
    runs = " ".join(i.arguments for i in runtime_stage() if i.keyword == "RUN")
    copies = " ".join(i.arguments for i in runtime_stage() if i.keyword == "COPY")
    assert "requirements-dev.lock" not in copies
    assert "pip install --no-cache-dir --require-hashes -r /tmp/requirements.lock" in runs
    assert "pip install --no-cache-dir --no-deps /tmp/*.whl" in runs
    assert "requirements-dev.lock" not in runs
    assert "[dev]" not in runs
    for tool in dev_only_packages():
        assert re.search(rf"\b{re.escape(tool)}\b", runs) is None, tool


@pytest.mark.parametrize("package", ["grpcio-tools", "pytest", "mypy", "ruff", "hypothesis", "build"])
def test_the_runtime_lock_holds_no_dev_tool(package: str) -> None:
    """requirements.lock, which the image installs, pins none of the dev tools."""
    assert package in dev_only_packages()
    lock = ROOT.joinpath("requirements.lock").read_text(encoding="utf-8")
    assert re.search(rf"^{re.escape(package)}==", lock, re.MULTILINE) is None


@pytest.mark.parametrize(
    "entry",
    ["var/", ".venv/", ".tools/", "gen/", ".git/", "**/__pycache__/", ".mypy_cache/", ".pytest_cache/"],
)
def test_the_build_context_leaves_out_secrets_venvs_and_caches(entry: str) -> None:
    """.dockerignore keeps var/ (PIN files, codes), venv, tools, stubs, caches and git out of the build."""
    ignored = ROOT.joinpath(".dockerignore").read_text(encoding="utf-8").splitlines()
    assert entry in ignored
