"""What one client (or the server) sees of a dataset in a federated run."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from flower_synth.data.client_data import ClientData
from flower_synth.data.image_dataset import ImageDataset
from flower_synth.data.labels import hide_labels
from flower_synth.data.partition import (
    long_tail_indices,
    make_partitioner,
    partition_indices,
    split_by_class,
)
from flower_synth.data.sources import load_dataset

VALIDATION_FRACTION = 1 / 6  # of the training set (10,000 of Fashion-MNIST's 60,000)
VALIDATION_SEED = 0  # the held-out images are the same whatever the run's seed


@dataclass(frozen=True)
class DataSource:
    """Which dataset, and where its files are (see :func:`load_dataset`). With
    ``validation``, a class-stratified ``VALIDATION_FRACTION`` of the training set is
    held out and stands in for the test set, and only the rest is partitioned: runs
    that choose settings never read the test set."""

    name: str
    data_dir: str = ""
    download: bool = False
    validation: bool = False


@dataclass(frozen=True)
class PartitionScheme:
    """How a dataset's training set is split over ``num_partitions`` clients: a
    flwr-datasets partitioner (``iid``, ``dirichlet`` with ``dirichlet_alpha``,
    ``pathological`` with ``classes_per_client``, ``per-class`` with
    ``examples_per_class``) seeded by ``seed``, then each
    partition split per class into training and local test data
    (``local_test_fraction`` of each class to the test split). With
    ``imbalance_factor > 1`` the training set is made long-tailed first
    (:func:`~flower_synth.data.partition.long_tail_indices`); the test set stays
    balanced."""

    source: DataSource
    num_partitions: int
    partitioner: str = "dirichlet"
    seed: int = 0
    dirichlet_alpha: float = 0.5
    classes_per_client: int = 2
    local_test_fraction: float = 0.2
    imbalance_factor: float = 1.0
    examples_per_class: int = 0


@lru_cache(maxsize=2)
def _cached_dataset(source: DataSource) -> tuple[ImageDataset, ImageDataset]:
    # Ray reuses worker processes across rounds and clients: read the files once each.
    train, test = load_dataset(source.name, source.data_dir or None, source.download)
    if not source.validation:
        return train, test
    kept, held_out = split_by_class(
        np.arange(len(train)), train.labels, VALIDATION_FRACTION, VALIDATION_SEED
    )
    return train.subset(kept), train.subset(held_out)


@lru_cache(maxsize=8)
def _cached_partitions(scheme: PartitionScheme) -> tuple[np.ndarray, ...]:
    train, _ = _cached_dataset(scheme.source)
    partitioner = make_partitioner(
        scheme.partitioner,
        scheme.num_partitions,
        seed=scheme.seed,
        dirichlet_alpha=scheme.dirichlet_alpha,
        classes_per_client=scheme.classes_per_client,
        examples_per_class=scheme.examples_per_class,
    )
    if scheme.imbalance_factor == 1:
        return tuple(partition_indices(train.labels, partitioner, scheme.seed))
    rows = long_tail_indices(train.labels, train.num_classes, scheme.imbalance_factor, scheme.seed)
    parts = partition_indices(train.labels[rows], partitioner, scheme.seed)
    return tuple(rows[part] for part in parts)


def load_client_data(
    scheme: PartitionScheme, partition_id: int, labelled_fraction: float = 1.0
) -> ClientData:
    """Partition ``partition_id`` of the scheme, split into train and local test, with
    only ``labelled_fraction`` of its training images labelled (the rest kept as
    ``unlabelled``; :func:`~flower_synth.data.labels.hide_labels`).

    The same scheme gives the same split in every process.
    """
    if not 0 <= partition_id < scheme.num_partitions:
        raise ValueError(
            f"partition-id must lie in [0, {scheme.num_partitions}), got {partition_id}; check "
            f"the node config (`partition-id`, `num-partitions`)"
        )
    train, _ = _cached_dataset(scheme.source)
    indices = _cached_partitions(scheme)[partition_id]
    train_idx, test_idx = split_by_class(
        indices, train.labels, scheme.local_test_fraction, seed=scheme.seed + partition_id
    )
    data = ClientData(train=train.subset(train_idx), test=train.subset(test_idx))
    return hide_labels(data, labelled_fraction, seed=scheme.seed + partition_id)


def load_global_test(source: DataSource) -> ImageDataset:
    """The dataset's own (class-balanced) test set, used for server-side evaluation
    (with ``source.validation``: the held-out part of the training set)."""
    return _cached_dataset(source)[1]


def load_global_train(source: DataSource) -> ImageDataset:
    """The dataset's whole training set (with ``source.validation``: the part not held
    out), e.g. for a reference classifier trained on all real training images."""
    return _cached_dataset(source)[0]


def load_partitions(scheme: PartitionScheme) -> list[np.ndarray]:
    """Training-set row indices of every partition (for statistics and tests)."""
    return list(_cached_partitions(scheme))
