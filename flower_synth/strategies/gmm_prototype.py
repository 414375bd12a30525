"""GMM prototypes (GFPL-style): clients send per-class Gaussian mixtures of their
features; the server fuses them by Bhattacharyya distance."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from flwr.common import FitRes, NDArrays, Scalar
from flwr.server.client_proxy import ClientProxy

from flower_synth.prototypes import (
    ClassMixtures,
    decode_mixtures,
    encode_mixtures,
    fuse_mixtures,
)
from flower_synth.strategies.prototype_exchange import PrototypeExchangeStrategy


class GMMPrototypeStrategy(PrototypeExchangeStrategy[ClassMixtures]):
    """Federated prototype learning with Gaussian-mixture prototypes.

    Each client uploads, per class, a Gaussian mixture of its features with the
    class count ``n_c`` (``[labels, weights, means, covariances, class_counts]``).
    Per class, the server pools all clients' components with mass ``n_c * pi_k`` and
    merges the closest pair by Bhattacharyya distance (moment matching) while that
    distance is below ``tau`` or more than ``max_components`` remain; the fused
    mixtures go back to every client, which draws pseudo-features from them to top
    up the classes it lacks. No model weights travel.

    Args:
        num_classes: labels must lie in ``[0, num_classes)``.
        feature_dim: width of the feature vectors.
        covariance: ``"diag"`` (variance vectors) or ``"full"``; payloads of the other
            kind are rejected.
        tau: Bhattacharyya distance below which components merge (0: only the cap).
        max_components: at most this many fused components per class (None: no cap).
        max_client_components: payloads with more components in a class are rejected.
        dtype: float format of the broadcast, ``"float16"`` or ``"float32"``.
        **sampling: client sampling and metric aggregation, as in
            :class:`~flower_synth.strategies.model_free.ModelFreeStrategy`.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        feature_dim: int,
        covariance: str = "diag",
        tau: float = 1.0,
        max_components: int | None = 5,
        max_client_components: int = 32,
        dtype: str = "float16",
        **sampling,
    ) -> None:
        super().__init__(**sampling)
        if covariance not in ("diag", "full"):
            raise ValueError(f"covariance must be 'diag' or 'full', got {covariance!r}")
        if tau < 0 or (max_components is not None and max_components < 1):
            raise ValueError("tau must be >= 0 and max_components >= 1 (or None)")
        self.num_classes = num_classes
        self.feature_dim = feature_dim
        self.covariance = covariance
        self.tau = tau
        self.max_components = max_components
        self.max_client_components = max_client_components
        self.dtype = dtype

    def __repr__(self) -> str:
        return (
            f"GMMPrototypeStrategy(tau={self.tau}, max_components={self.max_components}, "
            f"covariance={self.covariance!r})"
        )

    def decode(self, client: ClientProxy, arrays: NDArrays, res: FitRes) -> ClassMixtures:
        """Validate one client's mixtures (see :func:`~flower_synth.prototypes.decode_mixtures`)."""
        return decode_mixtures(
            arrays, self.num_classes, self.feature_dim, self.covariance, self.max_client_components
        )

    def fuse(self, summaries: Sequence[ClassMixtures]) -> ClassMixtures:
        """Bhattacharyya fusion per class (see :func:`~flower_synth.prototypes.fuse_mixtures`)."""
        return fuse_mixtures(summaries, self.tau, self.max_components)

    def encode(self, summary: ClassMixtures) -> NDArrays:
        """The fused mixtures in the wire format, as ``dtype``."""
        return encode_mixtures(summary, self.dtype)

    def summary_metrics(self, summary: ClassMixtures) -> dict[str, Scalar]:
        """``global_components`` and ``global_classes`` of the fused mixtures."""
        return {
            "global_components": len(summary),
            "global_classes": int(np.unique(summary.labels).size),
        }
