"""ProcessGroup stops the processes it started and their descendants, nothing else."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from flower_synth.bench.processes import (
    ProcessesSurvived,
    ProcessGroup,
    family,
    identities,
    still_running,
)

# A parent with a plain child, a child in a session of its own, and an orphan (its
# parent shell exits at once, so it is re-parented away from the tree), then sleeps.
SPAWNER = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
subprocess.Popen(["setsid", "sleep", "301"])
subprocess.Popen(["bash", "-c", "sleep 302 & exit"]).wait()
time.sleep(300)
"""


def test_stop_ends_descendants_but_not_strangers(tmp_path: Path) -> None:
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    group = ProcessGroup()
    try:
        root = group.start([sys.executable, "-c", SPAWNER], tmp_path / "log", env={})
        deadline = time.monotonic() + 300  # generous: the machine may be busy
        while len(family(root.pid)) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        started = identities(family(root.pid))
        assert len(started) == 4  # spawner, its child, the setsid child, the orphan
        group.stop(grace_seconds=5)
        assert not still_running(started)
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


# A parent and a child that both ignore SIGTERM; the child holds a large, touched
# address space, so after SIGKILL it takes a moment to exit.
STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
subprocess.Popen([sys.executable, "-c", '''
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
memory = bytearray(400_000_000)
for offset in range(0, len(memory), 4096):
    memory[offset] = 1
print("ready", flush=True)
time.sleep(300)
'''])
time.sleep(300)
"""


def test_stop_returns_only_when_killed_processes_are_gone(tmp_path: Path) -> None:
    group = ProcessGroup()
    log = tmp_path / "log"
    root = group.start([sys.executable, "-c", STUBBORN], log, env={})
    deadline = time.monotonic() + 300  # generous: the machine may be busy
    while "ready" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    started = identities(family(root.pid))
    assert len(started) == 2
    group.stop(grace_seconds=1)
    assert not still_running(started)


def test_stop_says_so_when_a_process_outlives_it(tmp_path: Path) -> None:
    """With no time to wait after SIGKILL, a process that ignored SIGTERM is still
    there: ``stop`` raises and names it instead of returning as if all were gone."""
    group = ProcessGroup()
    log = tmp_path / "log"
    ignore = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(300)"
    )
    root = group.start([sys.executable, "-c", ignore], log, env={})
    deadline = time.monotonic() + 300
    while "ready" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    with pytest.raises(ProcessesSurvived) as survived:
        group.stop(grace_seconds=0.1, kill_seconds=0.0)
    assert root.pid in survived.value.pids
    group.stop(grace_seconds=0.1)  # with time to wait, it is gone
    assert root.poll() is not None  # exited, and reaped by stop
