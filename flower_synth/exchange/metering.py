"""Counting what a strategy exchanges and how long its rounds take, for both Flower
APIs: byte counts of legacy ``Parameters`` and of Message-API ``ArrayRecord`` s, and a
round meter that writes every round's figures to a results file.

Sizes are read from the arrays' headers (the ``.npy`` header of a legacy tensor, the
shape and dtype of an ``Array``), never by deserialising the data, so a payload that
does not decode is still counted and cannot crash the count; one whose header does not
parse counts as 0 bytes (it is then rejected by the strategy).
"""

from __future__ import annotations

import io
import math
import time
from logging import INFO
from typing import Any

import numpy as np
from flwr.app import ArrayRecord
from flwr.common import Parameters
from flwr.common.logger import log

from flower_synth.exchange.recorder import RunRecorder
from flower_synth.exchange.server import NPY_HEADER_READERS

ROUND_MARKER = "[flower-synth] "  # prefix of the one-line round summary in the server log


def tensor_nbytes(tensor: bytes) -> int:
    """Array-data bytes of one serialised ``.npy`` tensor: what its header announces,
    at most the bytes that follow the header (0 if the header does not parse)."""
    handle = io.BytesIO(tensor)
    try:
        reader = NPY_HEADER_READERS[np.lib.format.read_magic(handle)]
        shape, _, dtype = reader(handle)
    except (ValueError, OSError, SyntaxError, KeyError, TypeError):
        return 0
    return min(math.prod(shape) * dtype.itemsize, len(tensor) - handle.tell())


def parameters_nbytes(parameters: Parameters) -> int:
    """Bytes of array data in legacy ``parameters`` (headers excluded, so the figure is
    the same whatever the wire format)."""
    return sum(tensor_nbytes(tensor) for tensor in parameters.tensors)


def parameters_serialized_nbytes(parameters: Parameters) -> int:
    """Bytes of legacy ``parameters`` as serialised by Flower (data plus headers)."""
    return sum(len(tensor) for tensor in parameters.tensors)


def arrayrecord_nbytes(record: ArrayRecord | None) -> int:
    """Bytes of array data in an ``ArrayRecord`` (0 for None), read from each array's
    ``.npy`` header, not from the shape it declares."""
    if record is None:
        return 0
    return sum(tensor_nbytes(array.data) for array in record.values())


def arrayrecord_serialized_nbytes(record: ArrayRecord | None) -> int:
    """Bytes of an ``ArrayRecord``'s arrays as serialised by Flower (0 for None)."""
    return 0 if record is None else sum(len(a.data) for a in record.values())


class RoundMeter:
    """Writes every round's figures to ``recorder``, with ``seconds``: wall time from
    :meth:`start` of the round to the latest :meth:`record` of it, and ``phases``:
    where that time went, as laps between the strategy's hooks (e.g. ``train_replies``:
    from the training messages' creation to the replies' arrival, the clients' work and
    the transport; ``aggregate_train``: the server's own work on them)."""

    def __init__(self, recorder: RunRecorder) -> None:
        self.recorder = recorder
        self.started: dict[int, float] = {}
        self.lapped: dict[int, float] = {}
        self.phases: dict[int, dict[str, float]] = {}

    def start(self, server_round: int) -> None:
        """The round begins (its first hook)."""
        self.started[server_round] = self.lapped[server_round] = time.perf_counter()
        self.phases[server_round] = {}

    def lap(self, server_round: int, phase: str) -> None:
        """Add the time since the round's previous lap (or start) to ``phase``."""
        if server_round not in self.lapped:
            return
        now = time.perf_counter()
        phases = self.phases[server_round]
        phases[phase] = phases.get(phase, 0.0) + now - self.lapped[server_round]
        self.lapped[server_round] = now

    def record(self, server_round: int, **values: Any) -> dict[str, Any]:
        """Merge ``values`` into the round's record (with ``seconds`` and ``phases``);
        returns it."""
        started = self.started.get(server_round)
        if started is not None:
            values["seconds"] = time.perf_counter() - started
            values["phases"] = dict(self.phases[server_round])
        return self.recorder.update(server_round, **values)

    def log(self, record: dict[str, Any]) -> None:
        """Log the one-line summary of a round record."""
        log(INFO, "%s%s", ROUND_MARKER, format_round(record))


def format_round(record: dict) -> str:
    """One human-readable line summarising a round record."""

    def pct(key: str) -> str:
        value = record.get(key)
        return "n/a" if value is None else f"{100 * value:.2f}%"

    def megabytes(key: str) -> str:
        return f"{(record.get(key) or 0) / 1e6:.2f} MB"

    return (
        f"round {record['round']}: global acc {pct('global_accuracy')}, personalized acc "
        f"{pct('personalized_accuracy')}, down {megabytes('bytes_down')}, up "
        f"{megabytes('bytes_up')}, {record.get('seconds') or 0:.1f} s"
    )
