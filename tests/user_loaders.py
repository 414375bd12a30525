"""DataLoaders as a Flower user's project builds them, for the tests of the hooks that
add an exchange to the user's own handlers."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

SHAPE = (1, 8, 8)


class Rows(torch.utils.data.Dataset):
    """Dictionary rows as Flower's quickstarts give them, normalised with mean 0.1307 and
    std 0.3081 (not the package's default)."""

    def __init__(self, n: int) -> None:
        rng = np.random.default_rng(0)
        self.images = rng.integers(0, 2, (n, *SHAPE)).astype(np.float32)  # black and white
        self.labels = np.arange(n) % 10

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        image = (torch.from_numpy(self.images[i]) - 0.1307) / 0.3081
        return {"img": image, "label": int(self.labels[i])}


class CountingLoader(DataLoader):
    iterations = 0

    def __iter__(self):
        CountingLoader.iterations += 1
        return super().__iter__()
