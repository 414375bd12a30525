"""A legacy Flower ``Strategy`` for any :class:`~flower_synth.exchange.server.ExchangeServer`:
client sampling, config functions, payload acceptance and client-side evaluation, for
strategies in which every client keeps its own model and only data summaries travel."""

from __future__ import annotations

from collections.abc import Callable
from logging import INFO
from typing import Any, NotRequired, TypedDict

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

from flower_synth.exchange.checkpoint import ExchangeState
from flower_synth.exchange.metering import parameters_serialized_nbytes
from flower_synth.exchange.metrics import MetricsAggregationFn, weighted_mean
from flower_synth.exchange.options import refuse_unsupported
from flower_synth.exchange.server import (
    Accepted,
    ExchangeServer,
    Reply,
    accept,
    check_payload_size,
    check_tensors,
    counts_in_evaluation,
    screened,
)
from flower_synth.wire.client_metrics import capped_sizes, check_report

EMPTY_PARAMETERS = Parameters(tensors=[], tensor_type="numpy.ndarray")

ConfigFn = Callable[[int], dict[str, Scalar]]
LegacyEvaluateFn = Callable[
    [int, NDArrays, dict[str, Scalar]], tuple[float, dict[str, Scalar]] | None
]


class LegacySampling(TypedDict):
    """Client sampling, metric aggregation and config functions, named as in flwr's
    ``flwr.server.strategy.FedAvg``."""

    fraction_fit: NotRequired[float]
    fraction_evaluate: NotRequired[float]
    min_fit_clients: NotRequired[int]
    min_evaluate_clients: NotRequired[int]
    min_available_clients: NotRequired[int]
    accept_failures: NotRequired[bool]
    on_fit_config_fn: NotRequired[ConfigFn | None]
    on_evaluate_config_fn: NotRequired[ConfigFn | None]
    fit_metrics_aggregation_fn: NotRequired[MetricsAggregationFn | None]
    evaluate_metrics_aggregation_fn: NotRequired[MetricsAggregationFn | None]
    evaluate_fn: NotRequired[LegacyEvaluateFn | None]


class ModelFreeStrategy(ExchangeState, Strategy):
    """The legacy Flower adapter of an :class:`~flower_synth.exchange.server.ExchangeServer`.

    ``configure_fit`` samples clients and sends each what the exchange says;
    ``aggregate_fit`` turns every result into a :class:`~flower_synth.exchange.server.Reply`
    and lets the exchange decode it (a result that does not decode is that client's
    failure, logged and counted in ``rejected_payloads``; the round goes on), then
    aggregates the accepted ones; evaluation is done by the clients on their own models
    (nothing is sent but the round and what ``on_evaluate_config_fn`` adds), and
    :meth:`evaluate` is the exchange's own.

    Args:
        exchange: the strategy's algorithm.
        fraction_fit, fraction_evaluate, min_fit_clients, min_evaluate_clients,
        min_available_clients, accept_failures, on_fit_config_fn, on_evaluate_config_fn,
        fit_metrics_aggregation_fn, evaluate_metrics_aggregation_fn: as in flwr's
            ``FedAvg`` (same defaults). ``initial_parameters`` is refused with the
            reason: clients keep their own models.
        evaluate_fn: as in flwr's ``FedAvg``: scores the exchange's global arrays
            (the server classifier's weights, in ``state_dict`` order; the fused
            prototypes) after every round; None: the exchange's own evaluation.
    """

    def __init__(
        self,
        exchange: ExchangeServer,
        *,
        fraction_fit: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_fit_clients: int = 2,
        min_evaluate_clients: int = 2,
        min_available_clients: int = 2,
        accept_failures: bool = True,
        on_fit_config_fn: ConfigFn | None = None,
        on_evaluate_config_fn: ConfigFn | None = None,
        fit_metrics_aggregation_fn: MetricsAggregationFn | None = None,
        evaluate_metrics_aggregation_fn: MetricsAggregationFn | None = None,
        evaluate_fn: LegacyEvaluateFn | None = None,
        **unsupported: Any,
    ) -> None:
        super().__init__()
        refuse_unsupported(type(self).__name__, unsupported, LegacySampling)
        self.exchange = exchange
        self.fraction_fit = fraction_fit
        self.fraction_evaluate = fraction_evaluate
        self.min_fit_clients = min_fit_clients
        self.min_evaluate_clients = min_evaluate_clients
        self.min_available_clients = min_available_clients
        self.accept_failures = accept_failures
        self.on_fit_config_fn = on_fit_config_fn
        self.on_evaluate_config_fn = on_evaluate_config_fn
        self.fit_metrics_aggregation_fn = fit_metrics_aggregation_fn
        self.evaluate_metrics_aggregation_fn = evaluate_metrics_aggregation_fn
        self.evaluate_fn = evaluate_fn

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.exchange.describe()})"

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

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        """Send every sampled client what the exchange has for it, with ``server_round``,
        the exchange's config entries and what ``on_fit_config_fn`` adds."""
        clients = self.sample_clients(client_manager, self.fraction_fit, self.min_fit_clients)
        self.exchange.observe(list(client_manager.all()))
        plan = self.exchange.instructions(server_round, [client.cid for client in clients])
        extra = self.on_fit_config_fn(server_round) if self.on_fit_config_fn else {}
        instructions = []
        for client in clients:
            arrays, config = plan[client.cid]
            config = {"server_round": server_round, **config, **extra}
            instructions.append((client, FitIns(ndarrays_to_parameters(arrays), config)))
        return instructions

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """Decode and aggregate the results; return the exchange's global arrays as
        ``Parameters`` (None where it has none; never sent to clients) and its metrics
        with ``rejected_payloads``. With ``accept_failures=False`` a round with failures
        is not aggregated."""
        if failures and not self.accept_failures:
            log(INFO, "Round %s not aggregated: %s failures", server_round, len(failures))
            return None, {}
        accepted, rejected = accept(results, self.to_reply, self.exchange.decode)
        metrics = self.exchange.aggregate(server_round, accepted)
        arrays = self.exchange.global_arrays()
        parameters = None if arrays is None else ndarrays_to_parameters(list(arrays.values()))
        return parameters, {"rejected_payloads": rejected} | metrics | self.fit_metrics(accepted)

    def to_reply(self, result: tuple[ClientProxy, FitRes]) -> Reply:
        """A legacy fit result as a :class:`~flower_synth.exchange.server.Reply`: its size checked
        against the exchange's limit first, then its arrays deserialised (so a payload too
        large or not deserialisable is that client's failure)."""
        client, res = result
        limit = self.exchange.max_payload_bytes(client.cid)
        check_payload_size(client.cid, parameters_serialized_nbytes(res.parameters), limit)
        check_tensors(res.parameters.tensors)
        arrays = parameters_to_ndarrays(res.parameters)
        return Reply(client.cid, arrays, res.num_examples, res.metrics)

    def fit_metrics(self, accepted: list[Accepted]) -> dict[str, Scalar]:
        """``fit_metrics_aggregation_fn`` over the accepted results (empty without one)."""
        if self.fit_metrics_aggregation_fn is None or not accepted:
            return {}
        return self.fit_metrics_aggregation_fn(
            [(item.reply.num_examples, dict(item.reply.metrics)) for item in accepted]
        )

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        """Ask clients to evaluate their own models (nothing is sent but the config)."""
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
        """Example-weighted mean loss and the aggregated client metrics, over the
        results that pass :func:`~flower_synth.wire.client_metrics.check_report` (the
        others are counted in ``rejected_evaluations``) and count
        (:func:`~flower_synth.exchange.server.counts_in_evaluation`), as in the
        Message-API adapter; example counts weigh at most ``SIZE_CAP`` times their median."""
        valid, rejected = screened(results, check_evaluate_res, "aggregate_evaluate")
        counted = [res for _, res in valid if counts_in_evaluation(res.num_examples, res.metrics)]
        weights = [int(w) for w in capped_sizes([res.num_examples for res in counted])]
        scored = [(res.num_examples, res.loss) for res in counted if res.num_examples > 0]
        loss = weighted_mean(scored) if scored else None
        metrics: dict[str, Scalar] = {"rejected_evaluations": len(rejected)}
        if self.evaluate_metrics_aggregation_fn is not None and counted:
            metrics |= self.evaluate_metrics_aggregation_fn(
                [(w, res.metrics) for w, res in zip(weights, counted, strict=True)]
            )
        return loss, metrics

    def evaluate(
        self, server_round: int, parameters: Parameters
    ) -> tuple[float, dict[str, Scalar]] | None:
        """``evaluate_fn`` on the global arrays where it is given (None while there are
        none), else the exchange's server-side evaluation (None where it has none)."""
        if self.evaluate_fn is None:
            return self.exchange.evaluate(server_round)
        weights = parameters_to_ndarrays(parameters)
        return self.evaluate_fn(server_round, weights, {}) if weights else None


def check_evaluate_res(result: tuple[ClientProxy, EvaluateRes]) -> None:
    """:func:`~flower_synth.wire.client_metrics.check_report` of a legacy evaluation
    result (its count, metrics and loss)."""
    _, res = result
    check_report(res.num_examples, res.metrics, res.loss)


def check_fit_res(result: tuple[ClientProxy, FitRes]) -> None:
    """:func:`~flower_synth.wire.client_metrics.check_report` of a legacy fit result
    (its count and metrics)."""
    _, res = result
    check_report(res.num_examples, res.metrics)
