"""The legacy Flower client of synthetic-sample exchange."""

from __future__ import annotations

from typing import Any

from flower_synth.clients.learner_client import LearnerClient
from flower_synth.synthetic.learner import SyntheticLearner


class SyntheticSampleClient(LearnerClient):
    """A ``NumPyClient`` of synthetic-sample exchange: takes the arguments of
    :class:`~flower_synth.synthetic.learner.SyntheticLearner` (generator, classifier,
    data, the node's ``context.state``, ``partition_id=``, ...) and serves it."""

    learner: SyntheticLearner

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(SyntheticLearner(*args, **kwargs))
