"""The client of the local-only reference: trains on its own data, shares nothing."""

from __future__ import annotations

from typing import Any

from flwr.app import RecordDict
from flwr.common import NDArrays
from torch import nn

from flower_synth.clients.prototype_client import PrototypeClient
from flower_synth.data.federated import ClientData

STATE_KEY = "local-only"


class LocalOnlyClient(PrototypeClient):
    """Plain cross-entropy training of the client's own model on its own data; the
    summary it sends is empty. The lower reference every collaborative strategy must
    beat on the clients' local test splits (and usually does not on the global test set).

    Args:
        model: torch classifier with ``features`` and ``head``.
        data, state: as in :class:`PrototypeClient`.
        **options: the remaining :class:`PrototypeClient` options.
    """

    def __init__(
        self, model: nn.Module, data: ClientData, state: RecordDict, **options: Any
    ) -> None:
        super().__init__(model, data, state, STATE_KEY, **options)

    def training_terms(self, received: NDArrays, seed: int) -> dict[str, Any]:
        """Nothing but cross-entropy."""
        return {}

    def summarize(self, seed: int) -> NDArrays:
        """Nothing leaves the client."""
        return []
