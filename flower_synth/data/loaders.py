"""A client's data from a Flower project's own torch DataLoaders or Datasets."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from flower_synth.data.client_data import ClientData
from flower_synth.data.image_dataset import ImageDataset
from flower_synth.learning.normalization import SYMMETRIC, Normalization

IMAGE_KEYS = ("img", "image", "pixel_values", "x")
LABEL_KEYS = ("label", "labels", "y")
COLLECT_BATCH_SIZE = 256
READ: dict[Hashable, ClientData] = {}  # client_data_from_loaders(cache_key=...) in this process


def client_data_from_loaders(
    train: DataLoader | Dataset,
    test: DataLoader | Dataset,
    num_classes: int,
    normalization: Normalization = SYMMETRIC,
    image_key: str | None = None,
    label_key: str | None = None,
    cache_key: Hashable | None = None,
) -> ClientData:
    """Read a client's training and local test data from your own loaders, once, into
    memory (generators fit and sample whole datasets, so they need them at hand).

    With a ``cache_key`` (say ``(context.run_id, context.node_id)``), what was read is
    kept in this process and given back for the same key without reading the loaders
    again: a learner is built anew for every message, the data need not be.

    Args:
        train, test: DataLoaders (or map-style Datasets) whose batches are
            ``(images, labels)`` pairs or dictionaries (Flower's quickstarts use
            ``{"img": ..., "label": ...}``); images ``(N, C, H, W)`` (or ``(N, H, W)``)
            as your transform leaves them.
        num_classes: number of classes of the task (not only those this client holds).
        normalization: the ``mean`` and ``std`` your transform normalised with; images
            are brought back to [0, 1] with them (and stored as 8-bit), and your model
            gets inputs normalised the same way.
        image_key, label_key: dictionary keys of images and labels (default: the first
            of ``img``/``image``/``pixel_values``/``x`` and ``label``/``labels``/``y``
            present).

    Raises:
        ValueError: a batch of another form, or labels outside ``[0, num_classes)``.
    """
    if cache_key is not None and cache_key in READ:
        return READ[cache_key]
    data = ClientData(
        train=collect(train, num_classes, normalization, image_key, label_key),
        test=collect(test, num_classes, normalization, image_key, label_key),
        normalization=normalization,
    )
    if cache_key is not None:
        READ[cache_key] = data
    return data


def collect(
    source: DataLoader | Dataset,
    num_classes: int,
    normalization: Normalization,
    image_key: str | None = None,
    label_key: str | None = None,
) -> ImageDataset:
    """Every example of ``source`` as an :class:`ImageDataset` (see
    :func:`client_data_from_loaders`)."""
    inputs, labels = collect_inputs(source, image_key, label_key)
    return to_image_dataset(inputs, labels, num_classes, normalization)


def collect_inputs(
    source: DataLoader | Dataset, image_key: str | None = None, label_key: str | None = None
) -> tuple[torch.Tensor, np.ndarray]:
    """Every example of ``source`` as your model takes it: float inputs ``(N, C, H, W)``
    on the CPU, and integer labels."""
    if not isinstance(source, DataLoader):
        source = DataLoader(source, batch_size=COLLECT_BATCH_SIZE)
    inputs, labels = [], []
    for batch in source:
        images, targets = split_batch(batch, image_key, label_key)
        images = torch.as_tensor(images, dtype=torch.float32).cpu()
        inputs.append(images.unsqueeze(1) if images.ndim == 3 else images)
        labels.append(torch.as_tensor(targets).cpu().numpy().astype(np.int64))
    if not inputs:
        raise ValueError("the loader yielded no batches; give the client its data")
    return torch.cat(inputs), np.concatenate(labels)


def to_image_dataset(
    inputs: torch.Tensor, labels: np.ndarray, num_classes: int, normalization: Normalization
) -> ImageDataset:
    """Model inputs brought back to 8-bit images with ``normalization``."""
    unit = normalization.inverse(inputs).clamp(0.0, 1.0)
    images = (unit * 255.0).round().to(torch.uint8).numpy()
    return ImageDataset(images, labels, num_classes)


def split_batch(batch: Any, image_key: str | None, label_key: str | None) -> tuple[Any, Any]:
    """``(images, labels)`` of one batch, a pair or a dictionary."""
    if isinstance(batch, Mapping):
        image = image_key or next((k for k in IMAGE_KEYS if k in batch), None)
        label = label_key or next((k for k in LABEL_KEYS if k in batch), None)
        if image not in batch or label not in batch:
            raise ValueError(
                f"a batch has keys {sorted(batch)}; name its images and labels with "
                "image_key=... and label_key=..."
            )
        return batch[image], batch[label]
    if isinstance(batch, Iterable) and not isinstance(batch, torch.Tensor):
        parts = list(batch)
        if len(parts) == 2:
            return parts[0], parts[1]
    raise ValueError(
        f"a batch must be (images, labels) or a dictionary of them, got {type(batch).__name__}"
    )
