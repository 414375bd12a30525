"""The common part of strategies in which every client keeps its own model and only
data summaries (samples, prototypes) travel."""

from __future__ import annotations

from collections.abc import Callable
from logging import WARNING
from typing import TypeVar

from flwr.common import (
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    NDArrays,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.common.logger import log
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import Strategy

from flower_synth.metrics import MetricsAggregationFn

EMPTY_PARAMETERS = Parameters(tensors=[], tensor_type="numpy.ndarray")

ConfigFn = Callable[[int], dict[str, Scalar]]

Decoded = TypeVar("Decoded")


class ModelFreeStrategy(Strategy):
    """Client sampling, payload validation and client-side evaluation for strategies
    without a global model.

    Subclasses implement ``configure_fit`` and ``aggregate_fit`` (using
    :meth:`sample_clients` and :meth:`accept`); evaluation is done by the clients on
    their own models, with nothing sent but the round number.

    Args:
        fraction_fit, fraction_evaluate, min_fit_clients, min_evaluate_clients,
        min_available_clients: client sampling, as in flwr's ``FedAvg``.
        fit_metrics_aggregation_fn, evaluate_metrics_aggregation_fn: as in ``FedAvg``.
        on_fit_config_fn, on_evaluate_config_fn: functions of the round returning
            config entries added to every fit / evaluate instruction, as in ``FedAvg``.
    """

    def __init__(
        self,
        *,
        fraction_fit: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_fit_clients: int = 1,
        min_evaluate_clients: int = 1,
        min_available_clients: int = 1,
        fit_metrics_aggregation_fn: MetricsAggregationFn | None = None,
        evaluate_metrics_aggregation_fn: MetricsAggregationFn | None = None,
        on_fit_config_fn: ConfigFn | None = None,
        on_evaluate_config_fn: ConfigFn | None = None,
    ) -> None:
        super().__init__()
        self.fraction_fit = fraction_fit
        self.fraction_evaluate = fraction_evaluate
        self.min_fit_clients = min_fit_clients
        self.min_evaluate_clients = min_evaluate_clients
        self.min_available_clients = min_available_clients
        self.fit_metrics_aggregation_fn = fit_metrics_aggregation_fn
        self.evaluate_metrics_aggregation_fn = evaluate_metrics_aggregation_fn
        self.on_fit_config_fn = on_fit_config_fn
        self.on_evaluate_config_fn = on_evaluate_config_fn

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        """No global model: start from empty parameters (nothing is asked of clients)."""
        return EMPTY_PARAMETERS

    def sample_clients(
        self, client_manager: ClientManager, fraction: float, minimum: int
    ) -> list[ClientProxy]:
        """``fraction`` of the available clients, at least ``minimum``, waiting for
        ``min_available_clients``."""
        size = max(int(fraction * client_manager.num_available()), minimum)
        return client_manager.sample(
            num_clients=size, min_num_clients=max(size, self.min_available_clients)
        )

    def broadcast_fit(
        self, server_round: int, client_manager: ClientManager, arrays: NDArrays
    ) -> list[tuple[ClientProxy, FitIns]]:
        """The same fit instruction (``arrays`` and ``server_round``) for every client
        sampled for training."""
        clients = self.sample_clients(client_manager, self.fraction_fit, self.min_fit_clients)
        ins = FitIns(ndarrays_to_parameters(arrays), self.fit_config(server_round))
        return [(client, ins) for client in clients]

    def fit_config(self, server_round: int, **entries: Scalar) -> dict[str, Scalar]:
        """A fit instruction's config: ``server_round``, ``entries`` and what
        ``on_fit_config_fn`` adds."""
        extra = self.on_fit_config_fn(server_round) if self.on_fit_config_fn else {}
        return {"server_round": server_round, **entries, **extra}

    def accept(
        self,
        results: list[tuple[ClientProxy, FitRes]],
        decode: Callable[[ClientProxy, NDArrays, FitRes], Decoded],
    ) -> tuple[list[tuple[ClientProxy, FitRes, Decoded]], int]:
        """Decode every fit result with ``decode(client, arrays, result)`` (which
        validates and raises ``ValueError``, e.g. ``PayloadError``, on a malformed payload).

        Returns the accepted results with their decoded payloads, and how many were
        rejected; each rejection is logged with the reason. Never raises.
        """
        accepted, rejected = [], 0
        for client, res in results:
            try:
                decoded = decode(client, parameters_to_ndarrays(res.parameters), res)
            except ValueError as error:  # PayloadError, or arrays that do not deserialize
                rejected += 1
                log(WARNING, "Rejected payload of node %s: %s", client.cid, error)
                continue
            accepted.append((client, res, decoded))
        return accepted, rejected

    def fit_metrics(self, accepted: list[tuple[ClientProxy, FitRes, object]]) -> dict[str, Scalar]:
        """``fit_metrics_aggregation_fn`` over the accepted results (empty without one)."""
        if self.fit_metrics_aggregation_fn is None or not accepted:
            return {}
        return self.fit_metrics_aggregation_fn(
            [(res.num_examples, res.metrics) for _, res, _ in accepted]
        )

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        """Ask clients to evaluate their own models (nothing is sent but the round)."""
        if self.fraction_evaluate == 0.0:
            return []
        clients = self.sample_clients(
            client_manager, self.fraction_evaluate, self.min_evaluate_clients
        )
        extra = self.on_evaluate_config_fn(server_round) if self.on_evaluate_config_fn else {}
        ins = EvaluateIns(EMPTY_PARAMETERS, {"server_round": server_round, **extra})
        return [(client, ins) for client in clients]

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        """Example-weighted mean loss and the aggregated client metrics."""
        scored = [(res.num_examples, res.loss) for _, res in results if res.num_examples > 0]
        total = sum(n for n, _ in scored)
        loss = sum(n * value for n, value in scored) / total if total else None
        metrics: dict[str, Scalar] = {}
        if self.evaluate_metrics_aggregation_fn is not None and results:
            metrics = self.evaluate_metrics_aggregation_fn(
                [(res.num_examples, res.metrics) for _, res in results]
            )
        return loss, metrics

    def evaluate(
        self, server_round: int, parameters: Parameters
    ) -> tuple[float, dict[str, Scalar]] | None:
        """No server-side evaluation (there is no global model)."""
        return None
