"""Client partitions built with flwr-datasets partitioners.

The partitioners run on a ``datasets.Dataset`` holding only the labels and the row
index of every training example; images stay in numpy and are gathered by index, so
partitioning 60,000 images costs milliseconds and never touches the Hugging Face hub.
"""

from __future__ import annotations

import numpy as np
from datasets import Dataset
from flwr_datasets.partitioner import (
    DirichletPartitioner,
    IidPartitioner,
    PathologicalPartitioner,
)
from flwr_datasets.partitioner.partitioner import Partitioner

from flower_synth.data.per_class_partitioner import PerClassPartitioner

PARTITIONERS = ("iid", "dirichlet", "pathological", "per-class")


def make_partitioner(
    kind: str,
    num_partitions: int,
    seed: int,
    dirichlet_alpha: float = 0.5,
    classes_per_client: int = 2,
    examples_per_class: int = 0,
) -> Partitioner:
    """Build the flwr-datasets partitioner named ``kind`` (see :data:`PARTITIONERS`):
    ``per-class`` gives every partition ``examples_per_class`` examples of every class
    (:class:`~flower_synth.data.per_class_partitioner.PerClassPartitioner`)."""
    if num_partitions < 1:
        raise ValueError(f"num_partitions must be >= 1, got {num_partitions}")
    if kind == "iid":
        return IidPartitioner(num_partitions=num_partitions)
    if kind == "dirichlet":
        if dirichlet_alpha <= 0:
            raise ValueError(f"dirichlet-alpha must be > 0, got {dirichlet_alpha}")
        return DirichletPartitioner(
            num_partitions=num_partitions,
            partition_by="label",
            alpha=dirichlet_alpha,
            min_partition_size=10,
            self_balancing=False,
            seed=seed,
        )
    if kind == "pathological":
        return PathologicalPartitioner(
            num_partitions=num_partitions,
            partition_by="label",
            num_classes_per_partition=classes_per_client,
            class_assignment_mode="first-deterministic",
            seed=seed,
        )
    if kind == "per-class":
        return PerClassPartitioner(num_partitions, examples_per_class, "label", seed)
    raise ValueError(f"unknown partitioner {kind!r}; choose one of {', '.join(PARTITIONERS)}")


def long_tail_indices(
    labels: np.ndarray, num_classes: int, imbalance_factor: float, seed: int
) -> np.ndarray:
    """Rows of a long-tailed subset, sorted: class ``c`` keeps
    ``round(n_c * imbalance_factor ** (-c / (num_classes - 1)))`` of its ``n_c``
    examples (drawn with ``seed``), so class 0 keeps all and the last class
    ``1 / imbalance_factor`` of them, the usual geometric profile of long-tailed
    benchmarks (CIFAR-10-LT). ``imbalance_factor = 1`` keeps everything."""
    if imbalance_factor < 1:
        raise ValueError(f"imbalance-factor must be >= 1, got {imbalance_factor}")
    rng = np.random.default_rng(seed)
    kept = []
    for label in range(num_classes):
        members = np.flatnonzero(labels == label)
        share = imbalance_factor ** (-label / max(num_classes - 1, 1))
        kept.append(rng.choice(members, size=int(round(len(members) * share)), replace=False))
    return np.sort(np.concatenate(kept))


def partition_indices(labels: np.ndarray, partitioner: Partitioner, seed: int) -> list[np.ndarray]:
    """Row indices of every partition, sorted, in partition-id order.

    The rows are shuffled with ``seed`` first, because ``IidPartitioner`` shards the
    dataset in its given order.
    """
    order = np.random.default_rng(seed).permutation(len(labels))
    partitioner.dataset = Dataset.from_dict({"label": labels[order], "row": order})
    return [
        np.sort(np.asarray(partitioner.load_partition(pid)["row"], dtype=np.int64))
        for pid in range(partitioner.num_partitions)
    ]


def split_by_class(
    indices: np.ndarray, labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into (train, test) with the same label proportions.

    Per class, ``round(test_fraction * n_c)`` examples go to the test split (a class
    with a single example stays in train). Written here rather than with a stratified
    splitter because those refuse classes with one member, which Dirichlet(0.1)
    partitions routinely contain.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"local test fraction must lie in [0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels[indices]):
        members = rng.permutation(indices[labels[indices] == label])
        n_test = int(round(test_fraction * len(members))) if len(members) > 1 else 0
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def label_skew(partitions: list[np.ndarray], labels: np.ndarray, num_classes: int) -> float:
    """Mean total-variation distance between each partition's label distribution and
    the pooled one: 0 for identical distributions, close to 1 for disjoint classes."""
    overall = np.bincount(labels, minlength=num_classes) / len(labels)
    distances = []
    for part in partitions:
        counts = np.bincount(labels[part], minlength=num_classes)
        distances.append(0.5 * np.abs(counts / max(counts.sum(), 1) - overall).sum())
    return float(np.mean(distances))
