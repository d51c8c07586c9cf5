"""Processes that open the same SoftHSM token at the same instant all get their session (decision 0064).

`sesame serve` starts its workers together, and each logs in to the one token. SoftHSM, reading its token
directory while another process logs in, may find no token (NoSuchToken) or one whose user PIN is not
initialised (UserPinNotInitialized): before the fix, a quarter of such openings failed, and a worker that
cannot open the HSM stops the whole `sesame serve` at boot. Each opening runs in its own process, released
at once by a barrier, rounds after rounds.
"""

from __future__ import annotations

import multiprocessing
import os
from multiprocessing.synchronize import Barrier
from pathlib import Path
from queue import Queue

import pytest

from sesame.hsm.keys import init_keys
from sesame.hsm.pkcs11 import Pkcs11Config
from sesame.hsm.softhsm import bootstrap_token

pytestmark = pytest.mark.integration

PROCESSES = 6
ROUNDS = 5


def _open(config: Pkcs11Config, directory: Path, barrier: Barrier, answers: Queue[str]) -> None:
    from sesame.hsm.session import acquire_token
    from sesame.hsm.worker import hsm_worker

    os.environ["SOFTHSM2_CONF"] = str(directory / "softhsm2.conf")  # as `sesame serve` gives its workers
    worker = hsm_worker(config.module)
    barrier.wait()
    try:
        worker.run(lambda: acquire_token(worker, config.token_label, config.pin))
    except Exception as exc:
        answers.put(f"{type(exc).__name__}: {exc}")
    else:
        answers.put("open")


def _bootstrap(directory: Path, answers: Queue[Pkcs11Config]) -> None:
    """The token and its keys, made in a process of its own: one process serves one token directory, and
    pytest's may already serve the session's."""
    config = bootstrap_token(directory, label="race", pin="race-pin")
    init_keys(config)
    answers.put(config)


def test_workers_opening_one_token_together_all_get_a_session(tmp_path: Path) -> None:
    spawn = multiprocessing.get_context("spawn")
    made = spawn.Queue()
    maker = spawn.Process(target=_bootstrap, args=(tmp_path, made))
    maker.start()
    config = made.get(timeout=60)
    maker.join(timeout=60)
    answers: list[str] = []
    for _ in range(ROUNDS):
        barrier, queue = spawn.Barrier(PROCESSES), spawn.Queue()
        opening = (config, tmp_path, barrier, queue)
        processes = [spawn.Process(target=_open, args=opening) for _ in range(PROCESSES)]
        for process in processes:
            process.start()
        answers += [queue.get(timeout=60) for _ in processes]
        for process in processes:
            process.join(timeout=60)
    assert [a for a in answers if a != "open"] == []
    assert len(answers) == PROCESSES * ROUNDS
