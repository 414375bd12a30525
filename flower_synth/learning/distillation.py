"""Learning from soft labels, and correcting a classifier's class prior.

Soft labels are the class probabilities ``q`` a generating client's classifier gives
its own samples. A receiver trains on them with the distillation loss of Hinton et
al. (2015): ``T**2 * CE(softmax(log q / T), softmax(logits / T))``. The temperature
``T`` is applied on the receiving side, to the probabilities as they travel
(``T > 1`` softens both sides, ``T = 1`` is plain soft cross-entropy); the ``T**2``
keeps gradient magnitudes comparable across temperatures. For one-hot targets at
``T = 1`` the loss is the ordinary cross-entropy.

A classifier trained on a label mix ``p_train(y)`` predicts with that prior. Logit
adjustment (Menon et al., 2021) moves it to another prior ``p(y)``:
``p(y | x) ~ p_train(y | x) * p(y) / p_train(y)``. A class the classifier hardly
trained on (``p_train(y) < MIN_TRAINED_PRIOR``) carries no evidence to rescale:
dividing by its tiny prior would let it win every prediction, so it gets
probability 0 instead.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

MIN_TRAINED_PRIOR = 1e-2


def soften(targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """``softmax(log q / T)`` of probability rows ``q`` (one-hot rows stay one-hot)."""
    if temperature == 1.0:
        return targets
    return torch.softmax(torch.log(targets.clamp_min(1e-12)) / temperature, dim=1)


def distillation_loss(
    logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Per-example distillation loss of ``logits`` ``(N, C)`` against probability rows
    ``targets`` ``(N, C)`` at ``temperature`` (see the module docstring)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    scaled = logits / temperature
    return F.cross_entropy(scaled, soften(targets, temperature), reduction="none") * temperature**2


def adjust_prior(
    probabilities: np.ndarray, trained_prior: np.ndarray, target_prior: np.ndarray
) -> np.ndarray:
    """Class probabilities ``(N, C)`` of a classifier trained with label mix
    ``trained_prior``, moved to ``target_prior`` by logit adjustment (see the module
    docstring). Rows that no class keeps fall back to ``target_prior``."""
    trained = np.asarray(trained_prior, dtype=np.float64)
    target = np.asarray(target_prior, dtype=np.float64)
    supported = trained >= MIN_TRAINED_PRIOR
    ratio = np.where(supported, target / np.where(supported, trained, 1.0), 0.0)
    adjusted = probabilities * ratio
    total = adjusted.sum(axis=1, keepdims=True)
    fallback = target / target.sum()
    return np.where(total > 0, adjusted / np.where(total > 0, total, 1.0), fallback)
