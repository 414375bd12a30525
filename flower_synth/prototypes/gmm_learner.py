"""The client side of GMM-prototype learning (GFPL-style)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from flwr.app import RecordDict

from flower_synth.data.client_data import ClientData
from flower_synth.learning.state import load_arrays, save_arrays
from flower_synth.models import DualHeadClassifier
from flower_synth.privacy import PrivacyLedger
from flower_synth.prototypes.gmm_terms import PSEUDO_WEIGHT, PULL_WEIGHT, GMMPrototypeTerms
from flower_synth.prototypes.learner import PrototypeLearner
from flower_synth.prototypes.private_gaussians import private_class_gaussians
from flower_synth.prototypes.wire import decode_mixtures, encode_mixtures

STATE_KEY = "gmm-prototype"
LEDGER_KEY = f"{STATE_KEY}.privacy"  # a private client's ledger in its state


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
        private: ``(noise_multiplier, delta)``: upload instead, every round, one
            diagonal Gaussian per class released with the Gaussian mechanism from the
            features clipped to the sphere of radius ``sqrt(feature_dim)``
            (:func:`~flower_synth.prototypes.private_gaussians.private_class_gaussians`),
            the privacy spent kept in the state and reported as ``dp_epsilon`` at
            ``delta``; None: the fitted mixtures.
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
        private: tuple[float, float] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(model, data, state, STATE_KEY, **options)
        self.private = private
        self.spent: float | None = None
        self.terms = GMMPrototypeTerms(
            self.num_classes,
            model.feature_dim,
            n_components,
            covariance_type,
            min_samples,
            pseudo_per_class,
            pseudo_weight,
            pull_weight,
            dr_lambda,
        )

    def training_terms(self, received: list[np.ndarray], seed: int) -> dict[str, Any]:
        """Dot-Regression and the pull on the real features, and pseudo-features
        topping up classes, with their weight (:class:`GMMPrototypeTerms`)."""
        local_counts = np.bincount(self.data.train.labels, minlength=self.num_classes)
        return self.terms.training_terms(received, self.model.etf, local_counts, seed)

    def trained_prior(self, terms: Mapping[str, Any]) -> np.ndarray | None:
        """The head's label mix: the real one, plus ``pseudo_weight`` times the
        pseudo-features'; None without pseudo-features."""
        return self.terms.trained_prior(terms, self.real_prior)

    def summarize(self, seed: int) -> list[np.ndarray]:
        """Per-class Gaussian mixtures of the features, encoded for the wire."""
        features, labels = self.training_features()
        if self.private is None:
            return self.terms.summarize(features, labels, seed, self.prototype_dtype)
        noise, delta = self.private
        stored = load_arrays(self.state, LEDGER_KEY)
        ledger = PrivacyLedger(None if stored is None else stored["history"])
        radius = float(np.sqrt(features.shape[1]))
        rng = np.random.default_rng(seed)
        released = private_class_gaussians(
            features, labels, self.num_classes, noise, radius, ledger, rng
        )
        save_arrays(self.state, LEDGER_KEY, {"history": ledger.to_array()})
        self.spent = ledger.epsilon(delta)
        return encode_mixtures(released, self.prototype_dtype)

    def shared_points(self, summary: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The mixture components' means the payload carries."""
        mixtures = decode_mixtures(
            summary, self.num_classes, self.model.feature_dim, self.terms.wire_covariance
        )
        return mixtures.means, mixtures.labels

    def release_metrics(self) -> dict[str, Any]:
        """``dp_epsilon`` for a private client: what it has spent so far."""
        return {} if self.spent is None else {"dp_epsilon": self.spent}
