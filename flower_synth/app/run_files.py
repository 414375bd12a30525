"""Which results file a run of the Flower App writes, and the rules that keep it its own.

* **One run owns a file**: a run holds an exclusive lock (``fcntl.flock`` on
  ``<file>.lock``) on its results file while it runs; the kernel drops it when the
  process ends, so a crashed run's file can be resumed. A new run takes a fresh
  timestamped name, with ``-2``, ``-3`` ... where that name is taken or claimed (two
  runs started in the same second write two files).
* **Resume** (``resume=true``) continues the newest unfinished file of the same settings
  that has a checkpoint and no live owner. ``num-server-rounds`` is not part of "the same
  settings": a resume with more rounds continues from the checkpoint to the new count.
  A file of other settings is left as it is, and the log names the keys that differ; a
  file another run still owns is left to it; a damaged checkpoint is set aside
  (:meth:`~flower_synth.exchange.checkpoint.Checkpoint.readable`). In each case the run
  starts clean in a file of its own.
"""

from __future__ import annotations

import fcntl
import itertools
from logging import WARNING
from pathlib import Path
from typing import IO

from flwr.common.logger import log

from flower_synth.app.config import BOOKKEEPING_KEYS, keys_not_read_by
from flower_synth.app.results_files import load_results, results_file_prefix
from flower_synth.exchange.checkpoint import Checkpoint

RESUMABLE_KEYS = ("num-server-rounds",)  # a resume may change these and continue


class OwnedFile:
    """A run's claim on a results file (see the module docstring); :meth:`release` when
    the run ends."""

    def __init__(self, path: Path, handle: IO[bytes]) -> None:
        self.path = path
        self.handle = handle

    @classmethod
    def claim(cls, path: Path) -> OwnedFile | None:
        """The claim on ``path``, or None if a live run holds it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_of(path), "ab")  # noqa: SIM115 - held for the run's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        return cls(path, handle)

    def release(self) -> None:
        """Give the file up (the lock file goes too)."""
        lock_of(self.path).unlink(missing_ok=True)
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def lock_of(results: Path) -> Path:
    """The lock file beside a results file."""
    return results.with_name(results.name + ".lock")


def checkpoint_of(results: Path) -> Checkpoint:
    """The checkpoint beside a results file (``<name>.checkpoint.npz``)."""
    return Checkpoint(results.with_suffix(".checkpoint.npz"))


def differing_keys(config: dict, other: dict) -> list[str]:
    """The settings in which two results configs differ (``BOOKKEEPING_KEYS``,
    ``RESUMABLE_KEYS`` and the keys ``other``'s strategy never reads aside: a FedAvg
    run continues whatever a synthetic-only key says, or whether it existed)."""
    ignored = {*BOOKKEEPING_KEYS, *RESUMABLE_KEYS}
    if "strategy" in other:
        ignored |= keys_not_read_by(str(other["strategy"]))
    keys = (config.keys() | other.keys()) - ignored
    return sorted(key for key in keys if config.get(key) != other.get(key))


def new_results_file(path: Path) -> OwnedFile:
    """A claim on ``path``, or on ``<stem>-2.json``, ``-3`` ... where it is taken."""
    for count in itertools.count(1):
        candidate = path if count == 1 else path.with_name(f"{path.stem}-{count}{path.suffix}")
        if candidate.exists():
            continue
        owned = OwnedFile.claim(candidate)
        if owned is not None and not candidate.exists():
            return owned
        if owned is not None:
            owned.release()
    raise AssertionError("unreachable")


def resumable_results(directory: Path, names: tuple, config: dict) -> OwnedFile | None:
    """A claim on the newest results file in ``directory`` of a run with these ``names``
    (strategy, dataset, partitioner, seed) and ``config`` that did not finish, left a
    readable checkpoint and has no live owner; None (a fresh run) if there is none."""
    for path in sorted(directory.glob(f"{results_file_prefix(*names)}*.json"), reverse=True):
        try:
            data = load_results(path)
        except ValueError:
            continue
        if data.get("finished") or not checkpoint_of(path).exists():
            continue
        if differences := differing_keys(data["config"], config):
            log(
                WARNING,
                "resume: %s was run with other settings (%s); left as it is",
                path,
                ", ".join(differences),
            )
            continue
        owned = OwnedFile.claim(path)
        if owned is None:
            log(WARNING, "resume: %s belongs to a run still going; left to it", path)
            continue
        if checkpoint_of(path).readable():
            return owned
        owned.release()
    return None
