"""The legacy Flower client of FedProto."""

from __future__ import annotations

from typing import Any

from flower_synth.clients.learner_client import LearnerClient
from flower_synth.prototypes.fedproto_learner import FedProtoLearner


class FedProtoClient(LearnerClient):
    """A ``NumPyClient`` of FedProto: takes the arguments of
    :class:`~flower_synth.prototypes.fedproto_learner.FedProtoLearner` (a model with
    ``features`` and ``head``, data, the node's ``context.state``, ``partition_id=``, ...)."""

    learner: FedProtoLearner

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(FedProtoLearner(*args, **kwargs))
