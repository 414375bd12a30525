"""Local-only training as a Flower strategy: the reference without any exchange."""

from __future__ import annotations

from flwr.common import FitIns, FitRes, NDArrays, Parameters, Scalar
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy

from flower_synth.payload import PayloadError
from flower_synth.strategies.model_free import ModelFreeStrategy


class LocalOnlyStrategy(ModelFreeStrategy):
    """Every round, sampled clients train their own models on their own data; nothing
    is sent either way (a non-empty payload is rejected). Evaluation is the clients'
    own, as for the other strategies without a global model, so runs compare on the
    same figures. Keyword arguments are those of :class:`ModelFreeStrategy`.
    """

    def __repr__(self) -> str:
        return "LocalOnlyStrategy()"

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        """Ask the sampled clients to train; send only ``server_round``."""
        return self.broadcast_fit(server_round, client_manager, [])

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """Check that nothing was sent; aggregate the fit metrics."""
        accepted, rejected = self.accept(results, self.decode)
        return None, {"rejected_payloads": rejected} | self.fit_metrics(accepted)

    def decode(self, client: ClientProxy, arrays: NDArrays, res: FitRes) -> None:
        """Local-only clients send nothing; anything else is rejected."""
        if arrays:
            raise PayloadError(f"local-only clients send nothing, got {len(arrays)} arrays")
