"""FedProto (Tan et al., AAAI 2022): clients send per-class mean features; the server
averages them into global prototypes."""

from __future__ import annotations

from collections.abc import Sequence

from flwr.common import FitRes, NDArrays, Scalar
from flwr.server.client_proxy import ClientProxy

from flower_synth.prototypes import (
    ClassPrototypes,
    aggregate_prototypes,
    decode_prototypes,
    encode_prototypes,
)
from flower_synth.strategies.prototype_exchange import PrototypeExchangeStrategy


class FedProtoStrategy(PrototypeExchangeStrategy[ClassPrototypes]):
    """Federated prototype learning with one mean feature per class.

    Each client uploads ``[labels, means, counts]``; the global prototype of a class
    is the count-weighted mean of the clients' prototypes, broadcast to every client,
    which adds ``lambda * ||h - p_y||^2`` to its cross-entropy. No model weights travel.

    Args:
        num_classes: labels must lie in ``[0, num_classes)``.
        feature_dim: width of the feature vectors.
        dtype: float format of the broadcast, ``"float16"`` or ``"float32"``.
        **sampling: client sampling and metric aggregation, as in
            :class:`~flower_synth.strategies.model_free.ModelFreeStrategy`.
    """

    def __init__(
        self, *, num_classes: int, feature_dim: int, dtype: str = "float16", **sampling
    ) -> None:
        super().__init__(**sampling)
        self.num_classes = num_classes
        self.feature_dim = feature_dim
        self.dtype = dtype

    def __repr__(self) -> str:
        return f"FedProtoStrategy(feature_dim={self.feature_dim}, dtype={self.dtype!r})"

    def decode(self, client: ClientProxy, arrays: NDArrays, res: FitRes) -> ClassPrototypes:
        """Validate one client's prototypes (:func:`~flower_synth.prototypes.decode_prototypes`)."""
        return decode_prototypes(arrays, self.num_classes, self.feature_dim)

    def fuse(self, summaries: Sequence[ClassPrototypes]) -> ClassPrototypes:
        """Count-weighted mean per class."""
        return aggregate_prototypes(summaries)

    def encode(self, summary: ClassPrototypes) -> NDArrays:
        """The global prototypes in the wire format, as ``dtype``."""
        return encode_prototypes(summary, self.dtype)

    def summary_metrics(self, summary: ClassPrototypes) -> dict[str, Scalar]:
        """``global_classes``: classes that have a global prototype."""
        return {"global_classes": len(summary)}
