"""The client of synthetic-sample exchange: learns from real + received synthetic data."""

from __future__ import annotations

import numpy as np
from flwr.app import RecordDict
from flwr.client import NumPyClient
from flwr.common import NDArrays, Scalar
from torch import nn

from flower_synth.clients.fedavg_client import round_seed
from flower_synth.data.federated import ClientData
from flower_synth.data.image_dataset import ImageDataset
from flower_synth.generative import GenerativeModel
from flower_synth.payload import decode_samples, encode_samples
from flower_synth.state import count_round, load_arrays, load_module, save_arrays, save_module
from flower_synth.training import (
    class_probabilities,
    make_loader,
    score,
    to_unit_range,
    train,
)

GENERATOR_STATE = "synthetic.generator"
CLASSIFIER_STATE = "synthetic.classifier"
PROGRESS_STATE = "synthetic.progress"


def mixture_weights(num_real: int, num_received: int, self_trust: float) -> np.ndarray:
    """Per-example weights of the trust-weighted mixture: real data share ``a_ii``,
    received samples share ``1 - a_ii`` (all on real data when nothing was received)."""
    if num_received == 0:
        return np.full(num_real, 1.0 / num_real)
    return np.concatenate(
        [
            np.full(num_real, self_trust / num_real),
            np.full(num_received, (1 - self_trust) / num_received),
        ]
    )


class SyntheticSampleClient(NumPyClient):
    """A client that owns a generative model and a classifier; only samples leave it.

    ``fit`` receives other clients' synthetic samples (``[samples, labels]``, possibly
    empty) with the config keys ``self_trust`` (a_ii), ``num_samples`` and
    ``server_round``. It fits the generator and trains the classifier on the mixture
    of its real data (weight a_ii) and the received samples (weight 1 - a_ii), then
    returns ``num_samples`` fresh samples from the generator, encoded as
    ``sample_dtype``. Generator and classifier persist across rounds in ``state``
    (the node's ``Context.state``).

    Args:
        generator: the local generative model (any :class:`GenerativeModel`).
        classifier: a torch classifier on images normalised to [-1, 1], or None to
            classify with the generator's Bayes posterior (``predict_proba``).
        data: the client's training split and local test split.
        state: where generator and classifier are kept between rounds.
        partition_id: reported to the server (it indexes explicit trust matrices).
        sample_dtype: ``"uint8"`` (images) or ``"float16"`` on the wire.
        samples_per_round: samples to generate when the config does not say.
        local_epochs, batch_size, learning_rate, momentum: classifier training.
        seed: run seed; round r of partition p derives its own seed from it.
        global_test: if given, ``evaluate`` also scores the global test set.
    """

    def __init__(
        self,
        generator: GenerativeModel,
        classifier: nn.Module | None,
        data: ClientData,
        state: RecordDict,
        *,
        partition_id: int = 0,
        sample_dtype: str = "uint8",
        samples_per_round: int = 1000,
        local_epochs: int = 2,
        batch_size: int = 64,
        learning_rate: float = 0.01,
        momentum: float = 0.9,
        seed: int = 0,
        global_test: ImageDataset | None = None,
    ) -> None:
        self.generator = generator
        self.classifier = classifier
        self.data = data
        self.state = state
        self.partition_id = partition_id
        self.sample_dtype = sample_dtype
        self.samples_per_round = samples_per_round
        self.local_epochs = local_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.seed = seed
        self.global_test = global_test
        generator_state = load_arrays(state, GENERATOR_STATE)
        if generator_state is not None:
            self.generator.set_state(generator_state)
        if classifier is not None:
            load_module(state, CLASSIFIER_STATE, classifier)

    def fit(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[NDArrays, int, dict[str, Scalar]]:
        """Learn on real + received samples; return new samples, the real-data size
        and metrics: ``partition_id``, ``received_samples``, ``train_loss`` and
        ``client_rounds`` (fits this client has made, counted in its state)."""
        server_round = int(config.get("server_round", 0))
        seed = round_seed(self.seed, self.partition_id, server_round)
        received = decode_samples(parameters) if parameters else None
        real = to_unit_range(self.data.train)
        if received is None:
            samples, labels = real, self.data.train.labels
        else:
            samples = np.concatenate([real, received.samples])
            labels = np.concatenate([self.data.train.labels, received.labels])
        num_received = len(labels) - len(real)
        weights = mixture_weights(len(real), num_received, float(config.get("self_trust", 1.0)))

        self.generator.fit(samples, labels, sample_weight=weights)
        metrics: dict[str, Scalar] = {
            "partition_id": self.partition_id,
            "received_samples": num_received,
            "client_rounds": count_round(self.state, PROGRESS_STATE),
        }
        if self.classifier is not None:
            loader = make_loader(samples, labels, self.batch_size, True, seed, weights=weights)
            metrics["train_loss"] = train(
                self.classifier, loader, self.local_epochs, self.learning_rate, self.momentum
            )
        generated, generated_labels = self.generator.sample(
            int(config.get("num_samples", self.samples_per_round)), random_state=seed
        )
        save_arrays(self.state, GENERATOR_STATE, self.generator.get_state())
        if self.classifier is not None:
            save_module(self.state, CLASSIFIER_STATE, self.classifier)
        payload = encode_samples(generated, generated_labels, self.sample_dtype)
        return payload, len(real), metrics

    def score(self, data: ImageDataset) -> tuple[float, float]:
        """Mean negative log-likelihood and accuracy of the client's classifier (its
        torch model, else the generator's Bayes posterior) on ``data``."""
        samples = to_unit_range(data)
        if self.classifier is None:
            return score(self.generator.predict_proba(samples), data.labels)
        return score(class_probabilities(self.classifier, samples), data.labels)

    def evaluate(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[float, int, dict[str, Scalar]]:
        """The client's own model on its local test split (``accuracy``) and, if it
        has one, on the global test set (``global_accuracy``)."""
        metrics: dict[str, Scalar] = {}
        if self.global_test is not None:
            metrics["global_accuracy"] = self.score(self.global_test)[1]
        if len(self.data.test) == 0 or not self.generator.is_fitted:
            return 0.0, 0, metrics
        loss, metrics["accuracy"] = self.score(self.data.test)
        return loss, len(self.data.test), metrics
