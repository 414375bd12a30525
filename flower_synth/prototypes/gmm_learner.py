"""The client side of GMM-prototype learning (GFPL-style)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from flwr.app import RecordDict

from flower_synth.data.client_data import ClientData
from flower_synth.learning.training import PseudoFeatures
from flower_synth.models import DualHeadClassifier, dot_regression_loss
from flower_synth.prototypes import (
    decode_mixtures,
    encode_mixtures,
    fit_class_mixtures,
    top_up_counts,
)
from flower_synth.prototypes.learner import PrototypeLearner
from flower_synth.prototypes.pull import MixturePull

STATE_KEY = "gmm-prototype"
PSEUDO_WEIGHT = 1.0  # weight of the pseudo-feature loss beside the real-data loss
PULL_WEIGHT = 2.0  # weight of the pull towards the fused mixtures (chosen on the validation split)


class GMMPrototypeLearner(PrototypeLearner):
    """Dual-classifier training with pseudo-features from fused Gaussian mixtures.

    On its real data the model's loss is cross-entropy on the learnable head plus
    ``dr_lambda`` times Dot-Regression towards the fixed simplex ETF (identical on every
    client), which aligns the clients' feature directions, plus, from round 2 on,
    ``pull_weight`` times :class:`~flower_synth.prototypes.pull.MixturePull`: the
    squared distance of each feature to the responsible component of its class's fused
    mixture, which aligns the rest of the feature geometry (norm, directions outside
    the ETF span). From round 2 on the client also draws pseudo-features from the
    received mixtures to top every class up to ``pseudo_per_class`` examples (0: up to
    its largest class, i.e. class-balanced); they train the learnable head alone, as a
    separate loss term of weight ``pseudo_weight`` (the real examples' loss keeps its
    size however many pseudo-features there are; 0: no pseudo-features). The head thus
    learns a label mix between the real and the balanced one (:meth:`trained_prior`),
    which evaluation undoes: the client's real prior on its local test split, the
    uniform prior on the global test set. After training it fits an
    ``n_components``-component Gaussian mixture (scikit-learn) to the features of every
    class with at least ``min_samples`` examples and uploads
    ``[labels, weights, means, covariances, class_counts]``.

    Args:
        model: a :class:`~flower_synth.models.DualHeadClassifier`.
        data, state: as in :class:`PrototypeLearner`.
        n_components, covariance_type, min_samples: the per-class mixtures.
        pseudo_per_class: the class size pseudo-features top up to (0: balanced).
        pseudo_weight: weight of the pseudo-feature loss beside the real-data loss.
        pull_weight: weight of the pull towards the fused mixtures.
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
        pseudo_weight: float = PSEUDO_WEIGHT,
        pull_weight: float = PULL_WEIGHT,
        dr_lambda: float = 1.0,
        **options: Any,
    ) -> None:
        super().__init__(model, data, state, STATE_KEY, **options)
        if min(pseudo_per_class, pseudo_weight, pull_weight, dr_lambda) < 0:
            raise ValueError(
                "pseudo_per_class, pseudo_weight, pull_weight and dr_lambda must be >= 0"
            )
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.min_samples = min_samples
        self.pseudo_per_class = pseudo_per_class
        self.pseudo_weight = pseudo_weight
        self.pull_weight = pull_weight
        self.dr_lambda = dr_lambda

    @property
    def wire_covariance(self) -> str:
        """``"diag"`` or ``"full"``: how covariances travel."""
        return "diag" if self.covariance_type in ("diag", "spherical") else "full"

    def training_terms(self, received: list[np.ndarray], seed: int) -> dict[str, Any]:
        """Dot-Regression and the pull on the real features, and pseudo-features
        topping up classes, with their weight."""
        etf = self.model.etf
        terms: dict[str, Any] = {"pseudo_weight": self.pseudo_weight}
        if not received:
            terms["feature_loss"] = lambda h, y: self.dr_lambda * dot_regression_loss(h, y, etf)
            return terms
        mixtures = decode_mixtures(
            received, self.num_classes, self.model.feature_dim, self.wire_covariance
        )
        pull = MixturePull(mixtures, self.num_classes)
        terms["feature_loss"] = lambda h, y: (
            self.dr_lambda * dot_regression_loss(h, y, etf) + self.pull_weight * pull(h, y)
        )
        if self.pseudo_weight > 0:
            local_counts = np.bincount(self.data.train.labels, minlength=self.num_classes)
            counts = top_up_counts(local_counts, mixtures.classes, self.pseudo_per_class)
            features, labels = mixtures.sample(counts, np.random.default_rng(seed))
            if len(labels):
                terms["pseudo"] = PseudoFeatures(features, labels)
        return terms

    def trained_prior(self, terms: Mapping[str, Any]) -> np.ndarray | None:
        """The head's label mix: the real one, plus ``pseudo_weight`` times the
        pseudo-features' (each part weighs as a mean over its examples); None without
        pseudo-features."""
        pseudo = terms.get("pseudo")
        if pseudo is None:
            return None
        extra = np.bincount(pseudo.labels, minlength=self.num_classes) / len(pseudo)
        mix = self.real_prior + self.pseudo_weight * extra
        return mix / mix.sum()

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
