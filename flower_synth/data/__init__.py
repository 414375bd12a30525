"""Datasets, partitions and the per-client view of them."""

from flower_synth.data.federated import ClientData, load_client_data, load_global_test
from flower_synth.data.image_dataset import ImageDataset
from flower_synth.data.partition import PARTITIONERS, make_partitioner, partition_indices
from flower_synth.data.sources import DATASETS, DatasetNotFoundError, load_dataset

__all__ = [
    "DATASETS",
    "PARTITIONERS",
    "ClientData",
    "DatasetNotFoundError",
    "ImageDataset",
    "load_client_data",
    "load_dataset",
    "load_global_test",
    "make_partitioner",
    "partition_indices",
]
