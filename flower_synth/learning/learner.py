"""The client side of every strategy, free of Flower's APIs.

A :class:`Learner` is one client's algorithm: it learns from what the server sent (a
list of numpy arrays and a plain config) and returns what goes back, and it evaluates
its model. The legacy ``NumPyClient`` (:class:`flower_synth.clients.LearnerClient`) and
the Message-API handlers (:mod:`flower_synth.clientapp`) are thin adapters over it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from flwr.common import Scalar


@dataclass(frozen=True)
class Fitted:
    """What a client returns from training: arrays, training-set size, metrics."""

    arrays: list[np.ndarray]
    num_examples: int
    metrics: dict[str, Scalar] = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluated:
    """What a client returns from evaluation: loss, test-set size (0: it did not
    evaluate, e.g. before its first fit), metrics."""

    loss: float
    num_examples: int
    metrics: dict[str, Scalar] = field(default_factory=dict)


class Learner(Protocol):
    """One client's algorithm (see the module docstring)."""

    def fit(self, arrays: list[np.ndarray], config: Mapping[str, Scalar]) -> Fitted:
        """Learn from the received ``arrays`` and ``config``; return what goes back."""

    def evaluate(self, arrays: list[np.ndarray], config: Mapping[str, Scalar]) -> Evaluated:
        """Evaluate the client's model (on the received ``arrays`` where a strategy
        sends a global model)."""


def check_partition_id(partition_id: object) -> int:
    """``partition_id`` as an int >= 0, or a ``ValueError`` saying where to take it from."""
    if isinstance(partition_id, bool) or not isinstance(partition_id, (int, np.integer)):
        raise ValueError(
            f"partition_id must be the node's partition as an int >= 0, got {partition_id!r}; "
            'take it from context.node_config["partition-id"] (set num-supernodes in a '
            'simulation, --node-config "partition-id=..." on a SuperNode)'
        )
    if partition_id < 0:
        raise ValueError(f"partition_id must be >= 0, got {partition_id}")
    return int(partition_id)


def round_seed(seed: int, partition_id: int, server_round: int) -> int:
    """A seed for one client's work in one round, derived from the run seed."""
    return int(np.random.SeedSequence([seed, partition_id, server_round]).generate_state(1)[0])


LEARNING_RATE_KEYS = ("learning_rate", "lr")  # Flower's quickstart templates send "lr"


def step_size(config: Mapping[str, Scalar], default: float) -> float:
    """The learning rate the server's config sets for this round (``learning_rate``,
    or ``lr`` as Flower's templates send it), else the learner's ``default``."""
    for key in LEARNING_RATE_KEYS:
        if key in config:
            return float(config[key])
    return default


def server_round(config: Mapping[str, Scalar]) -> int:
    """The round a config belongs to (0 where it does not say)."""
    return int(config.get("server_round", 0))
