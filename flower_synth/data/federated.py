"""What one client (or the server) sees of a dataset in a federated run."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from flower_synth.data.image_dataset import ImageDataset
from flower_synth.data.partition import make_partitioner, partition_indices, split_by_class
from flower_synth.data.sources import load_dataset

if TYPE_CHECKING:
    from flower_synth.config import RunSettings


@dataclass(frozen=True)
class ClientData:
    """A client's training split and its local test split (same label distribution)."""

    train: ImageDataset
    test: ImageDataset


@lru_cache(maxsize=2)
def _cached_dataset(name: str, data_dir: str, download: bool) -> tuple[ImageDataset, ImageDataset]:
    # Ray reuses worker processes across rounds and clients: read the files once each.
    return load_dataset(name, data_dir or None, download)


@lru_cache(maxsize=8)
def _cached_partitions(settings: RunSettings, num_partitions: int) -> tuple[np.ndarray, ...]:
    train, _ = _cached_dataset(settings.dataset, settings.data_dir, settings.download)
    partitioner = make_partitioner(
        settings.partitioner,
        num_partitions,
        seed=settings.seed,
        dirichlet_alpha=settings.dirichlet_alpha,
        classes_per_client=settings.classes_per_client,
    )
    return tuple(partition_indices(train.labels, partitioner, settings.seed))


def load_client_data(settings: RunSettings, partition_id: int, num_partitions: int) -> ClientData:
    """Partition ``partition_id`` of ``num_partitions``, split into train and local test.

    The same settings and partition count give the same split in every process.
    """
    if not 0 <= partition_id < num_partitions:
        raise ValueError(
            f"partition-id must lie in [0, {num_partitions}), got {partition_id}; check the "
            f"node config (`partition-id`, `num-partitions`)"
        )
    train, _ = _cached_dataset(settings.dataset, settings.data_dir, settings.download)
    indices = _cached_partitions(settings, num_partitions)[partition_id]
    train_idx, test_idx = split_by_class(
        indices, train.labels, settings.local_test_fraction, seed=settings.seed + partition_id
    )
    return ClientData(train=train.subset(train_idx), test=train.subset(test_idx))


def load_global_test(settings: RunSettings) -> ImageDataset:
    """The dataset's own (class-balanced) test set, used for server-side evaluation."""
    return _cached_dataset(settings.dataset, settings.data_dir, settings.download)[1]


def load_partitions(settings: RunSettings, num_partitions: int) -> list[np.ndarray]:
    """Training-set row indices of every partition (for statistics and tests)."""
    return list(_cached_partitions(settings, num_partitions))
