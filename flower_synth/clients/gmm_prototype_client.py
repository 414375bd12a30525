"""The legacy Flower client of GMM prototypes (GFPL-style)."""

from __future__ import annotations

from typing import Any

from flower_synth.clients.learner_client import LearnerClient
from flower_synth.prototypes.gmm_learner import GMMPrototypeLearner


class GMMPrototypeClient(LearnerClient):
    """A ``NumPyClient`` of GMM prototypes: takes the arguments of
    :class:`~flower_synth.prototypes.gmm_learner.GMMPrototypeLearner` (a
    ``DualHeadClassifier``, data, the node's ``context.state``, ``partition_id=``, ...)."""

    learner: GMMPrototypeLearner

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(GMMPrototypeLearner(*args, **kwargs))
