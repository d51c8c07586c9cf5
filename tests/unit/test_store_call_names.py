"""Every name the Redis store's funnel reports a call under is in `call_names`, the closed list whose
failures the metrics read 0 from boot (decision 0119): a read named anywhere else would be born at its first
failure, an increase no rate() sees."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from sesame.clients.redis_scripts import call_names

CLIENTS = Path(__file__).resolve().parents[2] / "clients" / "sesame" / "clients"
# A read's name where the funnel is called: `call("name"`, `read_each("name"`, `_read_journal("name"`.
_NAMED = re.compile(r"""\b(?:call|read_each|_read_journal)\(\s*"([a-z_]+)\"""")


def test_every_read_named_in_the_clients_is_a_call_name() -> None:
    named = {name for path in CLIENTS.glob("redis_*.py") for name in _NAMED.findall(path.read_text())}
    assert named, "no read found: the pattern no longer matches the clients"
    assert named <= set(call_names()), named - set(call_names())


def test_the_call_names_are_the_scripts_and_the_reads_once_each() -> None:
    names = call_names()
    scripts = {
        entry.name.removesuffix(".lua")
        for entry in resources.files("sesame.clients").joinpath("lua").iterdir()
        if entry.name.endswith(".lua") and not entry.name.startswith("_")
    }
    assert len(names) == len(set(names))
    assert scripts <= set(names)
    assert len(names) < 100  # bounded: one series per name and worker on /metrics
