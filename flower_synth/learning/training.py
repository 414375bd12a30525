"""Local training and evaluation of a torch classifier on an :class:`ImageDataset`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    SequentialSampler,
    WeightedRandomSampler,
)

from flower_synth.data.image_dataset import ImageDataset
from flower_synth.learning.distillation import distillation_loss
from flower_synth.learning.normalization import SYMMETRIC, Normalization

EVAL_BATCH_SIZE = 1000
Device = str | torch.device


def to_unit_range(data: ImageDataset) -> np.ndarray:
    """The dataset's uint8 images as float32 in [0, 1] (the scale generators work in)."""
    return data.images.astype(np.float32) / 255.0


def model_inputs(images: np.ndarray, normalization: Normalization) -> torch.Tensor:
    """``uint8`` images ``(N, C, H, W)`` as a classifier's float inputs."""
    unit = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32) / 255.0
    return normalization.transform(images.shape[1])(unit)


class ImageBatches(Dataset):
    """Images with their targets and loss weights, indexed a whole batch at a time.

    Images are float intensities in [0, 1] or ``uint8`` (0..255, as datasets and
    payloads hold them); each batch is converted to float32 and normalised when it is
    drawn, so ``uint8`` data never exists as float32 all at once.
    """

    def __init__(
        self,
        images: np.ndarray,
        targets: torch.Tensor,
        weights: torch.Tensor,
        normalization: Normalization = SYMMETRIC,
    ) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.scale = 255.0 if images.dtype == np.uint8 else 1.0
        self.targets = targets
        self.weights = weights
        self.normalize = normalization.transform(images.shape[1])

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images = self.images[indices].to(torch.float32)
        if self.scale != 1.0:
            images = images / self.scale
        return self.normalize(images), self.targets[indices], self.weights[indices]


def make_loader(
    samples: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    weights: np.ndarray | None = None,
    draws: int | None = None,
    normalization: Normalization = SYMMETRIC,
) -> DataLoader:
    """Batches of ``(inputs, targets, weights)`` for images ``samples`` (floats in
    [0, 1], or ``uint8`` 0..255; see :class:`ImageBatches`).

    Inputs are normalised with ``normalization`` (default: to [-1, 1], the scale of
    every model here). ``labels`` are ``(N,)`` class indices or ``(N, C)`` probability rows
    (soft targets, trained on with the distillation loss).

    Without ``draws``, a pass visits every example once and ``weights`` (per example,
    default 1), rescaled to mean 1, weigh the loss, so a weighted mean loss per batch
    estimates the weighted objective. With ``draws``, a pass draws that many examples
    with replacement in proportion to ``weights`` (``WeightedRandomSampler``) and the
    loss is unweighted: the same objective at a cost set by ``draws``, not by the data.

    Shuffling and drawing use a generator seeded by ``seed``; whole batches are indexed
    at once (a ``BatchSampler`` as sampler), much faster on CPU than per-example collation.
    """
    weights = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64)
    targets = torch.from_numpy(
        labels.astype(np.float32) if labels.ndim == 2 else labels.astype(np.int64)
    )
    generator = torch.Generator().manual_seed(seed)
    if draws is not None:
        order = WeightedRandomSampler(weights, draws, replacement=True, generator=generator)
        weights = np.ones(len(labels))
    elif shuffle:
        order = RandomSampler(range(len(labels)), generator=generator)
    else:
        order = SequentialSampler(range(len(labels)))
    loss_weights = torch.from_numpy((weights / weights.mean()).astype(np.float32))
    if samples.dtype not in (np.uint8, np.float32):
        samples = samples.astype(np.float32)
    dataset = ImageBatches(samples, targets, loss_weights, normalization)
    sampler = BatchSampler(order, batch_size, drop_last=False)
    return DataLoader(dataset, sampler=sampler, batch_size=None)


def named_weights(model: nn.Module) -> dict[str, np.ndarray]:
    """The model's ``state_dict`` as numpy arrays (copies) by name, in order."""
    return {key: value.detach().cpu().numpy().copy() for key, value in model.state_dict().items()}


def get_weights(model: nn.Module) -> list[np.ndarray]:
    """The model's ``state_dict`` as a list of float32 numpy arrays, in order."""
    return list(named_weights(model).values())


def set_weights(model: nn.Module, weights: Sequence[np.ndarray]) -> None:
    """Load arrays produced by :func:`get_weights` (same architecture) into ``model``."""
    keys = list(model.state_dict().keys())
    if len(keys) != len(weights):
        raise ValueError(f"model has {len(keys)} tensors, got {len(weights)} arrays")
    state = {key: torch.as_tensor(np.asarray(w)) for key, w in zip(keys, weights, strict=True)}
    model.load_state_dict(state, strict=True)


FeatureLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class PseudoFeatures:
    """Feature vectors (not images) with labels, trained on by the head alone."""

    features: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batches(self, num_batches: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A seeded shuffle split into ``num_batches`` near-equal batches."""
        order = np.random.default_rng(seed).permutation(len(self))
        return [
            (
                torch.from_numpy(self.features[part].astype(np.float32)),
                torch.from_numpy(self.labels[part].astype(np.int64)),
            )
            for part in np.array_split(order, num_batches)
        ]


def train(
    model: nn.Module,
    loader: DataLoader,
    epochs: int,
    learning_rate: float,
    momentum: float = 0.9,
    proximal_mu: float = 0.0,
    feature_loss: FeatureLoss | None = None,
    pseudo: PseudoFeatures | None = None,
    pseudo_weight: float = 1.0,
    seed: int = 0,
    temperature: float = 1.0,
    weight_decay: float = 0.0,
    device: Device = "cpu",
) -> float:
    """SGD on (example-weighted) cross-entropy for ``epochs`` epochs; returns the mean
    loss of the last epoch.

    Batches with soft targets (``(N, C)`` rows) are trained on with
    :func:`~flower_synth.learning.distillation.distillation_loss` at ``temperature``; hard
    labels with cross-entropy. ``weight_decay`` is SGD's L2 penalty. The model is
    moved to ``device`` and every batch with it.

    A model with ``features`` and ``head`` is trained through them (its learnable head,
    whatever its ``forward`` predicts with); any other module through ``forward``.

    Optional terms (they need a ``model`` with ``features`` and ``head``):

    * ``proximal_mu > 0``: the FedProx term ``mu/2 * ||w - w_start||^2``, ``w_start``
      being the weights the model had when this call began (the global model);
    * ``feature_loss(h, labels)``: per-example losses on the batch's features (e.g.
      Dot-Regression, or FedProto's distance to the global prototypes), added to the
      per-example cross-entropy before weighting;
    * ``pseudo``: feature vectors spread evenly over each epoch's batches (shuffled
      with ``seed`` and the epoch), trained on by the head alone: a batch's loss is the
      mean loss of its real examples plus ``pseudo_weight`` times the mean
      cross-entropy of its pseudo-features, so however many pseudo-features there are,
      the real examples' gradient keeps its size (``pseudo_weight = 0``: exactly as
      without ``pseudo``).
    """
    if pseudo_weight < 0:
        raise ValueError(f"pseudo_weight must be >= 0, got {pseudo_weight}")
    model.to(device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=learning_rate, momentum=momentum, weight_decay=weight_decay
    )
    anchor = [p.detach().clone() for p in model.parameters()] if proximal_mu > 0 else None
    criterion = nn.CrossEntropyLoss(reduction="none")
    model.train()
    epoch_loss = float("nan")
    for epoch in range(epochs):
        total, count = 0.0, 0
        extra = pseudo.batches(len(loader), seed + epoch) if pseudo is not None else None
        for step, batch in enumerate(loader):
            images, labels, weights = (tensor.to(device) for tensor in batch)
            optimizer.zero_grad()
            features, logits = forward_split(model, images)
            if labels.ndim == 2:
                per_example = distillation_loss(logits, labels, temperature)
            else:
                per_example = criterion(logits, labels)
            if feature_loss is not None:
                per_example = per_example + feature_loss(features, labels)
            loss = (weights * per_example).mean()
            if extra is not None and pseudo_weight > 0 and len(extra[step][1]):
                pseudo_features, pseudo_labels = (tensor.to(device) for tensor in extra[step])
                pseudo_loss = criterion(model.head(pseudo_features), pseudo_labels).mean()
                loss = loss + pseudo_weight * pseudo_loss
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


def forward_split(
    model: nn.Module, images: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """``(features, logits)`` of ``images``: through ``model.features`` and
    ``model.head`` where the model has them, else ``(None, model(images))``."""
    if hasattr(model, "features") and hasattr(model, "head"):
        features = model.features(images)
        return features, model.head(features)
    return None, model(images)


@torch.no_grad()
def predict(
    function: Callable[[torch.Tensor], torch.Tensor],
    samples: np.ndarray,
    normalization: Normalization = SYMMETRIC,
    device: Device = "cpu",
) -> np.ndarray:
    """``function`` of images ``samples`` (in [0, 1], or ``uint8``), batch by batch, as
    a numpy array."""
    labels = np.zeros(len(samples), np.int64)
    batches = make_loader(samples, labels, EVAL_BATCH_SIZE, False, normalization=normalization)
    return np.concatenate([function(inputs.to(device)).cpu().numpy() for inputs, _, _ in batches])


def extract_features(
    model: nn.Module,
    samples: np.ndarray,
    normalization: Normalization = SYMMETRIC,
    device: Device = "cpu",
) -> np.ndarray:
    """``model.features`` of images ``samples`` in [0, 1], as float32 ``(N, d)``."""
    model.to(device).eval()
    return predict(model.features, samples, normalization, device)


def class_probabilities(
    model: nn.Module,
    samples: np.ndarray,
    normalization: Normalization = SYMMETRIC,
    device: Device = "cpu",
) -> np.ndarray:
    """Softmax outputs of ``model`` for images ``samples`` in [0, 1], ``(N, classes)``."""
    model.to(device).eval()
    return predict(lambda x: torch.softmax(model(x), dim=1), samples, normalization, device)


def score(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Mean negative log-likelihood and accuracy of class ``probabilities``."""
    picked = probabilities[np.arange(len(labels)), labels]
    loss = float(-np.log(np.clip(picked, 1e-12, None)).mean())
    return loss, float((probabilities.argmax(axis=1) == labels).mean())


def evaluate(
    model: nn.Module,
    data: ImageDataset,
    normalization: Normalization = SYMMETRIC,
    device: Device = "cpu",
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``data``."""
    if len(data) == 0:
        return float("nan"), float("nan")
    probabilities = class_probabilities(model, data.images, normalization, device)
    return score(probabilities, data.labels)
