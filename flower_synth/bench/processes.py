"""Start helper processes and stop exactly those (and what they spawned), by process id.

A SuperLink spawns a SuperExec, which spawns the simulation or ServerApp process,
which starts Ray. Stopping only the SuperLink would leave the rest behind, and
stopping by name would hit processes this program never started. So every process
is started in a session of its own; on stop, its descendants (found through
``/proc``) and the members of its session are signalled by pid. A pid is only a name
until its process ends (a busy machine reuses pids within minutes), so a process is
known by its pid and its start time (:func:`identities`), and nothing whose start time
differs is ever signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # Field 2 (comm) may contain spaces; everything after its closing ')' is regular.
    return text[text.rindex(")") + 2 :].split()


def started_at(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks after boot), or None if there is no
    such live process."""
    fields = _stat_fields(pid)
    return None if fields is None or fields[0] == "Z" else int(fields[19])


def identities(pids: set[int]) -> dict[int, int]:
    """The live processes among ``pids``, as pid -> start time."""
    found = {pid: started_at(pid) for pid in pids}
    return {pid: start for pid, start in found.items() if start is not None}


def still_running(processes: dict[int, int]) -> set[int]:
    """The pids of ``processes`` (from :func:`identities`) whose process still runs:
    the same pid with the same start time, not a later process that reuses the pid."""
    return {pid for pid, start in processes.items() if started_at(pid) == start}


def _all_pids() -> list[int]:
    return [int(entry.name) for entry in PROC.iterdir() if entry.name.isdigit()]


def family(root: int, descendants: bool = True) -> set[int]:
    """``root``, its live descendants, and live members of the session ``root`` leads
    (only the session's members with ``descendants=False``: once ``root`` has exited
    and been reaped, its pid may name another process)."""
    parents: dict[int, int] = {}
    members = {root} if descendants else set()
    for pid in _all_pids():
        fields = _stat_fields(pid)
        if fields is None:
            continue
        parents[pid] = int(fields[1])  # ppid
        if int(fields[3]) == root:  # session id
            members.add(pid)
    frontier = [root] if descendants else []
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in members]
        members.update(children)
        frontier.extend(children)
    return set(identities(members))


class ProcessesSurvived(RuntimeError):
    """Processes of a group outlived SIGKILL for longer than :meth:`ProcessGroup.stop`
    waits."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(f"processes {pids} are still alive after SIGKILL")
        self.pids = pids


class ProcessGroup:
    """Processes this program started; :meth:`stop` ends them and their descendants."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen] = []

    def start(self, command: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen:
        """Start ``command`` in a new session, stdout and stderr going to ``log_path``."""
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                command,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def pids(self) -> set[int]:
        """Every live process this group is responsible for (a started process that has
        exited and been reaped contributes the members of its session only)."""
        return set().union(*(family(p.pid, p.returncode is None) for p in self.processes))

    def stop(self, grace_seconds: float = 10.0, kill_seconds: float = 120.0) -> None:
        """SIGTERM every process of the group, then SIGKILL what is left after the grace.

        Returns once every process of the group is gone: a killed process takes a
        moment to exit (longer with a large address space on a busy machine), and a
        process may spawn another while the group is being stopped, so the group is
        looked up and killed again until nothing of it is left.

        Raises:
            ProcessesSurvived: some process of the group was still alive
                ``kill_seconds`` after the first SIGKILL (its pids are named).
        """
        targets = identities(self.pids())
        for pid in still_running(targets):
            _signal(pid, signal.SIGTERM)
        self._wait_for_exit(targets, grace_seconds)
        self._kill_until_gone(targets, self.pids, kill_seconds)
        for process in self.processes:
            process.wait()
        self.processes.clear()

    def kill(self, process: subprocess.Popen, kill_seconds: float = 120.0) -> None:
        """SIGKILL one process of the group and its descendants at once (a crash, not
        a shutdown); returns when they are gone.

        Raises:
            ProcessesSurvived: some of them outlived ``kill_seconds``.
        """
        self._kill_until_gone(
            identities(family(process.pid)),
            lambda: family(process.pid, process.returncode is None),
            kill_seconds,
        )
        process.wait()
        self.processes.remove(process)

    def _kill_until_gone(
        self, targets: dict[int, int], lookup: Callable[[], set[int]], kill_seconds: float
    ) -> None:
        """SIGKILL ``targets`` and whatever ``lookup`` finds beside them, again and again,
        until none still runs; raise :class:`ProcessesSurvived` after ``kill_seconds``."""
        deadline = time.monotonic() + kill_seconds
        while True:
            targets.update(identities(lookup() - set(targets)))
            alive = still_running(targets)
            if not alive:
                return
            if time.monotonic() > deadline:
                raise ProcessesSurvived(sorted(alive))
            for pid in alive:
                _signal(pid, signal.SIGKILL)
            self._wait_for_exit({pid: targets[pid] for pid in alive}, 0.5)

    def _wait_for_exit(self, processes: dict[int, int], seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and still_running(processes):
            self._reap()
            time.sleep(0.05)

    def _reap(self) -> None:
        for process in self.processes:
            process.poll()


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
