"""Datasets, partitions and the per-client view of them."""

from flower_synth.data.federated import (
    ClientData,
    DataSource,
    PartitionScheme,
    load_client_data,
    load_global_test,
    load_global_train,
)
from flower_synth.data.image_dataset import ImageDataset
from flower_synth.data.labels import hide_labels
from flower_synth.data.loaders import client_data_from_loaders
from flower_synth.data.partition import PARTITIONERS, make_partitioner, partition_indices
from flower_synth.data.sources import DATASETS, DatasetNotFoundError, load_dataset

__all__ = [
    "DATASETS",
    "PARTITIONERS",
    "PartitionScheme",
    "ClientData",
    "DataSource",
    "DatasetNotFoundError",
    "ImageDataset",
    "client_data_from_loaders",
    "hide_labels",
    "load_client_data",
    "load_dataset",
    "load_global_test",
    "load_global_train",
    "make_partitioner",
    "partition_indices",
]
