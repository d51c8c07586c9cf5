"""The history table of docs/benchmarks.md, from the records under docs/benchmarks/ (oldest first).

python -m bench.history [docs/benchmarks]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

_HEADER = (
    "| run | workers | echo pairs/s | flows/s | flows/echo | skeleton/echo | flows/skeleton "
    "| Start/s | Verify/s "
    "| p99 Start / Verify at half rate | SMS after Start p99 "
    "| Redis B/flow (kept past the hour) | peak RSS/process | other load |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def row(name: str, record: dict[str, Any]) -> str:
    """One line of the table: the summary of one record, and whether the machine was loaded."""
    s, settings = record["summary"], record["settings"]
    half = s["half_rate_p99_ms"]
    kept = f" ({s['redis_kept_bytes_per_flow']} kept)" if "redis_kept_bytes_per_flow" in s else ""
    skeleton = (
        f"{s['skeleton_vs_echo_pct']} % | {s['flows_vs_skeleton_pct']} %"
        if "skeleton_vs_echo_pct" in s
        else "- | -"
    )
    load = f"{s['max_other_busy_cores']} cores" + (" **loaded**" if s["loaded"] else "")
    return (
        f"| [{name}](benchmarks/{name}.json) | {settings['workers'] or 1} | {s['echo_flows_per_s']} "
        f"| {s['flows_per_s']} | {s['flows_vs_echo_pct']} % | {skeleton} "
        f"| {s['start_per_s']} | {s['verify_per_s']} "
        f"| {half['StartChallenge']:.1f} / {half['VerifyChallenge']:.1f} ms "
        f"| {s['sms_after_start_p99_ms']:.1f} ms "
        f"| {s['redis_bytes_per_flow']}{kept} | {s['max_peak_rss_mb_per_server_process']} MB | {load} |"
    )


def table(directory: Path) -> str:
    """Every record in `directory`, by start time."""
    records = [(path.stem, json.loads(path.read_text())) for path in directory.glob("*.json")]
    records.sort(key=lambda item: item[1]["started_at"])
    return "\n".join([_HEADER, *(row(name, record) for name, record in records)])


if __name__ == "__main__":
    print(table(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/benchmarks")))
