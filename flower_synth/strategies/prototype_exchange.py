"""Strategies that fuse per-class feature summaries into one global summary."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Generic, TypeVar

from flwr.common import FitIns, FitRes, NDArrays, Parameters, Scalar
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy

from flower_synth.strategies.model_free import ModelFreeStrategy

Summary = TypeVar("Summary")


class PrototypeExchangeStrategy(ModelFreeStrategy, Generic[Summary]):
    """Keep every client's latest per-class summary, fuse them, broadcast the fusion.

    ``configure_fit`` sends every sampled client the same global summary (nothing
    before the first fusion) with ``server_round``. ``aggregate_fit`` validates each
    payload with :meth:`decode` (a malformed one is logged, counted in
    ``rejected_payloads`` and the client's previous summary kept), stores the valid
    ones by node id, and re-fuses all stored summaries with :meth:`fuse` - so with
    partial participation, clients not sampled this round still count with their
    last summary. No model weights travel.

    Subclasses define :meth:`decode`, :meth:`fuse` and :meth:`encode`; keyword
    arguments are those of :class:`ModelFreeStrategy`.
    """

    def __init__(self, **sampling) -> None:
        super().__init__(**sampling)
        self.summaries: dict[str, Summary] = {}
        self.global_summary: Summary | None = None

    @abstractmethod
    def decode(self, client: ClientProxy, arrays: NDArrays, res: FitRes) -> Summary:
        """Validate and decode one client's payload (raise ``PayloadError`` if bad)."""

    @abstractmethod
    def fuse(self, summaries: Sequence[Summary]) -> Summary:
        """The global summary of the clients' summaries."""

    @abstractmethod
    def encode(self, summary: Summary) -> NDArrays:
        """The global summary as arrays to send."""

    def summary_metrics(self, summary: Summary) -> dict[str, Scalar]:
        """Figures about the fused summary recorded each round (none by default)."""
        return {}

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        """Send the global summary (empty in round 1) to the sampled clients."""
        arrays = [] if self.global_summary is None else self.encode(self.global_summary)
        return self.broadcast_fit(server_round, client_manager, arrays)

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """Store the valid summaries and fuse all stored ones; returns no parameters."""
        accepted, rejected = self.accept(results, self.decode)
        for client, _, summary in accepted:
            self.summaries[client.cid] = summary
        metrics: dict[str, Scalar] = {
            "rejected_payloads": rejected,
            "summary_clients": len(self.summaries),
        }
        if self.summaries:
            self.global_summary = self.fuse(list(self.summaries.values()))
            metrics |= self.summary_metrics(self.global_summary)
        return None, metrics | self.fit_metrics(accepted)
