"""Peak resident memory of a changing set of processes, sampled in the background."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from types import TracebackType


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` (0 if it is gone), from ``/proc``."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


class PeakRSS:
    """The largest sum of resident memory over the processes ``pids()`` names, sampled
    every ``interval`` seconds while the context is open.

    Pages shared between processes (e.g. Ray's object store) count once per process,
    so the figure is an upper bound of the memory the processes use together.
    """

    def __init__(self, pids: Callable[[], Iterable[int]], interval: float = 0.5) -> None:
        self.pids = pids
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            total = sum(rss_bytes(pid) for pid in set(self.pids()))
            self.peak_bytes = max(self.peak_bytes, total)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
