"""The loader a user's own train function iterates in a round of the exchange: their
batches, and the received samples in the same form between them."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from flower_synth.data.loaders import IMAGE_KEYS, LABEL_KEYS
from flower_synth.learning.normalization import Normalization
from flower_synth.wire.payload import SampleBatch


@dataclass(frozen=True)
class ExampleCount:
    """Stands for a set of examples where only its size is read (``len(loader.dataset)``)."""

    count: int

    def __len__(self) -> int:
        return self.count


@dataclass
class MixedLoader:
    """What your ``train`` function iterates in a round of the exchange: every batch of
    your own DataLoader as it comes (your transforms and augmentation included), and
    between them batches of the received samples in the same form (the same dictionary
    keys, or an ``(images, labels)`` pair; images normalised as your inputs are), in
    random order. Their labels are the senders' class probabilities, float ``(N, C)``
    (``soft_labels``; torch's ``CrossEntropyLoss`` takes them as targets), or the class
    each sample was generated for. An epoch holds
    ``(1 - a) / a`` received samples per real example for the server's self-trust ``a``.
    ``len()`` counts batches and ``dataset`` has the examples' count, as with a DataLoader.
    """

    real: DataLoader
    received: SampleBatch
    weights: np.ndarray
    num_received: int
    normalization: Normalization
    seed: int
    soft_labels: bool = True
    epoch: int = field(default=0, init=False)

    @property
    def batch_size(self) -> int:
        """Your loader's batch size (received samples come in batches of it too)."""
        return int(self.real.batch_size or 1)

    @property
    def received_batches(self) -> int:
        """Batches of received samples in an epoch."""
        return math.ceil(self.num_received / self.batch_size)

    def __len__(self) -> int:
        return len(self.real) + self.received_batches

    @property
    def dataset(self) -> ExampleCount:
        """The examples of an epoch, as far as ``len()`` goes."""
        return ExampleCount(len(self.real.dataset) + self.num_received)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        rng = np.random.default_rng((self.seed, self.epoch))
        self.epoch += 1
        order = np.array([0] * len(self.real) + [1] * self.received_batches)
        rng.shuffle(order[1:])  # a real batch first: received ones copy its form
        draws = np.zeros(0, dtype=np.int64)
        if self.num_received:
            p = self.weights / self.weights.sum()
            draws = rng.choice(len(self.received), self.num_received, p=p)
        real, template, start = iter(self.real), None, 0
        for kind in order:
            if kind == 0:
                template = next(real)
                yield template
            else:
                rows = draws[start : start + self.batch_size]
                start += self.batch_size
                yield self.batch_like(template, rows)

    def batch_like(self, template: Any, rows: np.ndarray) -> Any:
        """Received samples ``rows`` in the form of your batch ``template``."""
        samples = torch.from_numpy(self.received.samples[rows])
        images = self.normalization.transform(samples.shape[1])(samples)
        if self.soft_labels and self.received.probabilities is not None:
            labels = torch.from_numpy(self.received.probabilities[rows])
        else:
            labels = torch.from_numpy(self.received.labels[rows].astype(np.int64))
        if isinstance(template, Mapping):
            image_key = next(k for k in IMAGE_KEYS if k in template)
            label_key = next(k for k in LABEL_KEYS if k in template)
            return {image_key: images, label_key: labels}
        return type(template)((images, labels)) if isinstance(template, tuple) else [images, labels]
