"""The command line says what went wrong in one line and exits non-zero, never with a traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
import redis

from sesame.clients.redis_server import EmbeddedRedis
from sesame.server.grpc.server import SERVER_OPTIONS
from tests.e2e.conftest import Served
from tests.support.serve_process import free_port, run_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROOT = Path(__file__).parent.parent.parent


def _sesame(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`sesame ARGS` in a process of its own (60 s at most), its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "sesame.server.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _bare_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This environment without Sésame's or SoftHSM's settings, with a var directory of the test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESAME_", "SOFTHSM2_"))}
    return {**env, "SESAME_VAR_DIR": str(tmp_path / "var"), **extra}


def _demo(target: str, sms_file: Path) -> subprocess.CompletedProcess[str]:
    return _sesame("demo", "--target", target, "--sms-file", str(sms_file))


def test_demo_without_a_server_says_so(tmp_path: Path) -> None:
    """`sesame demo` against an address where nothing listens prints one line and exits 1."""
    sms_file = tmp_path / "sms.jsonl"
    sms_file.touch()

    result = _demo(f"127.0.0.1:{free_port()}", sms_file)

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"sesame demo: no server answers at 127.0.0.1:{result.args[5][10:]}"
    ]


def test_demo_with_a_missing_sms_file_says_so(served: Served, tmp_path: Path) -> None:
    """`sesame demo` with an SMS file that does not exist prints one line and exits 1."""
    result = _demo(served.address, tmp_path / "nowhere.jsonl")

    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("sesame demo: no console SMS file at ")


def test_serve_on_a_taken_port_says_so(served: Served, tmp_path: Path) -> None:
    """A second `sesame serve` on a running one's port exits non-zero with one line naming the address."""
    result = run_serve(tmp_path / "var", {"SESAME_GRPC_ADDR": served.address}, timeout=60)

    assert result.returncode != 0
    assert "Traceback" not in result.stdout
    assert not re.search(r"^E\d{4} ", result.stdout, re.MULTILINE)  # gRPC core's own error lines
    assert result.stdout.splitlines()[-1] == (
        f"sesame: cannot listen on {served.address} (SESAME_GRPC_ADDR): address already in use"
    )


async def test_a_second_server_cannot_share_the_grpc_port(served: Served) -> None:
    """With our listener options a second gRPC server fails to bind a taken port (no SO_REUSEPORT split)."""
    second = grpc.aio.server(options=SERVER_OPTIONS)
    with pytest.raises(RuntimeError):
        second.add_insecure_port(served.address)
    await second.stop(0)


def test_serve_open_to_every_caller_beyond_loopback_is_refused(tmp_path: Path) -> None:
    """`sesame serve` in development on a wildcard address, without a caller policy, exits 2 naming the
    setting and the ways out, before it binds anything: OverrideSecurePhone, TerminateClient and the codes'
    file would otherwise be served to the network (decision 0082)."""
    address = f"0.0.0.0:{free_port()}"
    result = run_serve(tmp_path / "var", {"SESAME_GRPC_ADDR": address}, timeout=60)

    assert result.returncode == 2, result.stdout
    assert "Traceback" not in result.stdout
    assert f"SESAME_GRPC_ADDR {address} may be reached from other hosts" in result.stdout
    assert "SESAME_OPEN_BEYOND_LOOPBACK=1" in result.stdout
    assert not (tmp_path / "var" / "redis").exists()  # refused before the embedded Redis was started


def test_dispatch_without_a_redis_url_names_its_own_command(tmp_path: Path) -> None:
    """`sesame dispatch` with no SESAME_REDIS_URL exits 2 saying that it needs one, not a worker's message."""
    result = _sesame("dispatch", env=_bare_env(tmp_path, SESAME_METRICS_ADDR="off"))

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith("sesame: sesame dispatch needs SESAME_REDIS_URL")


def test_keys_init_on_a_var_directory_that_is_a_file_says_so(tmp_path: Path) -> None:
    """`sesame keys init` where SESAME_VAR_DIR is a file: exit 2 naming the setting and why, no traceback (a
    NotADirectoryError's, an outside audit's)."""
    var = tmp_path / "var"
    var.write_text("not a directory", encoding="utf-8")
    result = _sesame("keys", "init", env=_bare_env(tmp_path, SESAME_METRICS_ADDR="off"))

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"sesame: the development token under {var} (SESAME_VAR_DIR) cannot be made: Not a directory"
    )


def test_a_setting_two_providers_read_is_listed_once(tmp_path: Path) -> None:
    """A bad SESAME_SMS_SENDER with both kannel and smpp is one line of the boot's problems, not two."""
    settings = {
        "SESAME_SMS_PROVIDERS": "kannel,smpp",
        "SESAME_KANNEL_URL": "http://127.0.0.1:1",
        "SESAME_KANNEL_USERNAME": "sesame",
        "SESAME_KANNEL_PASSWORD": "secret",
        "SESAME_DLR_ADDR": "off",
        "SESAME_SMPP_HOST": "127.0.0.1",
        "SESAME_SMPP_SYSTEM_ID": "sesame",
        "SESAME_SMPP_PASSWORD": "secret",
        "SESAME_SMS_SENDER": "TWELVE CHARS",
    }
    result = run_serve(tmp_path / "var", settings, timeout=60)

    assert result.returncode == 2, result.stdout
    problems = [line for line in result.stdout.splitlines() if line.startswith("  - ")]
    assert problems == ["  - SESAME_SMS_SENDER must be 1 to 11 letters, digits or spaces"]


def test_output_into_a_closed_pipe_ends_without_a_traceback(tmp_path: Path) -> None:
    """`sesame risk replay ... | head` whose reader is gone exits 1 with nothing on standard error: it printed
    a BrokenPipeError traceback, as every command that prints (evidence, proof, journal) did."""
    scenarios = sorted(str(path) for path in (ROOT / "tests" / "risk_scenarios").glob("*.toml"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESAME_", "SOFTHSM2_"))}
    env.update(SESAME_VAR_DIR=str(tmp_path / "var"))
    process = subprocess.Popen(
        [sys.executable, "-m", "sesame.server.cli", "risk", "replay", *scenarios],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    process.stdout.close()  # the reader leaves before a line is read
    errors = process.stderr.read().decode()

    assert process.wait(timeout=60) == 1
    assert errors == ""


@pytest.mark.parametrize("command", [["health"], ["demo"], ["proof", "keys"]])
def test_a_target_without_its_port_is_a_bad_option(command: list[str], tmp_path: Path) -> None:
    """`--target bad` exits 2 naming the option: gRPC dialled port 443 and `health` read UNREACHABLE (exit 1),
    as for a server down, though the probe itself was wrong."""
    result = _sesame(*command, "--target", "bad", env=_bare_env(tmp_path))
    assert result.returncode == 2
    assert "argument --target: must be host:port" in result.stderr.splitlines()[-1]


def test_an_evidence_period_that_is_not_a_date_names_its_option(served: Served, tmp_path: Path) -> None:
    """`sesame evidence --user u --since 2026-13-01` says which option is wrong, in one line, exit 2."""
    env = {**os.environ, "SESAME_VAR_DIR": str(tmp_path / "var")}
    result = _sesame("evidence", "--target", served.address, "--user", "u", "--since", "2026-13-01", env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == ["sesame: --since: not an ISO 8601 date or time: '2026-13-01'"]


@pytest.mark.parametrize("where", ["no-such-directory/preuve.pdf", "."])
def test_an_evidence_pdf_that_cannot_be_written_names_its_option(
    where: str, served: Served, tmp_path: Path
) -> None:
    """`sesame evidence ... --pdf` into a missing directory or onto a directory exits 2 in one line, printing
    no bundle: it printed the bundle, then a traceback, exit 1, the status of a failed check (decision 0107).
    """
    env = {**os.environ, "SESAME_VAR_DIR": str(tmp_path / "var")}
    pdf = tmp_path / where
    result = _sesame("evidence", "--target", served.address, "--user", "u", "--pdf", str(pdf), env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1].startswith("sesame: --pdf cannot be written (")
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert [path.name for path in tmp_path.iterdir() if path.name.endswith(".part")] == []


def test_an_evidence_pdf_replaces_the_file_whole(served: Served, tmp_path: Path) -> None:
    """The PDF is written beside its name and renamed over it: the file there before is replaced by a
    whole PDF, and no part file is left (decision 0107)."""
    env = {**os.environ, "SESAME_VAR_DIR": str(tmp_path / "var")}
    pdf = tmp_path / "preuve.pdf"
    pdf.write_bytes(b"the bundle filed last week")
    result = _sesame("evidence", "--target", served.address, "--user", "u", "--pdf", str(pdf), env=env)
    assert result.returncode == 0, result.stderr
    assert pdf.read_bytes().startswith(b"%PDF-")
    assert sorted(path.name for path in tmp_path.iterdir() if path.name != "var") == ["preuve.pdf"]


@pytest.mark.parametrize(
    ("selector", "said"),
    [
        (("c-1", "--user", "u"), "sesame: name a challenge or --user, not both"),
        (
            ("c-1", "--transaction", "tx-1"),
            "sesame: --since, --until and --transaction select a user's challenges: with --user",
        ),
    ],
)
def test_an_evidence_selector_never_ignores_a_part(
    selector: tuple[str, ...], said: str, served: Served, tmp_path: Path
) -> None:
    """A challenge and a user (or a user's filters) named together: one was ignored without a word, the
    challenge's bundle printed as if the user's were asked. Exit 2, naming the clash, nothing printed."""
    env = {**os.environ, "SESAME_VAR_DIR": str(tmp_path / "var")}
    result = _sesame("evidence", "--target", served.address, *selector, env=env)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines()[-1] == said


def test_a_negative_export_cursor_is_refused(tmp_path: Path) -> None:
    """`journal export --after -5` was taken, and read as `--after 0`: argparse refuses it, naming it."""
    env = {**os.environ, "SESAME_VAR_DIR": str(tmp_path / "var")}
    result = _sesame("journal", "export", "--archive-only", "--after", "-5", env=env)
    assert result.returncode == 2
    assert "--after: must be a block number (0 or more), not '-5'" in result.stderr


@pytest.mark.parametrize(
    ("command", "said"),
    [
        (["sms", "dead-letters"], "  - SESAME_REDIS_URL cannot be read as a URL: Invalid IPv6 URL"),
        (["keys", "rotate"], "  - SESAME_REDIS_URL cannot be read as a URL: Invalid IPv6 URL"),
        (["dispatch"], "  - SESAME_REDIS_URL cannot be read as a URL: Invalid IPv6 URL"),
    ],
    ids=["sms-dead-letters", "keys-rotate", "dispatch"],
)
def test_a_redis_url_that_is_no_url_is_a_bad_setting(command: list[str], said: str, tmp_path: Path) -> None:
    """`SESAME_REDIS_URL=redis://:pw@[::1/0` (a bracket left open) ended every command that reads Redis in a
    traceback, `keys rotate` after making its key: exit 2 before anything is done, never the password."""
    env = _bare_env(tmp_path, SESAME_REDIS_URL="redis://:hunter2@[::1/0", SESAME_METRICS_ADDR="off")
    result = _sesame(*command, env=env)
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr
    assert result.stderr.splitlines()[-1] == said
    assert not (tmp_path / "var").exists()  # no token made, no key rotated


UNUSABLE = "the Redis URL (--redis) cannot be used: "
REDIS_OPTION_ERRORS = [
    ("redis://:hunter2@[::1/0", f"{UNUSABLE}Invalid IPv6 URL"),
    ("redis://:hunter2@127.0.0.1:99999/0", f"{UNUSABLE}Port out of range 0-65535"),
    (
        "ftp://:hunter2@127.0.0.1:6379/0",
        f"{UNUSABLE}Redis URL must specify one of the following schemes (redis://, rediss://, unix://)",
    ),
    ("redis+cluster://:hunter2@127.0.0.1", f"{UNUSABLE}a Redis Cluster seed is host:port, not '127.0.0.1'"),
    ("redis://:hunter2@127.0.0.1:9/0", "Redis at 127.0.0.1:9 (--redis) unavailable: ConnectionError"),
]


@pytest.mark.parametrize(
    ("url", "said"), REDIS_OPTION_ERRORS, ids=["no-url", "port", "scheme", "cluster-seed", "unreachable"]
)
def test_every_error_about_a_redis_option_names_the_option(url: str, said: str, tmp_path: Path) -> None:
    """`journal export --redis URL` with SESAME_REDIS_URL set too: an unusable URL was said to be the
    setting's (`the Redis URL (SESAME_REDIS_URL) cannot be used`, `a Redis Cluster seed (SESAME_REDIS_URL)`;
    no URL at all named neither), sending the operator to check the setting. Each names --redis; exit 2, one
    line, never the password (decision 0108)."""
    (tmp_path / "var" / "journal").mkdir(parents=True)
    env = _bare_env(tmp_path, SESAME_REDIS_URL="redis://:setting@127.0.0.1:6379/0")
    result = _sesame("journal", "export", "--redis", url, env=env)
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr
    assert "SESAME_REDIS_URL" not in result.stderr
    assert result.stderr.splitlines()[-1] == f"sesame: {said}"


def test_a_redis_option_refusing_the_password_names_the_option(tmp_path: Path) -> None:
    """A Redis of --redis that refuses the password: named as the option's, not the setting's."""
    (tmp_path / "var" / "journal").mkdir(parents=True)
    with EmbeddedRedis(tmp_path / "redis") as server:
        port = server.port
        admin = redis.Redis(port=port)
        admin.config_set("requirepass", "s3same")
        admin.close()
        env = _bare_env(tmp_path, SESAME_REDIS_URL="redis://:setting@127.0.0.1:6379/0")
        url = f"redis://:hunter2@127.0.0.1:{port}/0"
        result = _sesame("journal", "export", "--redis", url, env=env)
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert "hunter2" not in result.stderr
    said = f"sesame: Redis at 127.0.0.1:{port} (--redis) unavailable: AuthenticationError"
    assert result.stderr.splitlines()[-1] == said


@pytest.mark.parametrize(
    "args",
    [("evidence", "\udcff"), ("evidence", "--user", "\udcff"), ("health", "--service", "\udcff")],
)
def test_an_argument_that_is_not_utf8_is_one_line_and_exit_2(tmp_path: Path, args: tuple[str, ...]) -> None:
    """Found by an outside audit: a byte that is not UTF-8 in an id or a service name (`$'\\xff'`) crashed the
    command with a UnicodeEncodeError traceback, exit 1."""
    done = _sesame(*args, env=_bare_env(tmp_path))
    assert (done.returncode, done.stderr) == (2, "sesame: an argument is not UTF-8 text\n")
    assert "Traceback" not in done.stdout
