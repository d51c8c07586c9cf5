"""The Docker image, read from its files: production by default, installed by the script `make image` runs,
no dev tools in the runtime stage, no secrets or venvs in the build context. The image itself is built and
started by `make image` (tools/image-check.sh; minutes, not in `make test`)."""

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


def _install_script() -> str:
    """tools/image-install.sh, the runtime stage's install step (and `make image`'s), comments dropped."""
    text = ROOT.joinpath("tools", "image-install.sh").read_text(encoding="utf-8")
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def test_the_runtime_stage_is_installed_by_the_script_make_image_runs() -> None:
    """One install step for the Dockerfile and for `make image`'s mmdebstrap root filesystem: no drift."""
    runs = [i.arguments for i in runtime_stage() if i.keyword == "RUN"]
    copies = " ".join(i.arguments for i in runtime_stage() if i.keyword == "COPY")
    assert runs == ["/tmp/install/image-install.sh /tmp/install"]
    assert "tools/apt-install.sh tools/image-install.sh requirements.lock /tmp/install/" in copies
    check = ROOT.joinpath("tools", "image-check.sh").read_text(encoding="utf-8")
    assert "cp tools/apt-install.sh tools/image-install.sh requirements.lock" in check
    assert "/tmp/install/image-install.sh /tmp/install" in check


def test_the_runtime_stage_installs_the_runtime_lock_and_no_dev_tool() -> None:
    """The install script installs requirements.lock with hashes and the wheel without its dependencies."""
    script = _install_script()
    copies = " ".join(i.arguments for i in runtime_stage() if i.keyword == "COPY")
    assert "requirements-dev.lock" not in copies
    pip = "/opt/sesame/bin/pip install --no-cache-dir --no-compile --quiet"
    assert f'{pip} --require-hashes -r "$from/requirements.lock"' in script
    assert f'{pip} --no-deps "$from"/*.whl' in script
    assert "--no-install-recommends" in ROOT.joinpath("tools", "apt-install.sh").read_text(encoding="utf-8")
    assert "requirements-dev.lock" not in script
    assert "[dev]" not in script
    for tool in dev_only_packages():
        assert re.search(rf"\b{re.escape(tool)}\b", script) is None, tool


def test_the_image_runs_as_a_user_that_owns_only_its_data_volume() -> None:
    """USER sesame (uid 10001, the Kubernetes manifests' runAsUser); its data directory is the VOLUME and
    SESAME_VAR_DIR, so the root filesystem can be read-only."""
    assert [i.arguments for i in runtime_stage() if i.keyword == "USER"] == ["sesame"]
    assert "--uid 10001 sesame" in _install_script()
    assert "install -d -o sesame -g sesame -m 0750 /var/lib/sesame/var" in _install_script()
    assert [i.arguments for i in runtime_stage() if i.keyword == "VOLUME"] == ['["/var/lib/sesame/var"]']
    assert image_env()["SESAME_VAR_DIR"] == "/var/lib/sesame/var"


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
