"""`sesame serve` given hostile settings refuses to boot, at once, naming the setting, with no traceback
(decision 0084). Before: a port written in superscript digits (`str.isdigit` is true, `int` refuses it)
raised a ValueError through the boot; a secret, TLS, policy or rules file that is a FIFO held the boot for
ever, printing nothing; a PIN file that is not UTF-8 raised a UnicodeDecodeError."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.serve_process import free_port, run_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

HSM = {"SESAME_PKCS11_MODULE": "/usr/lib/softhsm/libsofthsm2.so", "SESAME_HSM_TOKEN": "sesame"}


def _refused(tmp_path: Path, settings: dict[str, str], setting: str) -> str:
    """Run the boot (30 s at most): it must exit non-zero, name `setting`, print no traceback."""
    result = run_serve(tmp_path / "var", settings, timeout=30)
    assert result.returncode == 2, result.stdout[-2000:]
    assert setting in result.stdout
    assert "Traceback" not in result.stdout
    return result.stdout


@pytest.mark.parametrize("setting", ["SESAME_GRPC_ADDR", "SESAME_METRICS_ADDR", "SESAME_HEALTH_ADDR"])
@pytest.mark.parametrize("port", ["\u00b2", "\u00b9\u00b2", "\u0669\u0660\u0660\u0660"])
def test_a_port_in_other_digits_than_ascii_is_a_settings_error(
    tmp_path: Path, setting: str, port: str
) -> None:
    """Superscript or Arabic-Indic digits in a port: `must be host:port`, naming the setting."""
    output = _refused(tmp_path, {setting: f"127.0.0.1:{port}"}, setting)
    assert f"{setting} must be host:port" in output


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("SESAME_GRPC_ADDR", "\u00b2:50051"),
        ("SESAME_GRPC_ADDR", "::1:50051"),
        ("SESAME_METRICS_ADDR", "[localhost]:9464"),
        ("SESAME_HEALTH_ADDR", "b\u00fccher.example:8081"),
        ("SESAME_OTLP_ENDPOINT", "http://\u00b2"),
        ("SESAME_OTLP_ENDPOINT", "http://-collector:4317"),
    ],
)
def test_a_host_that_is_no_host_name_or_address_is_a_settings_error(
    tmp_path: Path, setting: str, value: str
) -> None:
    """A host in other characters than a host name's, or a bare IPv6 address before a port: refused at boot
    naming the setting (`http://²` was accepted and exported to a host no resolver knows)."""
    _refused(tmp_path, {setting: value}, setting)


def test_an_integer_in_other_digits_than_ascii_is_a_settings_error(tmp_path: Path) -> None:
    """`٣٠٠` for a number of seconds: refused as not an integer, not read as 300."""
    output = _refused(tmp_path, {"SESAME_CODE_TTL_SECONDS": "\u0663\u0660\u0660"}, "SESAME_CODE_TTL_SECONDS")
    assert "SESAME_CODE_TTL_SECONDS must be an integer" in output


@pytest.mark.parametrize(
    "setting", ["SESAME_CHALLENGE_RETENTION_SECONDS", "SESAME_CODE_TTL_SECONDS", "SESAME_LOCKOUT_MAX_SECONDS"]
)
def test_an_integer_far_past_its_range_is_a_settings_error(tmp_path: Path, setting: str) -> None:
    """`99999999999999999999` seconds: refused naming the range (the retention's overflowed the timedelta
    made from it first: an OverflowError's traceback, an outside audit's)."""
    output = _refused(tmp_path, {setting: "9" * 20}, setting)
    assert f"{setting} must be between" in output


@pytest.mark.parametrize(
    "setting",
    ["SESAME_HSM_PIN_FILE", "SESAME_TLS_CERT_FILE", "SESAME_AUTHZ_POLICY_FILE", "SESAME_RISK_RULES_FILE"],
)
def test_a_settings_file_that_is_a_fifo_is_refused_without_waiting(tmp_path: Path, setting: str) -> None:
    """A FIFO nobody writes to, as a file setting: `cannot be read (not a regular file)` within the limit."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    settings = {setting: str(fifo)}
    if setting == "SESAME_HSM_PIN_FILE":
        settings |= HSM
    if setting == "SESAME_TLS_CERT_FILE":
        settings["SESAME_TLS_KEY_FILE"] = str(fifo)
    output = _refused(tmp_path, settings, setting)
    assert f"{setting} cannot be read (not a regular file)" in output


def test_a_pin_file_that_is_not_text_is_refused_without_echoing_it(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 in the PIN file: a settings error that prints none of them."""
    pin = tmp_path / "pin"
    pin.write_bytes(b"\xff\xfe1234-secret-pin")
    output = _refused(tmp_path, {"SESAME_HSM_PIN_FILE": str(pin), **HSM}, "SESAME_HSM_PIN_FILE")
    assert "SESAME_HSM_PIN_FILE is not UTF-8 text" in output
    assert "secret-pin" not in output


def test_a_pin_file_that_is_a_device_is_refused_unread(tmp_path: Path) -> None:
    """A device that never ends (/dev/zero) as the PIN file: refused as not a regular file, at once."""
    output = _refused(tmp_path, {"SESAME_HSM_PIN_FILE": "/dev/zero", **HSM}, "SESAME_HSM_PIN_FILE")
    assert "SESAME_HSM_PIN_FILE cannot be read (not a regular file)" in output


def test_a_settings_file_beyond_the_size_limit_is_refused(tmp_path: Path) -> None:
    """A policy file larger than FILE_LIMIT: `cannot be read (more than ... bytes)`, not parsed."""
    from sesame.server.env_reader import FILE_LIMIT  # here: the rest runs on an older tree

    policy = tmp_path / "policy.yaml"
    policy.write_bytes(b"#" * (FILE_LIMIT + 1))
    output = _refused(tmp_path, {"SESAME_AUTHZ_POLICY_FILE": str(policy)}, "SESAME_AUTHZ_POLICY_FILE")
    assert f"SESAME_AUTHZ_POLICY_FILE cannot be read (more than {FILE_LIMIT} bytes)" in output


@pytest.mark.parametrize(
    "url",
    [
        "redis://:hunter2-secret@127.0.0.1:\u00b2/0",
        "redis://:hunter2-secret@127.0.0.1:99999/0",
        "redis://:hunter2-secret@127.0.0.1:6379/0?socket_timeout=soon",
        # An option redis-py does not take: a traceback at the first command (an outside audit).
        "redis://:hunter2-secret@127.0.0.1:6379/0?sockettimeout=2",
        "redis://:hunter2-secret@127.0.0.1:6379/0?ssl_cert_reqs=none",
        # Options Sésame sets itself, or that change what the client answers (an audit: a traceback, or
        # health down for good).
        "redis://:hunter2-secret@127.0.0.1:6379/0?max_connections=1",
        "redis://:hunter2-secret@127.0.0.1:6379/0?decode_responses=true",
        "redis://:hunter2-secret@127.0.0.1:6379/0?protocol=4",
        "redis://:hunter2-secret@127.0.0.1:6379/0?socket_timeout=600",  # held a boot 10 min on a hung Redis
        "redis://:hunter2-secret@127.0.0.1:6379/0?retry=1",
        # Any option off the allow-list: these failed at the first command (an outside audit's leftover).
        "redis://:hunter2-secret@127.0.0.1:6379/0?redis_connect_func=x",
        "redis://:hunter2-secret@127.0.0.1:6379/0?event_dispatcher=x",
        # A password with an unescaped `?`: the parser's message quoted the piece read as the port.
        "redis://:hunter2?secret@127.0.0.1:6379/0",
        # With an unescaped `#`: the username and the password's start were read as the host, and quoted.
        "redis://hunter2:hunter2#s3cret@127.0.0.1:6379/0",
        "redis+cluster://hunter2:hunter2#s3cret@127.0.0.1:6379",
        "redis+cluster://:hunter2-secret@127.0.0.1:\u00b2",
    ],
)
def test_a_redis_url_redis_py_cannot_parse_is_a_settings_error_without_its_password(
    tmp_path: Path, url: str
) -> None:
    """A port not a number or out of range, an option of the wrong type: refused naming SESAME_REDIS_URL,
    with neither a traceback nor the password."""
    output = _refused(tmp_path, {"SESAME_REDIS_URL": url}, "SESAME_REDIS_URL")
    assert "hunter2" not in output


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("redis://:hunter2-secret@127.0.0.1:{port}/0", "127.0.0.1:{port}"),
        ("redis+cluster://sesame:hunter2-secret@127.0.0.1:{port}", "127.0.0.1:{port}"),
    ],
)
def test_a_redis_url_where_nothing_answers_names_the_setting_and_the_address(
    tmp_path: Path, url: str, named: str
) -> None:
    """SESAME_REDIS_URL pointing where no Redis listens: the boot ended with `sesame: ConnectionError` (or
    `RedisClusterException`), naming neither the setting nor the address. It names both, without the
    password."""
    port = free_port()
    output = _refused(tmp_path, {"SESAME_REDIS_URL": url.format(port=port)}, "SESAME_REDIS_URL")
    assert output.splitlines()[-1].startswith(
        f"sesame: Redis at {named.format(port=port)} (SESAME_REDIS_URL) unavailable: "
    )
    assert "hunter2" not in output


def test_a_console_sms_file_that_is_a_fifo_fails_the_boot_at_once(tmp_path: Path) -> None:
    """SESAME_SMS_CONSOLE_FILE naming a FIFO nobody reads: the worker's start fails, saying the file cannot be
    written, instead of holding the boot for ever on the open."""
    fifo = tmp_path / "sms-fifo"
    os.mkfifo(fifo)
    result = run_serve(tmp_path / "var", {"SESAME_SMS_CONSOLE_FILE": str(fifo)}, timeout=30)
    assert result.returncode == 2, result.stdout[-2000:]
    assert f"console SMS file {fifo} cannot be written" in result.stdout
    assert "Traceback" not in result.stdout


def test_a_journal_archive_dir_that_is_a_file_is_a_settings_error(tmp_path: Path) -> None:
    """A regular file where the archive's directory should be: refused at boot, naming the setting (it booted,
    and every block's write then failed with a WARNING, until the journal-not-sealed alert)."""
    there = tmp_path / "archive"
    there.write_text("not a directory\n")
    output = _refused(tmp_path, {"SESAME_JOURNAL_ARCHIVE_DIR": str(there)}, "SESAME_JOURNAL_ARCHIVE_DIR")
    assert "SESAME_JOURNAL_ARCHIVE_DIR must be a directory" in output
    assert there.read_text() == "not a directory\n"


def test_a_grpc_address_without_a_port_is_its_one_problem(tmp_path: Path) -> None:
    """`SESAME_GRPC_ADDR=nohost`: one line, `must be host:port`; not also 'nohost may be reached from other
    hosts', which sent the operator after a caller policy for what is a typing error."""
    output = _refused(tmp_path, {"SESAME_GRPC_ADDR": "nohost"}, "SESAME_GRPC_ADDR")
    problems = [line for line in output.splitlines() if line.startswith("  - ")]
    assert problems == ["  - SESAME_GRPC_ADDR must be host:port (an IPv6 address in brackets), not 'nohost'"]


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"not an ELF file, and long enough to be read as one\n" * 4, "invalid ELF header"),
        (None, "undefined symbol: C_GetFunctionList"),
    ],
)
def test_a_module_that_is_no_pkcs11_library_is_refused_naming_the_setting(
    tmp_path: Path, content: bytes | None, why: str
) -> None:
    """SESAME_PKCS11_MODULE naming a file that is no library, or a library that is no PKCS#11 module (found
    from outside): the boot stops naming the setting and why the module did not load. Before: `HSM call
    failed: PKCS11Error`, after a WARNING `HSM session lost (PKCS11Error); reconnecting` and an ERROR."""
    module = tmp_path / "module.so"
    if content is None:  # a real shared library without C_GetFunctionList
        libc = next(Path("/lib").glob("*-linux-gnu/libc.so.6"))
        module.write_bytes(libc.read_bytes())
    else:
        module.write_bytes(content)
    pin = tmp_path / "pin"
    pin.write_text("1234\n")
    settings = {**HSM, "SESAME_PKCS11_MODULE": str(module), "SESAME_HSM_PIN_FILE": str(pin)}
    output = _refused(tmp_path, settings, "SESAME_PKCS11_MODULE")
    assert f"the PKCS#11 module {module} (SESAME_PKCS11_MODULE) could not be loaded: " in output
    assert why in output
    assert "session lost" not in output
    assert "1234" not in output


@pytest.mark.parametrize("blank", ["", " ", "\t"])
def test_a_blank_environment_is_refused_not_read_as_development(tmp_path: Path, blank: str) -> None:
    """Found by an outside audit: `SESAME_ENV: ""` in a ConfigMap, over the image's `production`, booted in
    development (every caller may call every RPC, only a warning). Set but blank is refused."""
    output = _refused(tmp_path, {"SESAME_ENV": blank}, "SESAME_ENV")
    assert "SESAME_ENV is set but blank: say one of development, production" in output


def test_a_setting_that_is_not_utf8_is_refused_by_name(tmp_path: Path) -> None:
    """Found by an outside audit: `SESAME_BANK_NAME=$'\\xff'` crashed the boot with a UnicodeEncodeError
    traceback (exit 1) where the name is written into the SMS segments. Refused by name, exit 2."""
    output = _refused(tmp_path, {"SESAME_BANK_NAME": os.fsdecode(b"Ma\xffBanque")}, "SESAME_BANK_NAME")
    assert "SESAME_BANK_NAME is not UTF-8 text" in output


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        (
            {"SESAME_GRPC_ADDR": "127.0.0.1:{p}", "SESAME_METRICS_ADDR": "127.0.0.1:{p}"},
            "SESAME_METRICS_ADDR",
        ),
        ({"SESAME_GRPC_ADDR": "127.0.0.1:{p}", "SESAME_HEALTH_ADDR": "0.0.0.0:{p}"}, "SESAME_HEALTH_ADDR"),
        # The same interface and port written otherwise (a review found them compared as strings).
        (
            {"SESAME_GRPC_ADDR": "127.0.0.1:{p}", "SESAME_METRICS_ADDR": "localhost:{p}"},
            "SESAME_METRICS_ADDR",
        ),
        ({"SESAME_GRPC_ADDR": "127.0.0.1:{p}", "SESAME_HEALTH_ADDR": "127.0.0.1:0{p}"}, "SESAME_HEALTH_ADDR"),
        ({"SESAME_GRPC_ADDR": "127.0.0.1:{p}", "SESAME_METRICS_ADDR": "0:{p}"}, "SESAME_METRICS_ADDR"),
        (
            {"SESAME_GRPC_ADDR": "[::ffff:127.0.0.1]:{p}", "SESAME_HEALTH_ADDR": "127.0.0.1:{p}"},
            "SESAME_HEALTH_ADDR",
        ),
        ({"SESAME_GRPC_ADDR": "127.0.0.1:{p}", "SESAME_HEALTH_ADDR": "[::0]:{p}"}, "SESAME_HEALTH_ADDR"),
    ],
)
def test_two_listeners_on_one_port_are_a_settings_error(
    tmp_path: Path, settings: dict[str, str], said: str
) -> None:
    """Found by an outside audit: SESAME_METRICS_ADDR on the gRPC port booted the workers, which failed to
    bind and blamed SESAME_GRPC_ADDR. Refused at once, naming both."""
    port = free_port()
    output = _refused(tmp_path, {k: v.format(p=port) for k, v in settings.items()}, said)
    assert f"SESAME_GRPC_ADDR and {said} name the same port {port}" in output


@pytest.mark.parametrize(
    ("redis_url", "said"),
    [
        ("redis://10.9.9.9:6379/2", "redis://, not rediss://"),
        # Where the client connects, not the URL's look; TLS that checks nothing (both booted: an audit).
        ("redis://:pw@/2?host=10.9.9.9", "redis://, not rediss://"),
        (
            "rediss://10.9.9.9/2?ssl_cert_reqs=none",
            "rediss:// without checking the server's certificate and name",
        ),
    ],
)
def test_production_names_the_links_in_clear(tmp_path: Path, redis_url: str, said: str) -> None:
    """Found by an outside audit: `sesame serve` in production with Redis and Kannel reached in clear on
    other hosts listed only the HSM, TLS and policy problems. The links in clear are named too (RTS Art.
    22(1): the code confidential in all phases)."""
    settings = {
        "SESAME_ENV": "production",
        "SESAME_REDIS_URL": redis_url,
        "SESAME_SMS_PROVIDERS": "kannel",
        "SESAME_KANNEL_URL": "http://10.1.2.3:13013",
        "SESAME_KANNEL_USERNAME": "sesame",
        "SESAME_KANNEL_PASSWORD": "pa55word",
        "SESAME_DLR_ADDR": "off",
    }
    output = _refused(tmp_path, settings, "SESAME_PRIVATE_NETWORK")
    assert f"SESAME_REDIS_URL ({said}), SESAME_KANNEL_URL (http://, not https://)" in output
    assert "pw@" not in output
