"""In-memory labelled image dataset shared by every data source."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ImageDataset:
    """Images as ``uint8`` arrays of shape ``(N, C, H, W)`` with integer labels.

    Every source (Fashion-MNIST, MNIST, CIFAR-10, scikit-learn digits) is brought to
    this one layout, so partitioning, models and payload codecs handle one case.
    """

    images: np.ndarray
    labels: np.ndarray
    num_classes: int

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 with shape (N, C, H, W), got {self.images.dtype} "
                f"{self.images.shape}"
            )
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"labels must have shape ({self.images.shape[0]},), got {self.labels.shape}"
            )
        if self.labels.size and (self.labels.min() < 0 or self.labels.max() >= self.num_classes):
            raise ValueError(
                f"labels must lie in [0, {self.num_classes}), got "
                f"[{self.labels.min()}, {self.labels.max()}]"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Shape ``(C, H, W)`` of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, indices: np.ndarray) -> ImageDataset:
        """Return the examples at ``indices`` as a new dataset."""
        return ImageDataset(self.images[indices], self.labels[indices], self.num_classes)

    def balanced_subset(self, size: int, seed: int) -> ImageDataset:
        """``size`` examples drawn without replacement, as evenly over the classes as
        the classes allow (a class short of its share gives all it has, the others make
        up the rest), by ``seed``, in the dataset's order; the whole dataset when
        ``size`` is 0 or at least its length."""
        if size < 0:
            raise ValueError(f"a subset's size must be >= 0, got {size}")
        if size == 0 or size >= len(self):
            return self
        rng = np.random.default_rng(seed)
        by_class = [
            rng.permutation(np.flatnonzero(self.labels == c)) for c in range(self.num_classes)
        ]
        shares, remaining = {}, size
        smallest_first = sorted(range(self.num_classes), key=lambda c: len(by_class[c]))
        for done, c in enumerate(smallest_first):
            shares[c] = min(len(by_class[c]), remaining // (self.num_classes - done))
            remaining -= shares[c]
        rows = np.concatenate([by_class[c][: shares[c]] for c in range(self.num_classes)])
        return self.subset(np.sort(rows))

    def class_counts(self) -> np.ndarray:
        """Number of examples of each class, shape ``(num_classes,)``."""
        return np.bincount(self.labels, minlength=self.num_classes)

    def label_mix(self) -> np.ndarray:
        """Share of the examples in each class, shape ``(num_classes,)``, summing to 1."""
        return self.class_counts() / len(self)
