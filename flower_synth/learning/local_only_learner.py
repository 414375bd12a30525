"""The client side of local-only training: the reference without collaboration."""

from __future__ import annotations

from typing import Any

import numpy as np
from flwr.app import RecordDict
from torch import nn

from flower_synth.data.client_data import ClientData
from flower_synth.prototypes.learner import PrototypeLearner


class LocalOnlyLearner(PrototypeLearner):
    """Plain cross-entropy training of the client's own model on its own data; the
    summary it sends is empty. The lower reference every collaborative strategy must
    beat on the clients' local test splits (and usually does not on the global test
    set). Arguments as :class:`PrototypeLearner`'s, without ``state_key``."""

    def __init__(self, model: nn.Module, data: ClientData, state: RecordDict, **options: Any):
        super().__init__(model, data, state, "local-only", **options)

    def training_terms(self, received: list[np.ndarray], seed: int) -> dict[str, Any]:
        """Nothing but cross-entropy."""
        return {}

    def summarize(self, seed: int) -> list[np.ndarray]:
        """Nothing leaves the client."""
        return []

    def shared_points(self, summary: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """No points: nothing is shared."""
        return np.zeros((0, self.model.feature_dim), np.float32), np.zeros(0, np.int64)
