"""What one client holds: its labelled training and local test splits, its unlabelled
images, and how its classifier's inputs are normalised."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flower_synth.data.image_dataset import ImageDataset
from flower_synth.learning.normalization import SYMMETRIC, Normalization


@dataclass(frozen=True)
class ClientData:
    """A client's labelled training split and its local test split (same label
    distribution), with how its classifier's inputs are normalised
    (:class:`Normalization`; the default maps [0, 1] to [-1, 1]), and the training
    images it holds without labels (``unlabelled``: ``uint8`` ``(N, C, H, W)``, none by
    default; :func:`~flower_synth.data.labels.hide_labels` makes a partly labelled
    client). :func:`~flower_synth.data.client_data_from_loaders` builds one from your
    own DataLoaders."""

    train: ImageDataset
    test: ImageDataset
    normalization: Normalization = SYMMETRIC
    unlabelled: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.unlabelled is not None and (
            self.unlabelled.dtype != np.uint8
            or self.unlabelled.shape[1:] != self.train.images.shape[1:]
        ):
            raise ValueError(
                f"unlabelled images must be uint8 of shape (N, *{self.train.image_shape}) like "
                f"the training images, got {self.unlabelled.dtype} {self.unlabelled.shape}"
            )

    @property
    def num_unlabelled(self) -> int:
        """Training images without labels."""
        return 0 if self.unlabelled is None else len(self.unlabelled)

    @property
    def num_images(self) -> int:
        """Training images, labelled or not: what a round's training is sized by."""
        return len(self.train) + self.num_unlabelled
