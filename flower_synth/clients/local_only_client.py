"""The legacy Flower client of the local-only reference."""

from __future__ import annotations

from typing import Any

from flower_synth.clients.learner_client import LearnerClient
from flower_synth.learning.local_only_learner import LocalOnlyLearner


class LocalOnlyClient(LearnerClient):
    """A ``NumPyClient`` that trains its own model on its own data and sends nothing:
    takes the arguments of :class:`~flower_synth.learning.local_only_learner.LocalOnlyLearner`."""

    learner: LocalOnlyLearner

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(LocalOnlyLearner(*args, **kwargs))
