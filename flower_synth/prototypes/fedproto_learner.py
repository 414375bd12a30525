"""The client side of FedProto (Tan et al., AAAI 2022)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from flwr.app import RecordDict
from torch import nn

from flower_synth.data.client_data import ClientData
from flower_synth.prototypes import class_means, decode_prototypes, encode_prototypes
from flower_synth.prototypes.learner import PrototypeLearner

STATE_KEY = "fedproto"


class FedProtoLearner(PrototypeLearner):
    """Cross-entropy plus ``proto_lambda`` times the squared distance (mean over
    feature dimensions, as torch's ``MSELoss``) between each example's features and
    its class's global prototype, for classes that have one; uploads the mean feature
    of every local class with its count (``[labels, means, counts]``).

    Args:
        model: torch classifier with ``features`` and ``head``.
        data, state: as in :class:`PrototypeLearner`.
        proto_lambda: weight of the prototype regulariser.
        **options: the remaining :class:`PrototypeLearner` options.
    """

    def __init__(
        self,
        model: nn.Module,
        data: ClientData,
        state: RecordDict,
        *,
        proto_lambda: float = 1.0,
        **options: Any,
    ) -> None:
        super().__init__(model, data, state, STATE_KEY, **options)
        if proto_lambda < 0:
            raise ValueError(f"proto_lambda must be >= 0, got {proto_lambda}")
        self.proto_lambda = proto_lambda

    def training_terms(self, received: list[np.ndarray], seed: int) -> dict[str, Any]:
        """The prototype regulariser (none before the first global prototypes)."""
        if not received or self.proto_lambda == 0:
            return {}
        prototypes = decode_prototypes(received, self.num_classes, self.model.feature_dim)
        table, present = prototypes.table(self.num_classes)
        table_t, present_t = torch.from_numpy(table), torch.from_numpy(present)

        def prototype_distance(h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            distance = (h - table_t[y]).pow(2).mean(dim=1)
            return self.proto_lambda * distance * present_t[y]

        return {"feature_loss": prototype_distance}

    def shared_points(self, summary: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The class means the payload carries."""
        prototypes = decode_prototypes(summary, self.num_classes, self.model.feature_dim)
        return prototypes.means, prototypes.labels

    def summarize(self, seed: int) -> list[np.ndarray]:
        """Mean feature and count of every local class, encoded for the wire."""
        features, labels = self.training_features()
        return encode_prototypes(
            class_means(features, labels, self.num_classes), self.prototype_dtype
        )
