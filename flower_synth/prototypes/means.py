"""Per-class mean features (FedProto's prototypes): computing and aggregating them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassPrototypes:
    """One mean feature vector per class present.

    Attributes:
        labels: the classes, ascending, ``(M,)``.
        means: their mean features, ``(M, d)``.
        counts: examples behind each mean, ``(M,)``.
    """

    labels: np.ndarray
    means: np.ndarray
    counts: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def table(self, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """Prototypes indexed by class, ``(num_classes, d)`` (zeros where absent), and
        the mask of classes that have one."""
        table = np.zeros((num_classes, self.means.shape[1]), np.float32)
        table[self.labels] = self.means
        present = np.zeros(num_classes, bool)
        present[self.labels] = True
        return table, present


def class_means(features: np.ndarray, labels: np.ndarray, num_classes: int) -> ClassPrototypes:
    """The mean feature vector of every class that occurs in ``labels``."""
    counts = np.bincount(labels, minlength=num_classes)
    present = np.flatnonzero(counts)
    means = (
        np.stack([features[labels == c].mean(axis=0) for c in present])
        if present.size
        else (np.zeros((0, features.shape[1])))
    )
    return ClassPrototypes(present.astype(np.int64), means, counts[present].astype(np.int64))


def aggregate_prototypes(prototypes: Sequence[ClassPrototypes]) -> ClassPrototypes:
    """FedProto's global prototypes: per class, the count-weighted mean of the clients'
    prototypes (the mean feature over all clients' examples of that class)."""
    if not prototypes:
        raise ValueError("nothing to aggregate")
    labels = np.concatenate([p.labels for p in prototypes])
    means = np.concatenate([p.means for p in prototypes]).astype(np.float64)
    counts = np.concatenate([p.counts for p in prototypes]).astype(np.float64)
    classes = np.unique(labels)
    totals = np.array([counts[labels == c].sum() for c in classes])
    fused = np.stack([counts[labels == c] @ means[labels == c] for c in classes]) / totals[:, None]
    return ClassPrototypes(classes.astype(np.int64), fused, totals.astype(np.int64))
