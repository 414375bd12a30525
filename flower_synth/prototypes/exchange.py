"""The server's algorithm of prototype exchange, free of Flower's APIs: keep every
client's latest per-class feature summary, fuse them, broadcast the fusion."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, Generic, NotRequired, TypedDict, TypeVar

import numpy as np
from flwr.common import Scalar

from flower_synth.exchange import Accepted, ExchangeServer, Instructions, Reply
from flower_synth.payload import PayloadError
from flower_synth.prototypes.fusion import fuse_mixtures
from flower_synth.prototypes.means import ClassPrototypes, aggregate_prototypes
from flower_synth.prototypes.mixtures import ClassMixtures
from flower_synth.prototypes.wire import (
    decode_mixtures,
    decode_prototypes,
    encode_mixtures,
    encode_prototypes,
)

Summary = TypeVar("Summary")


class PrototypeExchange(ExchangeServer[Summary], Generic[Summary]):
    """Every sampled client receives the same global summary (nothing before the first
    fusion). Each accepted summary replaces its client's previous one (by node id), and
    all stored summaries are fused again, so with partial participation clients not
    sampled this round still count with their last summary. No model weights travel.

    Subclasses define :meth:`decode`, :meth:`fuse`, :meth:`encode` and
    :meth:`summary_metrics`.
    """

    def __init__(self) -> None:
        self.summaries: dict[str, Summary] = {}
        self.global_summary: Summary | None = None

    @abc.abstractmethod
    def fuse(self, summaries: Sequence[Summary]) -> Summary:
        """The global summary of the clients' summaries."""

    @abc.abstractmethod
    def encode(self, summary: Summary) -> list[np.ndarray]:
        """The global summary as arrays to send."""

    def summary_metrics(self, summary: Summary) -> dict[str, Scalar]:
        """Figures about the fused summary recorded each round (none by default)."""
        return {}

    def instructions(self, server_round: int, node_ids: Sequence[str]) -> Instructions:
        """The global summary (empty in round 1) for every node."""
        arrays = [] if self.global_summary is None else self.encode(self.global_summary)
        return {node: (arrays, {}) for node in node_ids}

    def aggregate(self, server_round: int, accepted: Sequence[Accepted[Summary]]) -> dict[str, Any]:
        """Store the accepted summaries and fuse all stored ones."""
        for item in accepted:
            self.summaries[item.reply.node_id] = item.decoded
        metrics: dict[str, Any] = {"summary_clients": len(self.summaries)}
        if self.summaries:
            self.global_summary = self.fuse(list(self.summaries.values()))
            metrics |= self.summary_metrics(self.global_summary)
        return metrics


class FedProtoOptions(TypedDict):
    """FedProto's settings, shared by both strategy classes."""

    num_classes: int
    feature_dim: int
    dtype: NotRequired[str]


class FedProtoExchange(PrototypeExchange[ClassPrototypes]):
    """FedProto (Tan et al., AAAI 2022): each client uploads ``[labels, means, counts]``;
    the global prototype of a class is the count-weighted mean of the clients'
    prototypes, broadcast to every client, which adds ``lambda * ||h - p_y||^2`` to its
    cross-entropy.

    Args:
        num_classes: labels must lie in ``[0, num_classes)``.
        feature_dim: width of the feature vectors.
        dtype: float format of the broadcast, ``"float16"`` or ``"float32"``.
    """

    def __init__(self, num_classes: int, feature_dim: int, dtype: str = "float16") -> None:
        super().__init__()
        self.num_classes = num_classes
        self.feature_dim = feature_dim
        self.dtype = dtype

    def describe(self) -> str:
        """The strategy's main settings."""
        return f"FedProto (feature_dim={self.feature_dim}, dtype={self.dtype!r})"

    def decode(self, reply: Reply) -> ClassPrototypes:
        """Validate one client's prototypes (:func:`~flower_synth.prototypes.decode_prototypes`)."""
        return decode_prototypes(reply.arrays, self.num_classes, self.feature_dim)

    def fuse(self, summaries: Sequence[ClassPrototypes]) -> ClassPrototypes:
        """Count-weighted mean per class."""
        return aggregate_prototypes(summaries)

    def encode(self, summary: ClassPrototypes) -> list[np.ndarray]:
        """The global prototypes in the wire format, as ``dtype``."""
        return encode_prototypes(summary, self.dtype)

    def summary_metrics(self, summary: ClassPrototypes) -> dict[str, Scalar]:
        """``global_classes``: classes that have a global prototype."""
        return {"global_classes": len(summary)}


class GMMPrototypeOptions(TypedDict):
    """GMM prototypes' settings, shared by both strategy classes."""

    num_classes: int
    feature_dim: int
    covariance: NotRequired[str]
    tau: NotRequired[float]
    max_components: NotRequired[int | None]
    max_client_components: NotRequired[int]
    dtype: NotRequired[str]


class GMMPrototypeExchange(PrototypeExchange[ClassMixtures]):
    """GMM prototypes (GFPL-style): each client uploads, per class, a Gaussian mixture
    of its features with the class count ``n_c`` (``[labels, weights, means,
    covariances, class_counts]``). Per class, the server pools all clients' components
    with mass ``n_c * pi_k`` and merges the closest pair by Bhattacharyya distance
    (moment matching) while that distance is below ``tau`` or more than
    ``max_components`` remain; the fused mixtures go back to every client, which draws
    pseudo-features from them to top up the classes it lacks.

    Args:
        num_classes: labels must lie in ``[0, num_classes)``.
        feature_dim: width of the feature vectors.
        covariance: ``"diag"`` (variance vectors) or ``"full"``; payloads of the other
            kind are rejected.
        tau: Bhattacharyya distance below which components merge (0: only the cap).
        max_components: at most this many fused components per class (None: no cap).
        max_client_components: payloads with more components in a class are rejected.
        dtype: float format of the broadcast, ``"float16"`` or ``"float32"``.
    """

    def __init__(
        self,
        num_classes: int,
        feature_dim: int,
        covariance: str = "diag",
        tau: float = 1.0,
        max_components: int | None = 5,
        max_client_components: int = 32,
        dtype: str = "float16",
    ) -> None:
        super().__init__()
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

    def describe(self) -> str:
        """The strategy's main settings."""
        return (
            f"GMM prototypes (tau={self.tau}, max_components={self.max_components}, "
            f"covariance={self.covariance!r})"
        )

    def decode(self, reply: Reply) -> ClassMixtures:
        """Validate one client's mixtures (see :func:`~flower_synth.prototypes.decode_mixtures`)."""
        return decode_mixtures(
            reply.arrays,
            self.num_classes,
            self.feature_dim,
            self.covariance,
            self.max_client_components,
        )

    def fuse(self, summaries: Sequence[ClassMixtures]) -> ClassMixtures:
        """Bhattacharyya fusion per class (see :func:`~flower_synth.prototypes.fuse_mixtures`)."""
        return fuse_mixtures(summaries, self.tau, self.max_components)

    def encode(self, summary: ClassMixtures) -> list[np.ndarray]:
        """The fused mixtures in the wire format, as ``dtype``."""
        return encode_mixtures(summary, self.dtype)

    def summary_metrics(self, summary: ClassMixtures) -> dict[str, Scalar]:
        """``global_components`` and ``global_classes`` of the fused mixtures."""
        return {
            "global_components": len(summary),
            "global_classes": int(np.unique(summary.labels).size),
        }


class LocalOnlyExchange(ExchangeServer[None]):
    """Local-only training, the reference without any exchange: sampled clients train
    their own models on their own data; nothing is sent either way (a non-empty
    payload is rejected)."""

    def describe(self) -> str:
        """The strategy's name."""
        return "local-only training"

    def instructions(self, server_round: int, node_ids: Sequence[str]) -> Instructions:
        """Nothing to send."""
        return {node: ([], {}) for node in node_ids}

    def decode(self, reply: Reply) -> None:
        """Local-only clients send nothing; anything else is rejected."""
        if reply.arrays:
            raise PayloadError(f"local-only clients send nothing, got {len(reply.arrays)} arrays")

    def aggregate(self, server_round: int, accepted: Sequence[Accepted[None]]) -> dict[str, Any]:
        """Nothing to aggregate."""
        return {}
