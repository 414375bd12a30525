"""The common part of clients that train their own model and share per-class feature
summaries (prototypes) instead of weights."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np
from flwr.app import RecordDict
from flwr.client import NumPyClient
from flwr.common import NDArrays, Scalar
from torch import nn

from flower_synth.clients.fedavg_client import round_seed
from flower_synth.data.federated import ClientData
from flower_synth.data.image_dataset import ImageDataset
from flower_synth.state import count_round, load_module, save_module
from flower_synth.training import evaluate, extract_features, make_loader, to_unit_range, train


class PrototypeClient(NumPyClient):
    """A client whose model never leaves it; each round it trains on its real data
    with extra terms derived from the received global summary, then uploads a new
    summary of its features.

    ``fit`` decodes the global summary (empty in round 1) into training terms
    (:meth:`training_terms`), runs ``local_epochs`` of SGD, and returns
    :meth:`summarize` of the features of its training split, its size, and metrics
    ``partition_id``, ``train_loss`` and ``client_rounds``. ``evaluate`` scores the
    model on the local test split (``accuracy``) and, if given, the global test set
    (``global_accuracy``). The model persists across rounds in ``state`` (the node's
    ``Context.state``) under ``state_key``.

    Args:
        model: torch classifier with ``features`` and ``head``.
        data: the client's training and local test splits.
        state: where the model is kept between rounds.
        state_key: name of the model's entry in ``state``.
        partition_id: reported to the server, and part of every round's seed.
        local_epochs, batch_size, learning_rate, momentum: local SGD settings.
        seed: run seed.
        prototype_dtype: float format of uploads, ``"float16"`` or ``"float32"``.
        global_test: if given, ``evaluate`` also scores the global test set.
    """

    def __init__(
        self,
        model: nn.Module,
        data: ClientData,
        state: RecordDict,
        state_key: str,
        *,
        partition_id: int = 0,
        local_epochs: int = 2,
        batch_size: int = 64,
        learning_rate: float = 0.01,
        momentum: float = 0.9,
        seed: int = 0,
        prototype_dtype: str = "float16",
        global_test: ImageDataset | None = None,
    ) -> None:
        self.model = model
        self.data = data
        self.state = state
        self.state_key = state_key
        self.partition_id = partition_id
        self.local_epochs = local_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.seed = seed
        self.prototype_dtype = prototype_dtype
        self.global_test = global_test
        load_module(state, f"{state_key}.model", model)

    @property
    def num_classes(self) -> int:
        """Classes of the dataset (not only those this client holds)."""
        return self.data.train.num_classes

    @abstractmethod
    def training_terms(self, received: NDArrays, seed: int) -> dict[str, Any]:
        """Keyword arguments for :func:`~flower_synth.training.train` (``feature_loss``,
        ``pseudo``) derived from the received global summary (possibly empty)."""

    @abstractmethod
    def summarize(self, seed: int) -> NDArrays:
        """The payload: a per-class summary of the training split's features
        (:meth:`training_features`), after this round's training."""

    def training_features(self) -> tuple[np.ndarray, np.ndarray]:
        """Features of the training split under the current model, and their labels."""
        return extract_features(self.model, to_unit_range(self.data.train)), self.data.train.labels

    def fit(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[NDArrays, int, dict[str, Scalar]]:
        """Train with the global summary's terms; return this client's new summary."""
        seed = round_seed(self.seed, self.partition_id, int(config.get("server_round", 0)))
        real, labels = to_unit_range(self.data.train), self.data.train.labels
        terms = self.training_terms(parameters, seed)
        loader = make_loader(real, labels, self.batch_size, shuffle=True, seed=seed)
        loss = train(
            self.model,
            loader,
            self.local_epochs,
            self.learning_rate,
            self.momentum,
            seed=seed,
            **terms,
        )
        save_module(self.state, f"{self.state_key}.model", self.model)
        metrics: dict[str, Scalar] = {
            "partition_id": self.partition_id,
            "train_loss": loss,
            "client_rounds": count_round(self.state, f"{self.state_key}.progress"),
        }
        if terms.get("pseudo") is not None:
            metrics["pseudo_features"] = len(terms["pseudo"])
        return self.summarize(seed), len(labels), metrics

    def evaluate(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[float, int, dict[str, Scalar]]:
        """The client's own model on its local test split (``accuracy``) and, if set
        and the config's ``global_eval`` (default true) asks, the global test set
        (``global_accuracy``)."""
        metrics: dict[str, Scalar] = {}
        if self.global_test is not None and bool(config.get("global_eval", True)):
            metrics["global_accuracy"] = evaluate(self.model, self.global_test)[1]
        if len(self.data.test) == 0:
            return 0.0, 0, metrics
        loss, metrics["accuracy"] = evaluate(self.model, self.data.test)
        return loss, len(self.data.test), metrics
