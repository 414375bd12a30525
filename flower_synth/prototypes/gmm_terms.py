"""What GMM-prototype learning (GFPL-style) adds to a client's own training, and the
summary it uploads: shared by the learner, which runs the training loop, and the hooks,
which add the terms to a user's loop."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from flower_synth.learning.training import PseudoFeatures
from flower_synth.models.dual_head import dot_regression_loss
from flower_synth.prototypes.mixtures import fit_class_mixtures, top_up_counts
from flower_synth.prototypes.pull import MixturePull
from flower_synth.prototypes.wire import decode_mixtures, encode_mixtures

PSEUDO_WEIGHT = 1.0  # weight of the pseudo-feature loss beside the real-data loss
PULL_WEIGHT = 2.0  # weight of the pull towards the fused mixtures (chosen on the validation split)


@dataclass(frozen=True)
class GMMPrototypeTerms:
    """The training terms of GMM-prototype learning and the per-class mixtures a client
    uploads.

    On the real features ``h``: ``dr_lambda`` times Dot-Regression towards the fixed
    simplex ETF (identical on every client) and, once fused mixtures arrive,
    ``pull_weight`` times :class:`~flower_synth.prototypes.pull.MixturePull`.
    Pseudo-features drawn from the fused mixtures top every class up to
    ``pseudo_per_class`` examples (0: up to the client's largest class) and train the
    head alone, weighted ``pseudo_weight`` (0: none). The upload is an
    ``n_components``-component Gaussian mixture (scikit-learn) of the features of every
    class with at least ``min_samples`` examples.

    Args:
        num_classes: classes of the task.
        feature_dim: width of the features.
        n_components, covariance_type, min_samples: the per-class mixtures.
        pseudo_per_class, pseudo_weight, pull_weight, dr_lambda: the terms above.
    """

    num_classes: int
    feature_dim: int
    n_components: int = 3
    covariance_type: str = "diag"
    min_samples: int = 10
    pseudo_per_class: int = 0
    pseudo_weight: float = PSEUDO_WEIGHT
    pull_weight: float = PULL_WEIGHT
    dr_lambda: float = 1.0

    def __post_init__(self) -> None:
        if min(self.pseudo_per_class, self.pseudo_weight, self.pull_weight, self.dr_lambda) < 0:
            raise ValueError(
                "pseudo_per_class, pseudo_weight, pull_weight and dr_lambda must be >= 0"
            )

    @property
    def wire_covariance(self) -> str:
        """``"diag"`` or ``"full"``: how covariances travel."""
        return "diag" if self.covariance_type in ("diag", "spherical") else "full"

    def training_terms(
        self, received: list[np.ndarray], etf: torch.Tensor, local_counts: np.ndarray, seed: int
    ) -> dict[str, Any]:
        """Keyword arguments of :func:`~flower_synth.learning.training.train`:
        ``feature_loss`` (Dot-Regression towards ``etf``, and the pull once ``received``
        holds fused mixtures), ``pseudo`` (topping up ``local_counts``, the client's
        examples per class) and ``pseudo_weight``."""
        terms: dict[str, Any] = {"pseudo_weight": self.pseudo_weight}
        if not received:
            terms["feature_loss"] = lambda h, y: self.dr_lambda * dot_regression_loss(h, y, etf)
            return terms
        mixtures = decode_mixtures(
            received, self.num_classes, self.feature_dim, self.wire_covariance
        )
        pull = MixturePull(mixtures, self.num_classes)
        terms["feature_loss"] = lambda h, y: (
            self.dr_lambda * dot_regression_loss(h, y, etf) + self.pull_weight * pull(h, y)
        )
        if self.pseudo_weight > 0:
            counts = top_up_counts(local_counts, mixtures.classes, self.pseudo_per_class)
            features, labels = mixtures.sample(counts, np.random.default_rng(seed))
            if len(labels):
                terms["pseudo"] = PseudoFeatures(features, labels)
        return terms

    def trained_prior(self, terms: Mapping[str, Any], real_prior: np.ndarray) -> np.ndarray | None:
        """The label mix a head learns with ``terms``: ``real_prior`` plus
        ``pseudo_weight`` times the pseudo-features' (each part weighs as a mean over its
        examples); None without pseudo-features."""
        pseudo = terms.get("pseudo")
        if pseudo is None:
            return None
        extra = np.bincount(pseudo.labels, minlength=self.num_classes) / len(pseudo)
        mix = real_prior + self.pseudo_weight * extra
        return mix / mix.sum()

    def summarize(
        self, features: np.ndarray, labels: np.ndarray, seed: int, dtype: str
    ) -> list[np.ndarray]:
        """Per-class Gaussian mixtures of ``features``, encoded for the wire in ``dtype``."""
        mixtures = fit_class_mixtures(
            features,
            labels,
            self.num_classes,
            self.n_components,
            self.covariance_type,
            self.min_samples,
            random_state=seed,
        )
        return encode_mixtures(mixtures, dtype)
