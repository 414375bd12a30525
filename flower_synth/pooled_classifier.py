"""Server-side evaluation of synthetic-sample exchange: a classifier that only ever
sees the pooled synthetic samples, scored on a held-out real test set."""

from __future__ import annotations

from flwr.common import Scalar
from torch import nn

from flower_synth.data.image_dataset import ImageDataset
from flower_synth.payload import SampleBatch
from flower_synth.training import evaluate, make_loader, train


class PooledClassifierEvaluation:
    """``evaluate_fn`` for :class:`SyntheticSampleStrategy`.

    Each round the classifier continues training (warm start) for ``epochs`` epochs on
    the union of the clients' current pools, then reports ``global_accuracy`` and the
    loss on ``test``. This is the global model the strategy offers, and the figure that
    compares with FedAvg's global model: it never touches real training data.

    Args:
        model: the classifier (e.g. the same CNN FedAvg trains).
        test: the global test set.
        epochs, batch_size, learning_rate, momentum: SGD on the pool.
        seed: shuffling seed (combined with the round number).
    """

    def __init__(
        self,
        model: nn.Module,
        test: ImageDataset,
        epochs: int = 2,
        batch_size: int = 64,
        learning_rate: float = 0.01,
        momentum: float = 0.9,
        seed: int = 0,
    ) -> None:
        self.model = model
        self.test = test
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.seed = seed

    def __call__(self, server_round: int, pool: SampleBatch) -> tuple[float, dict[str, Scalar]]:
        """Train on ``pool``, evaluate on the test set."""
        loader = make_loader(
            pool.samples, pool.labels, self.batch_size, shuffle=True, seed=self.seed + server_round
        )
        train_loss = train(self.model, loader, self.epochs, self.learning_rate, self.momentum)
        loss, accuracy = evaluate(self.model, self.test)
        return loss, {"global_accuracy": accuracy, "pool_train_loss": train_loss}
