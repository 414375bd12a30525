"""The legacy Flower client (``NumPyClient``) of any
:class:`~flower_synth.learning.learner.Learner`."""

from __future__ import annotations

from flwr.client import NumPyClient
from flwr.common import NDArrays, Scalar

from flower_synth.learning.learner import Learner


class LearnerClient(NumPyClient):
    """A ``NumPyClient`` that hands Flower's arrays and config to ``learner`` and its
    results back: for projects with ``ClientApp(client_fn=...)``. Use
    ``LearnerClient(learner).to_client()`` in ``client_fn``.

    ``get_parameters`` returns the learner's ``parameters()`` where it has them (the
    weight-averaging learner), else an empty list: the other strategies have no global
    model to start from.
    """

    def __init__(self, learner: Learner) -> None:
        self.learner = learner

    def get_parameters(self, config: dict[str, Scalar]) -> NDArrays:
        """The learner's weights, or nothing."""
        parameters = getattr(self.learner, "parameters", None)
        return parameters() if callable(parameters) else []

    def fit(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[NDArrays, int, dict[str, Scalar]]:
        """The learner's fit."""
        fitted = self.learner.fit(list(parameters), config)
        return fitted.arrays, fitted.num_examples, fitted.metrics

    def evaluate(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[float, int, dict[str, Scalar]]:
        """The learner's evaluation."""
        evaluated = self.learner.evaluate(list(parameters), config)
        return evaluated.loss, evaluated.num_examples, evaluated.metrics
