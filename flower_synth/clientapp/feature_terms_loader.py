"""The loader a user's own train function iterates in a round of GMM-prototype
learning: their batches, unchanged, with the feature-space terms added to the gradient
of whatever loss their function takes of the model's output."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from flower_synth.data.loaders import split_batch


class AddedLoss(torch.autograd.Function):
    """``output`` unchanged; in the backward pass ``extra`` (a scalar loss) gets
    gradient 1, so ``loss.backward()`` of any loss of ``output`` also trains on
    ``extra``, as if ``extra`` had been added to that loss."""

    @staticmethod
    def forward(ctx: Any, output: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        """A copy of ``output``."""
        ctx.extra_dtype = extra.dtype
        return output.clone()

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``grad_output`` for ``output``, 1 for ``extra``."""
        return grad_output, torch.ones((), dtype=ctx.extra_dtype, device=grad_output.device)


class FeatureTermsLoader:
    """What your ``train`` function iterates in a round of GMM-prototype learning: every
    batch of your DataLoader as it comes; while it trains on a batch, the model's last
    linear layer (``head``) adds to the gradient of your loss the round's feature terms
    on that batch's features (the input of ``head``) and labels: the mean of
    ``terms["feature_loss"]`` (Dot-Regression, the pull) plus ``pseudo_weight`` times
    the cross-entropy of ``head`` on the step's pseudo-features (they train the head
    alone), exactly the loss the :class:`~flower_synth.prototypes.gmm_learner.GMMPrototypeLearner`
    trains on when your loss is a mean cross-entropy. The first training-mode forward
    pass of each batch carries them; a forward pass of another size, or in eval mode,
    carries none. ``len()`` and ``dataset`` are your loader's.

    Args:
        real: your training DataLoader (``(images, labels)`` pairs or dictionaries).
        head: the model's last linear layer.
        terms: :meth:`~flower_synth.prototypes.gmm_terms.GMMPrototypeTerms.training_terms`.
        seed: shuffles the pseudo-features over each epoch's batches.
    """

    def __init__(self, real: DataLoader, head: nn.Linear, terms: dict[str, Any], seed: int) -> None:
        self.real = real
        self.head = head
        self.terms = terms
        self.seed = seed
        self.epoch = 0
        self.current: tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None] | None = None
        self.handle = head.register_forward_hook(self.add_terms)

    @property
    def batch_size(self) -> int | None:
        """Your loader's batch size."""
        return self.real.batch_size

    @property
    def dataset(self) -> Any:
        """Your loader's dataset."""
        return self.real.dataset

    def __len__(self) -> int:
        return len(self.real)

    def __iter__(self) -> Iterator[Any]:
        pseudo = self.terms.get("pseudo")
        steps = pseudo.batches(len(self.real), self.seed + self.epoch) if pseudo else None
        self.epoch += 1
        for step, batch in enumerate(self.real):
            labels = torch.as_tensor(split_batch(batch, None, None)[1])
            self.current = (labels, None if steps is None else steps[step])
            yield batch
        self.current = None

    def add_terms(self, head: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> Any:
        """Forward hook of ``head``: ``output`` carrying the current batch's terms."""
        if not head.training or self.current is None or not torch.is_grad_enabled():
            return None
        labels, pseudo = self.current
        features = inputs[0].flatten(1)
        if labels.ndim != 1 or len(labels) != len(features):
            return None
        self.current = None
        extra = self.terms["feature_loss"](features, labels.to(features.device)).mean()
        weight = float(self.terms.get("pseudo_weight", 0.0))
        if pseudo is not None and weight > 0 and len(pseudo[1]):
            pseudo_features, pseudo_labels = (t.to(features.device) for t in pseudo)
            # within the range the batch's own features take in every dimension: a
            # Gaussian draw below a ReLU's zero is a feature the model cannot produce
            low, high = features.detach().amin(0), features.detach().amax(0)
            pseudo_features = torch.maximum(torch.minimum(pseudo_features, high), low)
            logits = F.linear(pseudo_features, head.weight, head.bias)
            extra = extra + weight * F.cross_entropy(logits, pseudo_labels)
        return AddedLoss.apply(output, extra)

    def close(self) -> None:
        """Remove the hook from ``head``: later forward passes are the model's own."""
        self.handle.remove()
