"""The run's record: a JSON file and a PNG under docs/benchmarks/, and a table on standard output.

The JSON is the source (docs/benchmarks.md quotes it); the plot shows, per phase, the rate, the latency
percentiles of each RPC, and the CPU each process spent per operation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")  # no display: a file, on any machine
import matplotlib.pyplot as plt

PHASES = ("echo", "skeleton", "skeleton_verify", "skeleton_half", "start", "verify", "flows", "flows_half")
ROLES = ("server", "echo", "skeleton", "redis", "client")
_UNITS = {
    "echo": "pairs/s",
    "skeleton": "flows/s",
    "skeleton_verify": "verifies/s",
    "skeleton_half": "flows/s",
    "start": "starts/s",
    "verify": "verifies/s",
    "flows": "flows/s",
    "flows_half": "flows/s",
}
LOADED_CORES = 0.25  # other work above this, on average over a phase, marks its figures as loaded


def summary(phases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The figures the issue's targets name, from the phases."""
    echo, flows, skeleton = phases["echo"], phases["flows"], phases["skeleton"]
    server_rss = [
        p["peak_rss_mb"] for phase in phases.values() for p in phase["processes"] if p["role"] == "server"
    ]
    return {
        "echo_flows_per_s": echo["rate_per_s"],
        "flows_per_s": flows["rate_per_s"],
        "flows_vs_echo_pct": _pct(flows["rate_per_s"], echo["rate_per_s"]),
        "skeleton_flows_per_s": skeleton["rate_per_s"],
        "skeleton_vs_echo_pct": _pct(skeleton["rate_per_s"], echo["rate_per_s"]),
        "flows_vs_skeleton_pct": _pct(flows["rate_per_s"], skeleton["rate_per_s"]),
        "skeleton_verify_per_s": phases["skeleton_verify"]["rate_per_s"],
        "skeleton_half_rate_p99_ms": {
            rpc: phases["skeleton_half"]["rpcs"][rpc]["p99_ms"]
            for rpc in ("StartChallenge", "VerifyChallenge")
        },
        "start_per_s": phases["start"]["rate_per_s"],
        "verify_per_s": phases["verify"]["rate_per_s"],
        "flow_p99_ms": {rpc: flows["rpcs"][rpc]["p99_ms"] for rpc in ("StartChallenge", "VerifyChallenge")},
        "half_rate_p99_ms": {
            rpc: phases["flows_half"]["rpcs"][rpc]["p99_ms"] for rpc in ("StartChallenge", "VerifyChallenge")
        },
        "sms_after_start_p99_ms": flows["sms_after_start_ms"]["p99_ms"],
        "redis_bytes_per_flow": flows["redis_bytes_per_op"],
        "redis_key_bytes_per_flow": flows["redis_key_bytes_per_op"],
        "redis_kept_bytes_per_flow": flows["redis_kept_bytes_per_op"],
        "max_peak_rss_mb_per_server_process": max(server_rss, default=0.0),
        "max_other_busy_cores": max(p["other_busy_cores"] for p in phases.values()),
        "loaded": any(p["other_busy_cores"] > LOADED_CORES for p in phases.values()),
    }


def _pct(part: float, whole: float) -> float:
    return round(100 * part / whole, 1) if whole else 0


def output_paths(directory: Path, date: str, short: str) -> tuple[Path, Path]:
    """`<date>-<commit>.json` and `.png` in `directory`, numbered `-2`, `-3`... if the name is taken."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{date}-{short}"
    n = 1
    while (directory / f"{stem}.json").exists():
        n += 1
        stem = f"{date}-{short}-{n}"
    return directory / f"{stem}.json", directory / f"{stem}.png"


def write_json(record: dict[str, Any], path: Path) -> None:
    """The record, indented, with a final newline."""
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def table(record: dict[str, Any]) -> str:
    """The record as a plain-text table (one line per RPC of each phase, then the summary)."""
    header = (
        f"{'phase':<15} {'rate':>16} {'rpc':<16} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>8} ms  "
        f"{'cpu ms/op: server':>17} {'redis':>6} {'client':>6}  other cores  errors"
    )
    lines = [header]
    for name in PHASES:
        phase = record["phases"][name]
        per_op = phase["cpu_ms_per_op"]
        server = next((per_op[role] for role in ("server", "echo", "skeleton") if role in per_op), 0.0)
        for i, (rpc, lat) in enumerate(phase["rpcs"].items()):
            head = f"{name:<15} {phase['rate_per_s']:>8.1f} {_UNITS[name]:<10}" if i == 0 else " " * 35
            tail = (
                f"  {server:>17.3f} {per_op.get('redis', 0.0):>6.3f} {per_op.get('client', 0.0):>6.3f}"
                f"  {phase['other_busy_cores']:>11.2f}  {phase['failed']}"
                + (f" ({phase['skipped']} arrivals skipped)" if phase["skipped"] else "")
                if i == 0
                else ""
            )
            lines.append(
                f"{head} {rpc:<16} {lat['p50_ms']:>7.2f} {lat['p90_ms']:>7.2f} {lat['p99_ms']:>7.2f} "
                f"{lat['max_ms']:>8.2f}   {tail}"
            )
    lines.append(_client_lags(record["phases"]))
    lines.append(_server_lags(record["phases"]))
    lines.append(_run_queue(record["phases"]))
    lines.append(_persistence(record["phases"]))
    lines.append(_placement(record["phases"]))
    s = record["summary"]
    lines.append(
        f"flows/echo {s['flows_vs_echo_pct']} %; skeleton/echo {s['skeleton_vs_echo_pct']} %, "
        f"flows/skeleton {s['flows_vs_skeleton_pct']} %; "
        f"SMS after Start p99 {s['sms_after_start_p99_ms']} ms; "
        f"Redis per flow {s['redis_bytes_per_flow']} B used_memory, "
        f"{s['redis_key_bytes_per_flow']} B in keys, "
        f"{s['redis_kept_bytes_per_flow']} B kept past the hour; peak RSS per server process "
        f"{s['max_peak_rss_mb_per_server_process']} MB; other load up to {s['max_other_busy_cores']} cores"
        + (" (LOADED machine)" if s["loaded"] else "")
    )
    return "\n".join(lines)


def _client_lags(phases: dict[str, dict[str, Any]]) -> str:
    """Each client process's loop lag p99 / max per phase (decision 0059): one line."""
    shown = [
        f"{name} "
        + " ".join(f"{c['loop_lag_ms']['p99']:g}/{c['loop_lag_ms']['max']:g}" for c in phase["clients"])
        for name, phase in phases.items()
        if phase.get("clients")
    ]
    return "client loop lag p99/max ms per process: " + "; ".join(shown)


def _placement(phases: dict[str, dict[str, Any]]) -> str:
    """How many connections each server worker accepted, per phase (bench.spread): one line."""
    shown = [
        f"{name} {'/'.join(str(n) for n in phase['connections_per_process']) or 'not placed'}"
        for name, phase in phases.items()
        if "connections_per_process" in phase
    ]
    return "connections per server worker: " + "; ".join(shown)


def _server_lags(phases: dict[str, dict[str, Any]]) -> str:
    """The server's loop ticks later than 10 / 25 / 50 ms, in % of its ticks, per phase: one line."""
    shown = [
        f"{name} {lag['over_10ms_pct']:g}/{lag['over_25ms_pct']:g}/{lag['over_50ms_pct']:g}"
        for name, phase in phases.items()
        if (lag := phase.get("server_loop_lag"))
    ]
    return "server loop ticks later than 10/25/50 ms, % of ticks: " + ("; ".join(shown) or "not measured")


def _run_queue(phases: dict[str, dict[str, Any]]) -> str:
    """How long each role's processes waited, runnable, for a core, in ms per operation, per phase: one
    line (the tail of a latency on a machine the client shares; records before it have none)."""
    shown = [
        f"{name} " + " ".join(f"{role} {ms:g}" for role, ms in waited.items())
        for name, phase in phases.items()
        if (waited := phase.get("run_queue_ms_per_op"))
    ]
    return "waiting for a core, ms per op: " + ("; ".join(shown) or "not measured")


def _persistence(phases: dict[str, dict[str, Any]]) -> str:
    """Redis's AOF rewrites (the last fork's ms), its delayed fsyncs, and the AOF's bytes per operation
    when no rewrite ran, per phase: one line."""
    shown = [
        f"{name} {kept['aof_rewrites']} ({kept['last_fork_ms']:g} ms)/{kept['aof_delayed_fsyncs']}"
        f"/{kept['aof_bytes_per_op'] if kept['aof_bytes_per_op'] is not None else '-'}"
        for name, phase in phases.items()
        if (kept := phase.get("redis_costs", {}).get("persistence"))
    ]
    return "Redis AOF rewrites (last fork)/delayed fsyncs/AOF B per op: " + (
        "; ".join(shown) or "not measured"
    )


def _short(phase: str) -> str:
    """A phase's name short enough for a plot's axis."""
    short = {"flows_half": "half", "skeleton": "sk", "skeleton_verify": "sk_v", "skeleton_half": "sk_h"}
    return short.get(phase, phase)


def plot(record: dict[str, Any], path: Path) -> None:
    """Three panels: rate per phase, latency percentiles per RPC (log scale), CPU ms per operation."""
    phases = record["phases"]
    figure, (rates, latency, cpu) = plt.subplots(1, 3, figsize=(16, 5.2))
    names = [_short(name) for name in PHASES]
    rates.bar(
        names,
        [phases[n]["rate_per_s"] for n in PHASES],
        color=["#999", "#bbb", "#bbb", "#bbb", "#4a7", "#47a", "#a74", "#c96"],
    )
    half = phases["echo"]["rate_per_s"] / 2
    rates.axhline(
        half, color="#a33", linestyle="--", linewidth=1, label="half the echo floor (issue 6 target)"
    )
    rates.legend(fontsize=8)
    rates.set_title("operations per second")
    rates.set_ylabel("per second (echo: pairs of calls)")
    labels, rows = [], []
    for name in PHASES:
        for rpc, lat in phases[name]["rpcs"].items():
            labels.append(f"{_short(name)}\n{rpc.replace('Challenge', '')}")
            rows.append([lat["p50_ms"], lat["p90_ms"], lat["p99_ms"], lat["max_ms"]])
    width = 0.2
    for k, label in enumerate(("p50", "p90", "p99", "max")):
        latency.bar(
            [i + (k - 1.5) * width for i in range(len(rows))], [r[k] for r in rows], width, label=label
        )
    latency.set_xticks(range(len(rows)), labels, fontsize=7)
    latency.set_yscale("log")
    latency.set_ylabel("ms")
    latency.set_title("latency per RPC")
    latency.legend(fontsize=8)
    bottom = [0.0] * len(names)
    for role in ROLES:
        values = [phases[n]["cpu_ms_per_op"].get(role, 0.0) for n in PHASES]
        cpu.bar(names, values, bottom=bottom, label=role)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    cpu.set_title("CPU per operation")
    cpu.set_ylabel("ms of CPU")
    cpu.legend(fontsize=8)
    machine, settings = record["machine"], record["settings"]
    figure.suptitle(
        f"Sésame bench {record['started_at'][:16]} {record['commit']}: {machine['cores']} cores "
        f"{machine['cpu_model']}; concurrency {settings['concurrency']} over {settings['connections']} "
        f"connections, serve --workers {settings['workers'] or '(no such option: one process)'}"
        + ("; LOADED machine" if record["summary"]["loaded"] else ""),
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
