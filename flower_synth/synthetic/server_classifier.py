"""The global model of synthetic-sample exchange: a classifier trained on the server
only on the clients' synthetic samples, never on real data.

It learns when a round's samples arrive (the strategy calls :meth:`learn` from
``aggregate_fit``) and is scored on a held-out real test set when the strategy
evaluates (:meth:`evaluate`). It trains on a replay buffer of recent rounds, drawn
class-balanced, with soft labels where the senders gave them.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
from flwr.common import Scalar
from torch import nn
from torch.utils.data import DataLoader, Dataset

from flower_synth.data.image_dataset import ImageDataset
from flower_synth.data.loaders import collect_inputs, to_image_dataset
from flower_synth.exchange.checkpoint import State
from flower_synth.learning.devices import check_device
from flower_synth.learning.normalization import SYMMETRIC, Normalization
from flower_synth.learning.training import Device, evaluate, make_loader, named_weights, train
from flower_synth.wire.payload import WireBatch


class PoolLearner(Protocol):
    """What :class:`~flower_synth.strategies.SyntheticSampleStrategy` does on the server
    with the samples: learn from every round's new pools, and report an evaluation.

    Pools come as they arrived (:class:`~flower_synth.wire.payload.WireBatch`, validated);
    ``batch.decode()`` gives float32 images in [0, 1] and soft labels. A learner that
    also has ``state()`` / ``load_state()`` (:class:`~flower_synth.exchange.checkpoint.Stateful`)
    is checkpointed with the strategy.
    """

    def learn(self, server_round: int, batches: Sequence[WireBatch]) -> dict[str, Scalar]:
        """Learn from the pools accepted in ``server_round``; return metrics."""

    def evaluate(self, server_round: int) -> tuple[float, dict[str, Scalar]] | None:
        """``(loss, metrics)`` of what was learnt, or None."""


class ReplayBuffer:
    """The samples of the last ``rounds`` rounds (older rounds fall out), kept in their
    wire form."""

    def __init__(self, rounds: int) -> None:
        if rounds < 1:
            raise ValueError(f"a replay buffer keeps at least 1 round, got {rounds}")
        self.rounds: deque[WireBatch] = deque(maxlen=rounds)

    def add(self, batches: Sequence[WireBatch], sample_shape: tuple[int, ...]) -> None:
        """Keep one round's samples (dropping the oldest round when full)."""
        self.rounds.append(WireBatch.concatenate(list(batches), sample_shape))

    def __len__(self) -> int:
        return sum(len(batch) for batch in self.rounds)

    def contents(self) -> WireBatch:
        """Every kept sample, oldest round first."""
        return WireBatch.concatenate(list(self.rounds), self.rounds[0].samples.shape[1:])

    def state(self) -> State:
        """The kept rounds (for a checkpoint)."""
        state = State(meta={"rounds": len(self.rounds)})
        for index, batch in enumerate(self.rounds):
            arrays = {"samples": batch.samples, "labels": batch.labels}
            if batch.probabilities is not None:
                arrays["probabilities"] = batch.probabilities
            state = state.with_part(str(index), State(arrays))
        return state

    def load_state(self, state: State) -> None:
        """Continue from :meth:`state`."""
        self.rounds.clear()
        for index in range(int(state.meta.get("rounds", 0))):
            arrays = state.part(str(index)).arrays
            self.rounds.append(
                WireBatch(arrays["samples"], arrays["labels"], arrays.get("probabilities"))
            )


def class_balanced_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-example weights under which every class present has the same total weight."""
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    return 1.0 / counts[labels]


MIN_BATCHES = 16  # SGD steps an epoch takes at least: batches shrink when few samples came


class PooledClassifier:
    """A :class:`PoolLearner`: the classifier the strategy offers as its global model.

    Each round it adds the new pools to a replay buffer of the last ``replay_rounds``
    rounds and runs ``epochs`` epochs of SGD, an epoch drawing as many examples as
    arrived this round from the buffer (all epochs together at most ``max_draws``, so
    a round's cost follows the round's samples and has a ceiling), class-balanced
    (each class equally likely, whatever the clients' label mix), in batches of
    ``batch_size`` or fewer examples, so that an epoch takes at least
    :data:`MIN_BATCHES` steps when few samples came, with soft labels
    where the senders gave them (distillation loss at ``temperature``). The step size
    decays by ``lr_decay`` per round; ``weight_decay`` is SGD's L2 penalty.
    ``evaluate`` scores it on ``test`` (``global_accuracy``) where one is given;
    without one, score it with ``evaluate_fn`` of ``start`` as in Flower's examples (it
    receives :meth:`global_arrays`). It never sees real training data.

    Args:
        model: the classifier (e.g. the CNN FedAvg trains; any torch module).
        test: the held-out real test set: an :class:`ImageDataset`, or your own
            DataLoader / Dataset (read once, see
            :func:`~flower_synth.data.client_data_from_loaders`); None: no evaluation
            of its own.
        num_classes: needed unless ``test`` is an :class:`ImageDataset`.
        normalization: how your model's inputs are normalised (the ``mean`` and ``std``
            your transform used); None: read off ``test`` where it is your own
            DataLoader or Dataset (:meth:`Normalization.from_inputs`), else the one most
            clients report with their samples (:meth:`follow`; the package's
            ``Normalization()`` until one does).
        device: where the classifier trains and predicts.
        epochs: epochs per round (0: never trains).
        max_draws: examples drawn per round at most, over all epochs (None: no cap).
        replay_rounds: rounds of samples kept for training.
        batch_size, learning_rate, momentum, weight_decay, lr_decay: SGD.
        temperature: distillation temperature for soft labels.
        hard_label_weight: share of the one-hot generated class in every target (the
            rest is the soft label; see :meth:`~flower_synth.wire.payload.SampleBatch.targets`).
        seed: drawing seed (combined with the round number).
    """

    def __init__(
        self,
        model: nn.Module,
        test: ImageDataset | DataLoader | Dataset | None = None,
        *,
        num_classes: int | None = None,
        normalization: Normalization | None = None,
        device: Device = "cpu",
        epochs: int = 3,
        max_draws: int | None = 20_000,
        replay_rounds: int = 5,
        batch_size: int = 256,
        learning_rate: float = 0.04,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        lr_decay: float = 1.0,
        temperature: float = 1.0,
        hard_label_weight: float = 0.0,
        seed: int = 0,
    ) -> None:
        if not 0.0 < lr_decay <= 1.0:
            raise ValueError(f"lr_decay must lie in (0, 1], got {lr_decay}")
        if max_draws is not None and max_draws < 1:
            raise ValueError(f"max_draws must be >= 1 or None, got {max_draws}")
        if not isinstance(test, ImageDataset):
            if num_classes is None:
                raise ValueError(
                    "give num_classes (the classes your model predicts) unless the test set "
                    "is an ImageDataset"
                )
            if test is not None:
                inputs, labels = collect_inputs(test)
                normalization = normalization or Normalization.from_inputs(inputs)
                test = to_image_dataset(inputs, labels, num_classes, normalization)
        self.num_classes = test.num_classes if isinstance(test, ImageDataset) else num_classes
        self.model = model
        self.test = test
        self.follows_clients = normalization is None
        self.normalization = normalization or SYMMETRIC
        self.device = check_device(device)
        self.epochs = epochs
        self.max_draws = max_draws
        self.buffer = ReplayBuffer(replay_rounds)
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.lr_decay = lr_decay
        self.temperature = temperature
        self.hard_label_weight = hard_label_weight
        self.seed = seed
        self.trained = False

    def follow(self, normalization: Normalization | None) -> None:
        """Take the clients' input normalisation (``normalization``: the one most of a
        round's clients report; None: none reported), unless one was given or read off
        the test set."""
        if self.follows_clients and normalization is not None:
            self.normalization = normalization

    def learn(self, server_round: int, batches: Sequence[WireBatch]) -> dict[str, Scalar]:
        """Add this round's pools to the buffer and train on it (see the class)."""
        arrived = sum(len(batch) for batch in batches)
        if arrived == 0:
            return {}
        self.buffer.add(batches, batches[0].samples.shape[1:])
        if self.epochs == 0:
            return {"replay_samples": len(self.buffer)}
        started = time.perf_counter()
        draws = self.draws_per_epoch(arrived)
        batch = max(1, min(self.batch_size, -(-draws // MIN_BATCHES)))
        pool = self.buffer.contents()
        loader = make_loader(
            pool.samples,
            pool.targets(self.num_classes, self.hard_label_weight),
            batch,
            shuffle=True,
            seed=self.seed + server_round,
            weights=class_balanced_weights(pool.labels, self.num_classes),
            draws=draws,
            normalization=self.normalization,
        )
        loss = train(
            self.model,
            loader,
            self.epochs,
            self.learning_rate * self.lr_decay ** (server_round - 1),
            self.momentum,
            temperature=self.temperature,
            weight_decay=self.weight_decay,
            device=self.device,
        )
        self.trained = True
        return {
            "pool_train_loss": loss,
            "replay_samples": len(self.buffer),
            "server_draws": draws * self.epochs,
            "server_steps": -(-draws // batch) * self.epochs,
            "server_classifier_seconds": time.perf_counter() - started,
        }

    def draws_per_epoch(self, arrived: int) -> int:
        """Examples one epoch draws when ``arrived`` samples came this round: as many,
        cut so that the round's epochs draw at most ``max_draws``."""
        if self.max_draws is None:
            return arrived
        return max(1, min(arrived, self.max_draws // self.epochs))

    def global_arrays(self) -> dict[str, np.ndarray] | None:
        """The model's weights by name (its ``state_dict``), None before any training."""
        if not self.trained:
            return None
        return named_weights(self.model)

    def evaluate(self, server_round: int) -> tuple[float, dict[str, Scalar]] | None:
        """Loss and ``global_accuracy`` on the test set (None before any training or
        without a test set: then ``evaluate_fn`` of ``start`` scores :meth:`global_arrays`)."""
        if not self.trained or self.test is None:
            return None
        loss, accuracy = evaluate(self.model, self.test, self.normalization, self.device)
        return loss, {"global_accuracy": accuracy}

    def state(self) -> State:
        """The model's weights, the replay buffer and whether it has trained."""
        normalization = [list(self.normalization.mean), list(self.normalization.std)]
        state = State(meta={"trained": self.trained, "normalization": normalization})
        state = state.with_part("model", State(named_weights(self.model)))
        return state.with_part("buffer", self.buffer.state())

    def load_state(self, state: State) -> None:
        """Continue from :meth:`state`."""
        weights = state.part("model").arrays
        self.model.load_state_dict({k: torch.as_tensor(v) for k, v in weights.items()})
        self.buffer.load_state(state.part("buffer"))
        self.trained = bool(state.meta.get("trained", False))
        if "normalization" in state.meta:
            mean, std = state.meta["normalization"]
            self.normalization = Normalization(tuple(mean), tuple(std))
