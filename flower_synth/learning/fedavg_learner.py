"""The client side of the weight-averaging baselines (FedAvg and FedProx), free of
Flower's APIs."""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
from flwr.common import Scalar
from torch import nn

from flower_synth.data.client_data import ClientData
from flower_synth.learning.classifier_training import ClassifierTraining
from flower_synth.learning.devices import check_device
from flower_synth.learning.learner import (
    Evaluated,
    Fitted,
    check_partition_id,
    round_seed,
    server_round,
    step_size,
)
from flower_synth.learning.training import (
    Device,
    evaluate,
    get_weights,
    make_loader,
    set_weights,
    to_unit_range,
    train,
)

# A metric every reply carries as 1: a strategy weighing replies by it averages them
# equally, as Flower's central DP (fixed clipping) assumes of its noise.
UNIT_WEIGHT_KEY = "unit-weight"


class FedAvgLearner:
    """Trains the global model on the client's data and returns the weights. A
    :class:`~flower_synth.learning.learner.Learner`.

    :meth:`fit` loads the received global weights, runs ``local_epochs`` of SGD (adding
    the FedProx proximal term when the config carries ``proximal_mu``, as flwr's
    ``FedProx`` strategies send it) and returns the new weights with the training-split
    size and ``train_loss``. :meth:`evaluate` scores received weights on the client's
    local test split (``accuracy``).

    Args:
        model: the torch classifier (its weights are replaced by the received ones).
        data: the client's train and local test splits.
        partition_id: this client's partition, part of every round's seed; required.
        training: local SGD (``local_epochs``, ``batch_size``, ``learning_rate``,
            ``momentum`` of :class:`~flower_synth.learning.classifier_training.ClassifierTraining`;
            the learning rate a round's config sends overrides it).
        seed: run seed; shuffling in round r uses a seed derived from (seed, partition, r).
        device: where the model trains and predicts.
    """

    def __init__(
        self,
        model: nn.Module,
        data: ClientData,
        *,
        partition_id: int,
        training: ClassifierTraining | None = None,
        seed: int = 0,
        device: Device = "cpu",
    ) -> None:
        self.model = model
        self.data = data
        self.partition_id = check_partition_id(partition_id)
        self.training = training or ClassifierTraining()
        self.seed = seed
        self.device = check_device(device)

    def parameters(self) -> list[np.ndarray]:
        """The current model weights."""
        return get_weights(self.model)

    def fit(self, arrays: list[np.ndarray], config: Mapping[str, Scalar]) -> Fitted:
        """Local training from the received weights; returns weights, example count,
        ``train_loss`` (mean loss of the last local epoch), ``classifier_seconds`` and
        ``unit-weight`` (1)."""
        started = time.perf_counter()
        set_weights(self.model, arrays)
        loader = make_loader(
            to_unit_range(self.data.train),
            self.data.train.labels,
            self.training.batch_size,
            shuffle=True,
            seed=round_seed(self.seed, self.partition_id, server_round(config)),
            normalization=self.data.normalization,
        )
        loss = train(
            self.model,
            loader,
            epochs=self.training.local_epochs,
            learning_rate=step_size(config, self.training.learning_rate),
            momentum=self.training.momentum,
            proximal_mu=float(config.get("proximal_mu", 0.0)),
            device=self.device,
        )
        metrics = {
            "train_loss": loss,
            "classifier_seconds": time.perf_counter() - started,
            UNIT_WEIGHT_KEY: 1,  # for averaging the replies equally (central DP)
        }
        return Fitted(get_weights(self.model), len(self.data.train), metrics)

    def evaluate(self, arrays: list[np.ndarray], config: Mapping[str, Scalar]) -> Evaluated:
        """Loss and ``accuracy`` of the received weights on the local test split (0
        examples and no accuracy where the split is empty), and ``unit-weight`` (1)."""
        if len(self.data.test) == 0:
            return Evaluated(0.0, 0, {UNIT_WEIGHT_KEY: 1})
        set_weights(self.model, arrays)
        loss, accuracy = evaluate(self.model, self.data.test, self.data.normalization, self.device)
        return Evaluated(loss, len(self.data.test), {"accuracy": accuracy, UNIT_WEIGHT_KEY: 1})
