"""Persisting model state across rounds in Flower's ``Context.state``.

Flower rebuilds a ClientApp's client every round; what must survive goes into the
node's ``Context.state`` (a ``RecordDict``) as ``ArrayRecord`` entries.
"""

from __future__ import annotations

from logging import WARNING

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict
from flwr.common.logger import log
from torch import nn


def save_arrays(state: RecordDict, key: str, arrays: dict[str, np.ndarray]) -> None:
    """Store named numpy arrays under ``key``."""
    state[key] = ArrayRecord(
        array_dict={name: Array(np.ascontiguousarray(a)) for name, a in arrays.items()}
    )


def load_arrays(state: RecordDict, key: str) -> dict[str, np.ndarray] | None:
    """The arrays stored under ``key``, or None if nothing was stored yet."""
    if key not in state:
        return None
    return {name: array.numpy() for name, array in state[key].items()}


def save_module(state: RecordDict, key: str, module: nn.Module) -> None:
    """Store a torch module's ``state_dict`` under ``key``."""
    state[key] = ArrayRecord(torch_state_dict=module.state_dict())


def load_module(state: RecordDict, key: str, module: nn.Module) -> bool:
    """Load the ``state_dict`` stored under ``key`` into ``module``; False if none."""
    if key not in state:
        return False
    module.load_state_dict(state[key].to_torch_state_dict())
    return True


def count_round(state: RecordDict, key: str) -> int:
    """Increment and return the round counter stored under ``key`` (1 on first call):
    how many rounds this node has fitted, as its own state remembers."""
    progress = state.get(key, ConfigRecord({"client_rounds": 0}))
    progress["client_rounds"] = int(progress["client_rounds"]) + 1
    state[key] = progress
    return int(progress["client_rounds"])


def fresh_start(client_rounds: int, server_round: int) -> int:
    """1 if a client fits for the first time by its own state in a round after the
    first (it was not sampled before, or its ``Context.state`` was lost: a SuperNode or
    a resumed run starts without it), else 0; a fresh start is logged. Clients report
    it as the metric ``fresh_start``, so a run says how many clients restarted."""
    fresh = int(client_rounds == 1 and server_round > 1)
    if fresh:
        log(
            WARNING,
            "Round %s: no state from earlier rounds on this node (first time sampled, or "
            "its state was lost); starting from scratch",
            server_round,
        )
    return fresh
