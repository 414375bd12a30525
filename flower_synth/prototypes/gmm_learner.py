"""The client side of GMM-prototype learning (GFPL-style)."""

from __future__ import annotations

from typing import Any

import numpy as np
from flwr.app import RecordDict

from flower_synth.data.federated import ClientData
from flower_synth.models import DualHeadClassifier, dot_regression_loss
from flower_synth.prototypes import (
    decode_mixtures,
    encode_mixtures,
    fit_class_mixtures,
    top_up_counts,
)
from flower_synth.prototypes.learner import PrototypeLearner
from flower_synth.training import PseudoFeatures

STATE_KEY = "gmm-prototype"


class GMMPrototypeLearner(PrototypeLearner):
    """Dual-classifier training with pseudo-features from fused Gaussian mixtures.

    The model's loss is cross-entropy on the learnable head plus ``dr_lambda`` times
    Dot-Regression towards the fixed simplex ETF (identical on every client), which
    keeps all clients' feature spaces aligned. From round 2 on, the client draws
    pseudo-features from the received global mixtures to top every class up to
    ``pseudo_per_class`` examples (0: up to its largest class, i.e. class-balanced);
    they train the learnable head beside the real features. After training it fits a
    ``n_components``-component Gaussian mixture (scikit-learn) to the features of
    every class with at least ``min_samples`` examples and uploads
    ``[labels, weights, means, covariances, class_counts]``.

    Args:
        model: a :class:`~flower_synth.models.DualHeadClassifier`.
        data, state: as in :class:`PrototypeLearner`.
        n_components, covariance_type, min_samples: the per-class mixtures.
        pseudo_per_class: the class size pseudo-features top up to (0: balanced).
        dr_lambda: weight of the Dot-Regression loss.
        **options: the remaining :class:`PrototypeLearner` options.
    """

    def __init__(
        self,
        model: DualHeadClassifier,
        data: ClientData,
        state: RecordDict,
        *,
        n_components: int = 3,
        covariance_type: str = "diag",
        min_samples: int = 10,
        pseudo_per_class: int = 0,
        dr_lambda: float = 1.0,
        **options: Any,
    ) -> None:
        super().__init__(model, data, state, STATE_KEY, **options)
        if pseudo_per_class < 0 or dr_lambda < 0:
            raise ValueError("pseudo_per_class and dr_lambda must be >= 0")
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.min_samples = min_samples
        self.pseudo_per_class = pseudo_per_class
        self.dr_lambda = dr_lambda

    @property
    def wire_covariance(self) -> str:
        """``"diag"`` or ``"full"``: how covariances travel."""
        return "diag" if self.covariance_type in ("diag", "spherical") else "full"

    def training_terms(self, received: list[np.ndarray], seed: int) -> dict[str, Any]:
        """Dot-Regression on the features, and pseudo-features topping up classes."""
        etf = self.model.etf
        terms: dict[str, Any] = {
            "feature_loss": lambda h, y: self.dr_lambda * dot_regression_loss(h, y, etf)
        }
        if received:
            mixtures = decode_mixtures(
                received, self.num_classes, self.model.feature_dim, self.wire_covariance
            )
            local_counts = np.bincount(self.data.train.labels, minlength=self.num_classes)
            counts = top_up_counts(local_counts, mixtures.classes, self.pseudo_per_class)
            features, labels = mixtures.sample(counts, np.random.default_rng(seed))
            if len(labels):
                terms["pseudo"] = PseudoFeatures(features, labels)
        return terms

    def summarize(self, seed: int) -> list[np.ndarray]:
        """Per-class Gaussian mixtures of the features, encoded for the wire."""
        features, labels = self.training_features()
        mixtures = fit_class_mixtures(
            features,
            labels,
            self.num_classes,
            self.n_components,
            self.covariance_type,
            self.min_samples,
            random_state=seed,
        )
        return encode_mixtures(mixtures, self.prototype_dtype)
