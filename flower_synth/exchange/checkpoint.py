"""A run's state after its last completed round, on disk, so that a run whose ServerApp
or SuperLink died can continue where it stopped.

What a component keeps is a :class:`State`: named numpy arrays and a JSON-able
document of everything else (identities, counters, flags). Components nest their
parts' states under a name (:meth:`State.with_part` / :meth:`State.part`), so a whole
strategy's state is one :class:`State`. A :class:`Checkpoint` file (``.npz``) holds one
:class:`Snapshot` (the last completed round and its state); it is written to a
temporary file and renamed over the previous one, so a crash while saving leaves the
last complete checkpoint in place.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from logging import WARNING
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from flwr.common.logger import log

META_KEY = "__meta__"
SEPARATOR = "/"


@dataclass(frozen=True)
class State:
    """Named arrays and a JSON-able ``meta`` document: what a component keeps."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def with_part(self, name: str, part: State) -> State:
        """This state with ``part`` nested under ``name``."""
        arrays = {f"{name}{SEPARATOR}{key}": value for key, value in part.arrays.items()}
        return State(self.arrays | arrays, self.meta | {name: part.meta})

    def part(self, name: str) -> State:
        """The part nested under ``name`` (empty if there is none)."""
        start = f"{name}{SEPARATOR}"
        arrays = {
            key[len(start) :]: value for key, value in self.arrays.items() if key.startswith(start)
        }
        return State(arrays, dict(self.meta.get(name, {})))

    def has_part(self, name: str) -> bool:
        """Whether a part was nested under ``name``."""
        return name in self.meta


@runtime_checkable
class Stateful(Protocol):
    """A component whose state can be saved and restored (a strategy's pools, its
    server classifier, its stored summaries)."""

    def state(self) -> State:
        """Everything needed to continue as if nothing had stopped."""

    def load_state(self, state: State) -> None:
        """Continue from what :meth:`state` returned."""


@dataclass(frozen=True)
class Snapshot:
    """What a checkpoint holds: the last completed round and the state after it."""

    server_round: int
    state: State = field(default_factory=State)


class Checkpoint:
    """The checkpoint file at ``path`` (``<results file>.checkpoint.npz`` in the app)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def exists(self) -> bool:
        """Whether a checkpoint was saved."""
        return self.path.is_file()

    def save(self, snapshot: Snapshot) -> None:
        """Write ``snapshot`` atomically (temporary file, then rename)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        meta = json.dumps({"server_round": snapshot.server_round, "state": snapshot.state.meta})
        arrays = snapshot.state.arrays | {META_KEY: np.frombuffer(meta.encode(), np.uint8)}
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(temporary, self.path)

    def load(self) -> Snapshot:
        """The saved snapshot.

        Raises:
            FileNotFoundError: no checkpoint was saved.
            ValueError: the file is not a checkpoint.
        """
        with np.load(self.path, allow_pickle=False) as archive:
            if META_KEY not in archive:
                raise ValueError(f"{self.path} is not a flower-synth checkpoint")
            meta = json.loads(archive[META_KEY].tobytes().decode())
            arrays = {name: archive[name] for name in archive.files if name != META_KEY}
        return Snapshot(int(meta["server_round"]), State(arrays, meta["state"]))

    def readable(self) -> bool:
        """Whether the checkpoint loads (:meth:`load_or_set_aside`)."""
        return self.load_or_set_aside() is not None

    def load_or_set_aside(self) -> Snapshot | None:
        """The saved snapshot, or None for a damaged one (truncated, empty, not a
        checkpoint), which is reported in the log and set aside as ``<name>.damaged``,
        so that no retry trips over it again."""
        try:
            return self.load()
        except Exception as error:  # noqa: BLE001 - zip, npy, JSON and key errors alike
            aside = self.path.with_name(self.path.name + ".damaged")
            os.replace(self.path, aside)
            log(
                WARNING,
                "The checkpoint %s is damaged (%s: %s); set aside as %s, the run starts clean",
                self.path,
                type(error).__name__,
                error,
                aside,
            )
            return None

    def remove(self) -> None:
        """Delete the checkpoint (a finished run needs none)."""
        self.path.unlink(missing_ok=True)


class ExchangeState:
    """Mixin of the two API adapters of an exchange: the strategy's state is its
    exchange's (so the adapter is :class:`Stateful`)."""

    exchange: Stateful

    def state(self) -> State:
        """The exchange's state."""
        return self.exchange.state()

    def load_state(self, state: State) -> None:
        """Continue from :meth:`state`."""
        self.exchange.load_state(state)
