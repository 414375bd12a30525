"""The legacy Flower client of the weight-averaging baselines (flwr's FedAvg and FedProx)."""

from __future__ import annotations

from typing import Any

from flower_synth.clients.learner_client import LearnerClient
from flower_synth.learning.fedavg_learner import FedAvgLearner


class FedAvgClient(LearnerClient):
    """A ``NumPyClient`` for flwr's ``FedAvg`` and ``FedProx``: takes the arguments of
    :class:`~flower_synth.learning.fedavg_learner.FedAvgLearner` (model, data,
    ``partition_id=``, ...)."""

    learner: FedAvgLearner

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(FedAvgLearner(*args, **kwargs))
