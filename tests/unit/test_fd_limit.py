"""The connection bound a worker takes within its descriptor limit (decision 0055): the soft limit is raised
to the hard one first, and a bound the limit cannot hold is lowered. Each case runs in a child process whose
limits it sets, so that the test process keeps its own."""

from __future__ import annotations

import subprocess
import sys

# The child sets its own limits before it imports anything of ours: a `preexec_fn` runs between fork and
# exec, which is not safe in a test process that runs threads (the child died of SIGABRT in a full run).
PROGRAM = (
    "import resource, sys; "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2]))); "
    "from sesame.server.fd_limit import connection_bound; "
    "print(connection_bound(1000, 100), resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
)


def _bound_under(soft: int, hard: int) -> tuple[int, int]:
    """(the bound, the soft limit after) in a child whose descriptor limits are these."""
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(soft), str(hard)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    bound, after = done.stdout.split()
    return int(bound), int(after)


def test_the_soft_limit_is_raised_to_the_hard_one_and_the_bound_kept() -> None:
    assert _bound_under(1024, 4096) == (1000, 4096)


def test_a_bound_the_descriptors_cannot_hold_is_lowered_to_what_they_leave() -> None:
    assert _bound_under(600, 600) == (600 - 100 - 256, 600)
