"""A client's data as the library's learners take it (:class:`ClientData`, from your own
DataLoaders with :func:`client_data_from_loaders`), and the Flower App's datasets and
partitions.

The names of the App's data stack (``load_client_data``, ``load_dataset``, the
partitioners, ...) are imported on first use: they need the ``[app]`` extra
(``flwr-datasets``, ``datasets``, ``torchvision``), which a Flower project that only
imports the strategies and learners does not.
"""

from importlib import import_module
from typing import Any

from flower_synth.data.client_data import ClientData
from flower_synth.data.image_dataset import ImageDataset
from flower_synth.data.loaders import client_data_from_loaders
from flower_synth.learning.normalization import Normalization

_APP_NAMES = {
    "DataSource": "federated",
    "PartitionScheme": "federated",
    "load_client_data": "federated",
    "load_global_test": "federated",
    "load_global_train": "federated",
    "hide_labels": "labels",
    "PARTITIONERS": "partition",
    "make_partitioner": "partition",
    "partition_indices": "partition",
    "DATASETS": "sources",
    "DatasetNotFoundError": "sources",
    "load_dataset": "sources",
}


def __getattr__(name: str) -> Any:
    """The App's data-stack names, imported when first asked for."""
    if name in _APP_NAMES:
        return getattr(import_module(f"flower_synth.data.{_APP_NAMES[name]}"), name)
    raise AttributeError(f"module 'flower_synth.data' has no attribute {name!r}")


__all__ = [
    "ClientData",
    "ImageDataset",
    "Normalization",
    "client_data_from_loaders",
    *_APP_NAMES,
]
