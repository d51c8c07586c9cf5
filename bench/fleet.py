"""The load client processes of one bench run (`bench.client_process`), started once and told what to do.

Every phase, the echo floor's included, is run by the same processes with the same shares of concurrency
and connections, so that `flows / echo` compares like with like (decision 0059).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from typing import Any

from bench.merge import shares
from bench.procs import Process

START_MARGIN = 0.1  # seconds between telling the processes to start a phase and its start, for all at once


class Fleet:
    """`count` client processes, each answering one command at a time over its pipes."""

    def __init__(self, children: list[asyncio.subprocess.Process]) -> None:
        """Use `start`."""
        self._children = children

    @staticmethod
    async def start(count: int) -> Fleet:
        """Start `count` client processes (this interpreter, `python -m bench.client_process`)."""
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.client_process",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=1 << 26,  # a phase's answer holds every latency it measured
            )
            for _ in range(count)
        ]
        return Fleet(children)

    def __len__(self) -> int:
        """How many client processes."""
        return len(self._children)

    def processes(self) -> list[Process]:
        """The client processes, for their CPU and memory."""
        return [Process(child.pid, "client") for child in self._children]

    def split(self, total: int) -> list[int]:
        """`total` (concurrency, connections, users, operations) shared out between the processes."""
        return shares(total, len(self._children))

    async def ask(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send each process its command, at once; their answers, in the processes' order."""
        for child, command in zip(self._children, commands, strict=True):
            assert child.stdin is not None
            child.stdin.write(json.dumps(command).encode() + b"\n")
        await asyncio.gather(*(child.stdin.drain() for child in self._children if child.stdin))
        return list(await asyncio.gather(*(self._answer(child) for child in self._children)))

    async def ask_all(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        """The same command to every process."""
        return await self.ask([command] * len(self._children))

    @staticmethod
    def at() -> float:
        """When a phase told now starts in every process (their shared monotonic clock)."""
        return time.monotonic() + START_MARGIN

    @staticmethod
    async def _answer(child: asyncio.subprocess.Process) -> dict[str, Any]:
        assert child.stdout is not None
        line = await child.stdout.readline()
        if not line:
            raise RuntimeError(f"bench client process {child.pid} ended (exit {await child.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def stop(self) -> None:
        """Tell every process to exit, and wait for it (ended after 10 s)."""
        for child in self._children:
            if child.stdin is not None and child.returncode is None:
                with contextlib.suppress(ConnectionError):  # it ended already (its error is on stderr)
                    child.stdin.write(b'{"do": "exit"}\n')
                    child.stdin.close()
        for child in self._children:
            try:
                await asyncio.wait_for(child.wait(), 10.0)
            except TimeoutError:
                child.kill()
                await child.wait()
