"""`make bench`'s harness, run for about two seconds against a real `sesame serve`: the record is complete.

No speed is asserted (speed is measured by `make bench`, on a quiet machine): only that every field the
docs and the plot read is there, and that its values are possible ones.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import history
from bench.report import table

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
LATENCY = {"count", "rate_per_s", "p50_ms", "p90_ms", "p99_ms", "max_ms"}
PHASE = {
    "ops",
    "failed",
    "seconds",
    "rate_per_s",
    "stopped_by",
    "skipped",
    "rpcs",
    "errors",
    "cpu_seconds",
    "cpu_ms_per_op",
    "run_queue_ms_per_op",
    "processes",
    "usage_seconds",
    "machine_busy_cores",
    "other_busy_cores",
    "client_loop_lag_ms",
    "clients",
}
RPCS = {
    "echo": {"Echo"},
    "skeleton": {"StartChallenge", "VerifyChallenge"},
    "skeleton_verify": {"VerifyChallenge"},
    "skeleton_half": {"StartChallenge", "VerifyChallenge"},
    "start": {"StartChallenge"},
    "verify": {"VerifyChallenge"},
    "flows": {"StartChallenge", "VerifyChallenge", "flow"},
    "flows_half": {"StartChallenge", "VerifyChallenge", "flow"},
}
SESAME_EXTRA = {
    "redis_used_memory_delta_bytes",
    "redis_bytes_per_op",
    "redis_key_bytes_per_op",
    "redis_kept_bytes_per_op",
    "redis_key_bytes_per_op_by_kind",
}
SMS = {"count", "missing", "p50_ms", "p99_ms", "max_ms"}
CLIENTS = 2  # load client processes of the closed-loop phases (decision 0059)
PACED = 2  # and of the paced phase (at most the run's 2 connections)


@pytest.fixture(scope="module", name="out")
def _out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory one short run of the harness wrote its JSON and PNG to."""
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.load",
            "--duration",
            "0.5",
            "--concurrency",
            "4",
            "--connections",
            "2",
            "--users",
            "4",
            "--client-processes",
            str(CLIENTS),
            "--paced-client-processes",
            str(PACED),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        check=False,
        timeout=240,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture(scope="module", name="record")
def _record(out: Path) -> dict[str, Any]:
    (json_file,) = out.glob("*.json")
    (png_file,) = out.glob("*.png")
    assert png_file.stem == json_file.stem
    assert png_file.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    record: dict[str, Any] = json.loads(json_file.read_text())
    return record


def _check_latency(latency: dict[str, Any]) -> None:
    assert set(latency) == LATENCY
    assert latency["count"] > 0
    assert latency["rate_per_s"] > 0
    assert 0 < latency["p50_ms"] <= latency["p90_ms"] <= latency["p99_ms"] <= latency["max_ms"]


def test_every_phase_ran_without_errors(record: dict[str, Any]) -> None:
    """Echo, Start alone, Verify alone and flows each completed operations, none failed."""
    assert set(record["phases"]) == set(RPCS)
    for name, phase in record["phases"].items():
        assert set(phase) >= PHASE, name
        assert phase["ops"] > 0, name
        assert phase["failed"] == 0, name
        assert phase["errors"] == {}, name
        assert phase["rate_per_s"] > 0, name
        assert set(phase["rpcs"]) == RPCS[name], name
        for latency in phase["rpcs"].values():
            _check_latency(latency)


def test_each_rpc_is_timed_once_per_operation(record: dict[str, Any]) -> None:
    """A flow times one Start and one Verify; an echo operation two echo calls."""
    flows, echo, skeleton = (record["phases"][name] for name in ("flows", "echo", "skeleton"))
    assert flows["rpcs"]["StartChallenge"]["count"] == flows["ops"]
    assert flows["rpcs"]["VerifyChallenge"]["count"] == flows["ops"]
    assert echo["rpcs"]["Echo"]["count"] == 2 * echo["ops"]
    assert skeleton["rpcs"]["StartChallenge"]["count"] == skeleton["rpcs"]["VerifyChallenge"]["count"]
    assert skeleton["rpcs"]["VerifyChallenge"]["count"] == skeleton["ops"]
    assert (
        record["phases"]["skeleton_verify"]["rpcs"]["VerifyChallenge"]["count"]
        == (record["phases"]["skeleton_verify"]["ops"])
    )
    assert record["phases"]["verify"]["ops"] <= record["phases"]["start"]["ops"]


def test_cpu_and_memory_are_read_per_process(record: dict[str, Any]) -> None:
    """Server, Redis and client spent CPU in every Sésame phase; every process has a resident size."""
    assert record["phases"]["echo"]["cpu_seconds"]["echo"] > 0
    # The skeleton's workers worked, beside a Redis of their own (read with them, whatever it spent in 0.5 s).
    skeleton = record["phases"]["skeleton"]
    assert skeleton["cpu_seconds"]["skeleton"] > 0
    assert {"skeleton", "redis", "client"} <= {p["role"] for p in skeleton["processes"]}
    for name in ("start", "verify", "flows", "flows_half"):
        phase = record["phases"][name]
        assert {"server", "redis", "client"} <= set(phase["cpu_seconds"])
        assert phase["cpu_seconds"]["server"] > 0
        assert phase["cpu_seconds"]["client"] > 0
        assert phase["cpu_ms_per_op"]["server"] > 0
        roles = [p["role"] for p in phase["processes"]]
        assert roles.count("redis") == 1
        assert roles.count("client") == CLIENTS + PACED + 1  # the client processes and the bench's own
        assert roles.count("server") >= 1
        for process in phase["processes"]:
            assert 0 < process["rss_mb"] <= process["peak_rss_mb"]
            assert process["run_queue_seconds"] >= 0
        # The time each role waited for a core, per operation, beside its CPU (the tail's share).
        assert set(phase["run_queue_ms_per_op"]) == set(phase["cpu_seconds"])
    waiting = next(line for line in table(record).splitlines() if line.startswith("waiting for a core"))
    shown = next(part for part in waiting.split(": ", 1)[1].split("; ") if part.startswith("flows "))
    for role, ms in record["phases"]["flows"]["run_queue_ms_per_op"].items():
        assert f" {role} {ms:g}" in shown
        assert 0 <= phase["other_busy_cores"] <= phase["machine_busy_cores"] + 0.01


def test_sms_delay_and_redis_memory_are_reported(record: dict[str, Any]) -> None:
    """Every started challenge's SMS was seen and timed; Redis grew by some bytes per flow."""
    for name in ("start", "flows", "flows_half"):
        phase = record["phases"][name]
        assert set(phase) >= SESAME_EXTRA
        sms = phase["sms_after_start_ms"]
        assert set(sms) == SMS
        assert sms["missing"] == 0
        assert sms["count"] == phase["ops"]
        assert sms["p50_ms"] <= sms["p99_ms"] <= sms["max_ms"]
    # A challenge and its journal stay in Redis for the retention window: a flow leaves something behind.
    flows = record["phases"]["flows"]
    assert flows["redis_bytes_per_op"] > 0
    # Counted key by key too (bench.redis_census): the challenge hash is kept past the hour, the global
    # budget's units (a one-minute window) are not.
    assert 0 < flows["redis_kept_bytes_per_op"] <= flows["redis_key_bytes_per_op"]
    kinds = flows["redis_key_bytes_per_op_by_kind"]
    assert kinds["sesame:{}:ch:<id>"] > 0
    assert kinds["~sesame:{}:global:all"] > 0


def test_connections_are_placed_evenly_and_the_server_loop_lag_is_read(record: dict[str, Any]) -> None:
    """Each phase says how many connections each server worker took (bench.spread): all of them, no worker
    more than one above another; and the Sésame phases how late the server's loop ran its ticks."""
    workers = record["settings"]["workers"] or 1
    for name, phase in record["phases"].items():
        placed = phase["connections_per_process"]
        assert sum(placed) == record["settings"]["connections"], name
        assert len(placed) == min(workers, record["settings"]["connections"]), name
        assert max(placed) - min(placed) <= 1, name
        if name != "echo" and not name.startswith("skeleton"):  # Sésame's metrics tell its loop's lag
            lag = phase["server_loop_lag"]
            assert lag["ticks"] > 0, name
            assert 0 <= lag["over_50ms_pct"] <= lag["over_25ms_pct"] <= lag["over_10ms_pct"] <= 100, name
            # What Redis's persistence did meanwhile (a rewrite's fork and child stall a small machine).
            kept = phase["redis_costs"]["persistence"]
            assert kept["aof_rewrites"] <= kept["forks"] + 1, name
            assert kept["aof_delayed_fsyncs"] >= 0, name
            assert (kept["last_fork_ms"] > 0) == (kept["forks"] > 0), name


def test_machine_settings_and_summary_describe_the_run(record: dict[str, Any]) -> None:
    """The record names the machine, the commit, the settings and the summary the docs quote."""
    assert record["schema"] == "sesame-bench/1"
    assert record["commit"]
    machine = record["machine"]
    assert machine["cores"] >= 1
    assert machine["cpu_model"]
    assert machine["python"].startswith("3.")
    assert machine["grpcio"]
    assert len(machine["loadavg_before"]) == 3
    settings = record["settings"]
    assert (settings["concurrency"], settings["connections"], settings["users"]) == (4, 2, 4)
    assert (settings["client_processes"], settings["paced_client_processes"]) == (CLIENTS, PACED)
    assert settings["workers"] is None or settings["workers"] >= 1
    assert settings["workers"] is None or settings["serve_has_workers"]
    assert settings["serve_listeners"] >= 1
    assert settings["echo_workers"] == (settings["workers"] or 1)
    summary = record["summary"]
    assert summary["flows_per_s"] == record["phases"]["flows"]["rate_per_s"]
    assert summary["flows_vs_echo_pct"] > 0
    skeleton = record["phases"]["skeleton"]["rate_per_s"]
    assert summary["skeleton_flows_per_s"] == skeleton
    assert summary["skeleton_vs_echo_pct"] == round(100 * skeleton / summary["echo_flows_per_s"], 1)
    assert summary["flows_vs_skeleton_pct"] == round(100 * summary["flows_per_s"] / skeleton, 1)
    assert summary["skeleton_verify_per_s"] == record["phases"]["skeleton_verify"]["rate_per_s"]
    half = record["phases"]["skeleton_half"]["rpcs"]
    assert summary["skeleton_half_rate_p99_ms"] == {rpc: half[rpc]["p99_ms"] for rpc in RPCS["skeleton_half"]}
    assert summary["max_peak_rss_mb_per_server_process"] > 0
    assert isinstance(summary["loaded"], bool)


def test_every_client_process_ran_its_share_and_the_figures_add_up(record: dict[str, Any]) -> None:
    """Each phase ran in every one of its client processes, the echo floor in those of the flows (decision
    0059): their operations add up to the phase's, each process's loop lag is recorded, and every RPC's count
    is the merged one."""
    for name, phase in record["phases"].items():
        clients = phase["clients"]
        processes = PACED if name == "flows_half" else CLIENTS
        assert len(clients) == processes, name
        assert len({c["pid"] for c in clients}) == processes, name
        client_pids = {p["pid"] for p in phase["processes"] if p["role"] == "client"}
        assert {c["pid"] for c in clients} <= client_pids, name
        assert all(c["ops"] > 0 for c in clients), name
        assert sum(c["ops"] for c in clients) == phase["ops"], name
        assert sum(c["failed"] for c in clients) == phase["failed"], name
        assert phase["rate_per_s"] == pytest.approx(
            sum(c["rate_per_s"] for c in clients), abs=0.1 * processes
        )
        for client in clients:
            lag = client["loop_lag_ms"]
            assert 0 <= lag["p50"] <= lag["p99"] <= lag["max"] <= phase["client_loop_lag_ms"]["max"], name
        assert phase["client_loop_lag_ms"]["max"] == max(c["loop_lag_ms"]["max"] for c in clients), name
    echo = record["phases"]["echo"]
    assert echo["rpcs"]["Echo"]["count"] == 2 * sum(c["ops"] for c in echo["clients"])
    # The echo floor and the flows ran in the same processes (like with like); the paced phase in others.
    closed = {c["pid"] for c in record["phases"]["flows"]["clients"]}
    assert {c["pid"] for c in echo["clients"]} == closed
    assert closed.isdisjoint(c["pid"] for c in record["phases"]["flows_half"]["clients"])


@pytest.mark.parametrize(("closed", "paced"), [("flows", "flows_half"), ("skeleton", "skeleton_half")])
def test_the_paced_phases_run_at_half_the_flow_rate(record: dict[str, Any], closed: str, paced: str) -> None:
    """Each open-loop phase is scheduled at half its closed-loop flow rate, starts no more than that, and is
    run by the paced processes."""
    flows, half = record["phases"][closed], record["phases"][paced]
    assert half["target_rate_per_s"] == round(max(1.0, flows["rate_per_s"] / 2), 1)
    scheduled = half["target_rate_per_s"] * record["settings"]["duration_s"] + 2  # rounding of the rate
    assert half["ops"] + half["failed"] + half["skipped"] <= scheduled
    assert {c["pid"] for c in half["clients"]} == {
        c["pid"] for c in record["phases"]["flows_half"]["clients"]
    }


def test_the_history_table_lists_the_run(out: Path, record: dict[str, Any]) -> None:
    """`python -m bench.history` turns the record into a row of docs/benchmarks.md's table."""
    lines = history.table(out).splitlines()
    assert len(lines) == 3
    assert f"| {record['summary']['flows_per_s']} |" in lines[2]
