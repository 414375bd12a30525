"""Local training and evaluation of a torch classifier on an :class:`ImageDataset`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
)
from torchvision.transforms import v2

from flower_synth.data.image_dataset import ImageDataset

EVAL_BATCH_SIZE = 1000


def image_transform(channels: int) -> v2.Compose:
    """uint8 images -> float32 in [-1, 1], the input scale of every model here."""
    return v2.Compose(
        [v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5] * channels, [0.5] * channels)]
    )


def to_tensor_dataset(data: ImageDataset) -> TensorDataset:
    """Transform all images once (they fit in memory) and pair them with labels."""
    images = image_transform(data.image_shape[0])(torch.from_numpy(data.images))
    return TensorDataset(images, torch.from_numpy(data.labels))


def make_loader(data: ImageDataset, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    """Batches of ``(images, labels)``; shuffled with a generator seeded by ``seed``.

    Whole batches are indexed at once (a ``BatchSampler`` as sampler), which is much
    faster on CPU than collating examples one by one.
    """
    dataset = to_tensor_dataset(data)
    order = (
        RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
        if shuffle
        else SequentialSampler(dataset)
    )
    return DataLoader(
        dataset, sampler=BatchSampler(order, batch_size, drop_last=False), batch_size=None
    )


def get_weights(model: nn.Module) -> list[np.ndarray]:
    """The model's ``state_dict`` as a list of float32 numpy arrays, in order."""
    return [value.detach().cpu().numpy().copy() for value in model.state_dict().values()]


def set_weights(model: nn.Module, weights: Sequence[np.ndarray]) -> None:
    """Load arrays produced by :func:`get_weights` (same architecture) into ``model``."""
    keys = list(model.state_dict().keys())
    if len(keys) != len(weights):
        raise ValueError(f"model has {len(keys)} tensors, got {len(weights)} arrays")
    state = {key: torch.as_tensor(np.asarray(w)) for key, w in zip(keys, weights, strict=True)}
    model.load_state_dict(state, strict=True)


def train(
    model: nn.Module,
    loader: DataLoader,
    epochs: int,
    learning_rate: float,
    momentum: float = 0.9,
    proximal_mu: float = 0.0,
) -> float:
    """SGD on cross-entropy for ``epochs`` epochs; returns the mean loss of the last epoch.

    With ``proximal_mu > 0`` the FedProx term ``mu/2 * ||w - w_start||^2`` is added,
    ``w_start`` being the weights the model had when this call began (the global model).
    """
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=momentum)
    anchor = [p.detach().clone() for p in model.parameters()] if proximal_mu > 0 else None
    criterion = nn.CrossEntropyLoss()
    model.train()
    epoch_loss = float("nan")
    for _ in range(epochs):
        total, count = 0.0, 0
        for images, labels in loader:
            optimizer.zero_grad()
            loss = criterion(model(images), labels)
            if anchor is not None:
                drift = sum(
                    (p - a).pow(2).sum() for p, a in zip(model.parameters(), anchor, strict=True)
                )
                loss = loss + 0.5 * proximal_mu * drift
            loss.backward()
            optimizer.step()
            total += loss.item() * len(labels)
            count += len(labels)
        epoch_loss = total / max(count, 1)
    return epoch_loss


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageDataset) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``data``."""
    if len(data) == 0:
        return float("nan"), float("nan")
    model.eval()
    loss_sum, correct = 0.0, 0
    criterion = nn.CrossEntropyLoss(reduction="sum")
    for images, labels in make_loader(data, EVAL_BATCH_SIZE, shuffle=False):
        logits = model(images)
        loss_sum += criterion(logits, labels).item()
        correct += int((logits.argmax(dim=1) == labels).sum())
    return loss_sum / len(data), correct / len(data)
