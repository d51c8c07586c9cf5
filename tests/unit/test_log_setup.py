"""The log formatter: JSON objects or console text, tracebacks without local variables."""

from __future__ import annotations

import io
import json
import logging

import pytest

from sesame.server.log_setup import configure_logging, formatter
from sesame.server.telemetry_settings import TelemetrySettings


def _fail_holding_a_code() -> None:
    code = "482913"
    raise RuntimeError(f"failed after {len(code)} digits")


def _logged_failure(log_format: str) -> str:
    """What a logged exception looks like, raised in a frame holding a code in a local variable."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter(log_format))
    log = logging.getLogger("sesame.test.log_setup")
    log.addHandler(handler)
    log.propagate = False
    try:
        _fail_holding_a_code()
    except RuntimeError:
        log.exception("rpc failed unexpectedly")
    finally:
        log.removeHandler(handler)
    return out.getvalue()


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_a_traceback_shows_no_local_variable(log_format: str):
    """The traceback names the error and its frames, never the values of their locals."""
    shown = _logged_failure(log_format)
    assert "RuntimeError" in shown
    assert "482913" not in shown


def test_json_is_one_object_per_record():
    """A record with a traceback is still one line, one JSON object with the level and the logger."""
    (line,) = _logged_failure("json").splitlines()
    record = json.loads(line)
    assert (record["level"], record["logger"], record["event"]) == (
        "error",
        "sesame.test.log_setup",
        "rpc failed unexpectedly",
    )
    assert "message" not in record


def test_a_console_line_reads_time_level_logger_message_then_fields():
    """Console text keeps the plain layout (`... WARNING sesame.sms ...`), the call's fields after it."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter("console"))
    log = logging.getLogger("sesame.test.console")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("gateway %s failing", "kannel", extra={"reason": "timeout"})
    finally:
        log.removeHandler(handler)
    (line,) = out.getvalue().splitlines()
    assert line.endswith(" WARNING sesame.test.console gateway kannel failing reason=timeout")


def test_a_program_that_logs_its_own_way_is_left_alone():
    """Run inside a program whose root logger has handlers (here pytest's), nothing is added or changed."""
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    assert before[0]
    assert configure_logging(TelemetrySettings("DEBUG", "json")) is None
    assert (list(root.handlers), root.level) == before


def test_a_configured_process_makes_its_records_without_looking_up_caller_thread_or_process(monkeypatch):
    """Once configured, a record skips the caller, thread and process look-ups no line shows (decision
    0072), and its line still reads time, level, logger, message and fields."""
    root = logging.getLogger()
    for name in ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, name, getattr(logging, name))  # put back after the test
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    out = io.StringIO()
    handler = configure_logging(TelemetrySettings("INFO", "json"), out)
    assert handler is not None
    records: list[logging.LogRecord] = []
    monkeypatch.setattr(root, "handlers", [handler, _Kept(records)])
    logging.getLogger("sesame.sms").info("SMS %s to %s", "console-1", "+33******78", extra={"kind": "code"})
    (record,) = records
    assert (record.funcName, record.lineno, record.thread, record.process) == (
        "(unknown function)",
        0,
        None,
        None,
    )
    line = json.loads(out.getvalue())
    assert line["event"] == "SMS console-1 to +33******78"
    assert (line["level"], line["logger"], line["kind"]) == ("info", "sesame.sms", "code")
    assert "timestamp" in line


class _Kept(logging.Handler):
    """Keeps the records it is given."""

    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self._records = records

    def emit(self, record: logging.LogRecord) -> None:
        self._records.append(record)
