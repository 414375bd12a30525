"""The client of the weight-averaging baselines (flwr's FedAvg and FedProx)."""

from __future__ import annotations

import numpy as np
from flwr.client import NumPyClient
from flwr.common import NDArrays, Scalar
from torch import nn

from flower_synth.data.federated import ClientData
from flower_synth.training import (
    evaluate,
    get_weights,
    make_loader,
    set_weights,
    to_unit_range,
    train,
)


def round_seed(seed: int, partition_id: int, server_round: int) -> int:
    """A seed for one client's work in one round, derived from the run seed."""
    return int(np.random.SeedSequence([seed, partition_id, server_round]).generate_state(1)[0])


class FedAvgClient(NumPyClient):
    """Trains the global model on the client's data and sends the weights back.

    ``fit`` loads the received global weights, runs ``local_epochs`` of SGD (adding
    the FedProx proximal term when the fit config carries ``proximal_mu``, as flwr's
    ``FedProx`` strategy sends it) and returns the new weights with the training-split
    size. ``evaluate`` scores received weights on the client's local test split.

    Args:
        model: the torch classifier (its weights are replaced by the received ones).
        data: the client's train and local test splits.
        local_epochs, batch_size, learning_rate, momentum: local SGD settings.
        seed: run seed; shuffling in round r uses a seed derived from (seed, partition, r).
        partition_id: this client's partition, used for seeding.
    """

    def __init__(
        self,
        model: nn.Module,
        data: ClientData,
        local_epochs: int,
        batch_size: int,
        learning_rate: float,
        momentum: float = 0.9,
        seed: int = 0,
        partition_id: int = 0,
    ) -> None:
        self.model = model
        self.data = data
        self.local_epochs = local_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.seed = seed
        self.partition_id = partition_id

    def get_parameters(self, config: dict[str, Scalar]) -> NDArrays:
        """The current model weights."""
        return get_weights(self.model)

    def fit(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[NDArrays, int, dict[str, Scalar]]:
        """Local training from the received weights; returns weights, example count,
        and ``train_loss`` (mean loss of the last local epoch)."""
        set_weights(self.model, parameters)
        server_round = int(config.get("server_round", 0))
        loader = make_loader(
            to_unit_range(self.data.train),
            self.data.train.labels,
            self.batch_size,
            shuffle=True,
            seed=round_seed(self.seed, self.partition_id, server_round),
        )
        loss = train(
            self.model,
            loader,
            epochs=self.local_epochs,
            learning_rate=self.learning_rate,
            momentum=self.momentum,
            proximal_mu=float(config.get("proximal_mu", 0.0)),
        )
        return get_weights(self.model), len(self.data.train), {"train_loss": loss}

    def evaluate(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[float, int, dict[str, Scalar]]:
        """Loss and ``accuracy`` of the received weights on the local test split.

        A client whose local test split is empty reports 0 examples and no accuracy.
        """
        if len(self.data.test) == 0:
            return 0.0, 0, {}
        set_weights(self.model, parameters)
        loss, accuracy = evaluate(self.model, self.data.test)
        return loss, len(self.data.test), {"accuracy": accuracy}
