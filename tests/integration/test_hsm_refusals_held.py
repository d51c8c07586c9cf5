"""A token that cannot be opened is tried at most once a second, and a refused PIN never again (decisions
0064, 0110), on a real SoftHSM token.

Found from outside: once a session was lost, every call opened it again itself (the hold was set only
after a reconnect): with the PIN changed on the token, one login with the refused PIN per call and per
health round (23 in 14 s on one worker), which locks an HSM that counts failed logins; with the token gone,
40 C_Initialize in 10 s and calls queued until their deadline. Each case runs in a process of its own: one
process serves one token directory.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from queue import Queue

import pytest

from sesame.hsm.softhsm import bootstrap_token

pytestmark = pytest.mark.integration

CALLS = 5


def _opened_per_call(directory: Path, label: str, pin: str, answers: Queue[tuple[int, list[str]]]) -> None:
    """Make a token (PIN `right`), then call a session on `label` with `pin` CALLS times: how often the
    session was opened, and what each call answered."""
    from sesame.hsm.session import TokenSession
    from sesame.hsm.worker import hsm_worker

    config = bootstrap_token(directory, label="held", pin="right-pin")
    worker = hsm_worker(config.module)
    token = TokenSession(worker, label, pin)
    opened = 0
    real_open = token._open

    def counted() -> None:
        nonlocal opened
        opened += 1
        real_open()

    token._open = counted  # type: ignore[method-assign]
    said = []
    for _ in range(CALLS):
        try:
            worker.run(lambda: token.call(lambda live: live.session))
        except Exception as exc:  # the answer is what is checked
            said.append(f"{type(exc).__name__}: {exc}")
        else:
            said.append("open")
    answers.put((opened, said))


def _run(tmp_path: Path, label: str, pin: str) -> tuple[int, list[str]]:
    spawn = multiprocessing.get_context("spawn")
    answers = spawn.Queue()
    process = spawn.Process(target=_opened_per_call, args=(tmp_path, label, pin, answers))
    process.start()
    found = answers.get(timeout=120)
    process.join(timeout=60)
    return found


def test_a_refused_pin_is_tried_once(tmp_path: Path) -> None:
    opened, said = _run(tmp_path, "held", "wrong-pin")
    assert opened == 1
    assert len(said) == CALLS
    assert all(answer.startswith("HsmUnavailable") and "refused the user PIN" in answer for answer in said)


def test_a_token_not_found_is_tried_once_within_the_hold(tmp_path: Path) -> None:
    opened, said = _run(tmp_path, "no-such-label", "right-pin")
    assert opened == 1
    assert all(answer.startswith("HsmUnavailable") and "NoSuchToken" in answer for answer in said)


def test_the_right_pin_opens_once(tmp_path: Path) -> None:
    assert _run(tmp_path, "held", "right-pin") == (1, ["open"] * CALLS)
