"""A fresh Debian 12 runs `make test`: the tests call only tools that the Makefile installs, and the installs
leave no system service behind."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parent.parent
# Every program the tests run by name, and the Debian package `make test` installs for it. Anything else
# (pgrep, openssl, curl...) is absent from a minimal Debian: read /proc, use `cryptography`, or add it here
# and to the Makefile.
TOOLS = {
    "softhsm2-util": "softhsm2",
    "redis-server": "redis-server",
    "node": "npm",
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "protoc": "protobuf-compiler",
    "protoc-gen-go": "protoc-gen-go",
    "protoc-gen-go-grpc": "protoc-gen-go-grpc",
    "go": "golang-go",
    "grpc_java_plugin": "protobuf-compiler-grpc-java-plugin",
    "javac": "default-jdk-headless",
    "java": "default-jdk-headless",
}
# Programs of Debian's Essential packages, on every Debian system (dpkg keeps them): nothing to install.
ESSENTIAL = {"unshare": "util-linux"}
_RUNNERS = {"run", "Popen", "call", "check_call", "check_output", "which"}


def programs_named(source: str) -> set[str]:
    """The literal program names in `source`: first items of argv lists given to subprocess, or which()."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args):
            continue
        if node.func.attr not in _RUNNERS:
            continue
        first = node.args[0]
        if isinstance(first, ast.List) and first.elts:
            first = first.elts[0]
        elif node.func.attr != "which":
            continue  # a runner is given an argv list; a method of that name given a string is not one
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            found.add(first.value.split()[0])
    return found


def test_the_tests_call_only_tools_that_make_test_installs() -> None:
    """Each program the tests and the load generator run by name is installed by the Makefile's targets."""
    called = set()
    for path in [*ROOT.joinpath("tests").rglob("*.py"), *ROOT.joinpath("bench").rglob("*.py")]:
        called |= programs_named(path.read_text(encoding="utf-8"))
    assert called <= set(TOOLS) | set(ESSENTIAL), f"not installed by make test: {sorted(called - set(TOOLS))}"
    makefile = ROOT.joinpath("Makefile").read_text(encoding="utf-8")
    for tool in called - set(ESSENTIAL):
        assert f"missing {TOOLS[tool]}" in makefile or f"$(APT_INSTALL) {TOOLS[tool]}" in makefile


def test_the_scan_finds_programs_named_in_argv_lists() -> None:
    """The scan sees `pgrep` in subprocess.run(["pgrep", ...]) and `openssl` in shutil.which("openssl"), not a
    Redis command given to a method that happens to be named `call`."""
    source = (
        'subprocess.run(["pgrep", "-f", x])\nshutil.which("openssl")\nsubprocess.run([sys.executable])\n'
        'lane.call("BLPOP", "key", 1)'
    )
    assert programs_named(source) == {"pgrep", "openssl"}


def test_every_apt_install_goes_through_the_script_that_starts_no_service() -> None:
    """The Makefile installs packages only with tools/apt-install.sh: no recommends, no service started."""
    makefile = ROOT.joinpath("Makefile").read_text(encoding="utf-8")
    assert "apt-get install" not in makefile
    assert "APT_INSTALL = tools/apt-install.sh" in makefile
    script = ROOT.joinpath("tools", "apt-install.sh").read_text(encoding="utf-8")
    assert "apt-get install -y -qq --no-install-recommends" in script
    assert "policy=/usr/sbin/policy-rc.d" in script
    assert "exit 101" in script
    assert "systemctl disable" in script
