"""A Message-API Flower ``Strategy`` for any :class:`~flower_synth.exchange.server.ExchangeServer`:
node sampling, one ``Message`` per node, payload acceptance and client-side evaluation,
for strategies in which every client keeps its own model and only data summaries travel."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from logging import INFO, WARNING
from typing import Any, NotRequired, TypedDict

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords, sample_nodes

from flower_synth.exchange.checkpoint import ExchangeState
from flower_synth.exchange.metering import arrayrecord_serialized_nbytes
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
from flower_synth.wire.input_normalization import is_normalization_key
from flower_synth.wire.payload import PayloadError

MetricsAggregation = Callable[[list[RecordDict], str], MetricRecord]
# What a node says about itself rather than measures: left out of flwr's default
# weighted average (a mean partition id means nothing); custom aggregations see them.
IDENTITY_KEYS = (
    "partition_id",
    "client_rounds",
    "fresh_start",
    "pool_variables",
    "model_variables",
)


def is_measure(key: str) -> bool:
    """Whether a node's metric measures something (not :data:`IDENTITY_KEYS`, not its
    input normalisation)."""
    return key not in IDENTITY_KEYS and not is_normalization_key(key)


def average_measures(records: list[RecordDict], weighting_key: str) -> MetricRecord:
    """flwr's weighted average of the nodes' measures (:func:`is_measure`)."""
    measured = [
        RecordDict(
            {
                name: MetricRecord({k: v for k, v in record.items() if is_measure(k)})
                for name, record in content.metric_records.items()
            }
        )
        for content in records
    ]
    return aggregate_metricrecords(measured, weighting_key)


def check_message_metrics(message: Message, weighted_by_key: str) -> None:
    """:func:`~flower_synth.wire.client_metrics.check_report` of every ``MetricRecord``
    of a reply (``weighted_by_key`` as its count): raises on the first bad value."""
    for record in message.content.metric_records.values():
        metrics = dict(record)
        check_report(metrics.pop(weighted_by_key, 0), metrics)


def with_capped_weights(contents: list[RecordDict], weighted_by_key: str) -> list[RecordDict]:
    """The replies' metric records with ``weighted_by_key`` capped at ``SIZE_CAP`` times
    its median over the replies (:func:`~flower_synth.wire.client_metrics.capped_sizes`)."""
    records = [(name, dict(record)) for c in contents for name, record in c.metric_records.items()]
    caps = capped_sizes([metrics.get(weighted_by_key, 0) for _, metrics in records])
    for (_, metrics), cap in zip(records, caps, strict=True):
        if weighted_by_key in metrics:
            metrics[weighted_by_key] = int(cap)
    return [RecordDict({name: MetricRecord(metrics)}) for name, metrics in records]


EvaluateFn = Callable[[int, ArrayRecord], MetricRecord | None]


def arrays_by_name(arrays: dict[str, np.ndarray]) -> dict[str, Array]:
    """Named numpy arrays as the ``Array`` s of an ``ArrayRecord`` (whose
    ``to_torch_state_dict()`` then gives them back by name)."""
    return {name: Array(np.ascontiguousarray(value)) for name, value in arrays.items()}


class MessageSampling(TypedDict):
    """Node sampling, record keys and metric aggregation, named as in flwr's
    ``flwr.serverapp.strategy.FedAvg``."""

    fraction_train: NotRequired[float]
    fraction_evaluate: NotRequired[float]
    min_train_nodes: NotRequired[int]
    min_evaluate_nodes: NotRequired[int]
    min_available_nodes: NotRequired[int]
    weighted_by_key: NotRequired[str]
    arrayrecord_key: NotRequired[str]
    configrecord_key: NotRequired[str]
    train_metrics_aggr_fn: NotRequired[MetricsAggregation | None]
    evaluate_metrics_aggr_fn: NotRequired[MetricsAggregation | None]


class ModelFreeStrategy(ExchangeState, Strategy):
    """The Message-API adapter of an :class:`~flower_synth.exchange.server.ExchangeServer`.

    ``configure_train`` samples nodes and builds one ``Message`` per node carrying what
    the exchange has for it (``arrays``) and its config (the ``config`` given to
    :meth:`start`, ``server-round`` and the exchange's entries); ``aggregate_train``
    turns every reply without an error into a :class:`~flower_synth.exchange.server.Reply` (its
    ``arrays`` record, if any, and its one ``MetricRecord``, which carries
    ``weighted_by_key``) and lets the exchange decode and aggregate them: a reply that
    does not decode is that node's failure, counted in ``rejected_payloads``, and the
    round goes on. Evaluation messages carry only the config; nodes evaluate their own
    models, which never receive weights. The ``ArrayRecord`` ``aggregate_train`` returns
    is what the exchange offers as a global model (the server classifier, the fused
    prototypes), so ``Result.arrays`` and an ``evaluate_fn`` given to :meth:`start` see
    it as in Flower's examples; ``evaluate_fn`` defaults to the exchange's own evaluation.

    Args:
        exchange: the strategy's algorithm.
        fraction_train, fraction_evaluate, min_train_nodes, min_evaluate_nodes,
        min_available_nodes, weighted_by_key, arrayrecord_key, configrecord_key,
        train_metrics_aggr_fn, evaluate_metrics_aggr_fn: as in flwr's Message-API
            ``FedAvg`` (same defaults; aggregation functions default to flwr's
            weighted average of the measured metrics, replies with zero weight and
            identity keys such as ``partition_id`` left out).
    """

    def __init__(
        self,
        exchange: ExchangeServer,
        *,
        fraction_train: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_train_nodes: int = 2,
        min_evaluate_nodes: int = 2,
        min_available_nodes: int = 2,
        weighted_by_key: str = "num-examples",
        arrayrecord_key: str = "arrays",
        configrecord_key: str = "config",
        train_metrics_aggr_fn: MetricsAggregation | None = None,
        evaluate_metrics_aggr_fn: MetricsAggregation | None = None,
        **unsupported: Any,
    ) -> None:
        refuse_unsupported(type(self).__name__, unsupported, MessageSampling)
        self.exchange = exchange
        self.fraction_train = fraction_train
        self.fraction_evaluate = fraction_evaluate
        self.min_train_nodes = min_train_nodes
        self.min_evaluate_nodes = min_evaluate_nodes
        self.min_available_nodes = min_available_nodes
        self.weighted_by_key = weighted_by_key
        self.arrayrecord_key = arrayrecord_key
        self.configrecord_key = configrecord_key
        self.train_metrics_aggr_fn = train_metrics_aggr_fn or average_measures
        self.evaluate_metrics_aggr_fn = evaluate_metrics_aggr_fn or average_measures

    def summary(self) -> None:
        """Log the strategy's algorithm and sampling."""
        log(INFO, "\t├──> Algorithm: %s", self.exchange.describe())
        log(
            INFO,
            "\t└──> Sampling: fraction train %.2f | evaluate %.2f, minimum nodes train %d "
            "| evaluate %d | available %d",
            self.fraction_train,
            self.fraction_evaluate,
            self.min_train_nodes,
            self.min_evaluate_nodes,
            self.min_available_nodes,
        )

    def sample(self, grid: Grid, fraction: float, minimum: int) -> list[int]:
        """``fraction`` of the connected nodes, at least ``minimum``, waiting for
        ``min_available_nodes``."""
        size = max(int(len(list(grid.get_node_ids())) * fraction), minimum)
        nodes, _ = sample_nodes(grid, self.min_available_nodes, size)
        return nodes

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """One training message per sampled node, with what the exchange has for it."""
        if self.fraction_train == 0.0:
            return []
        nodes = self.sample(grid, self.fraction_train, self.min_train_nodes)
        self.exchange.observe([str(node) for node in grid.get_node_ids()])
        plan = self.exchange.instructions(server_round, [str(node) for node in nodes])
        messages = []
        for node in nodes:
            payload, entries = plan[str(node)]
            content = RecordDict(
                {
                    self.arrayrecord_key: ArrayRecord(payload),
                    self.configrecord_key: ConfigRecord(
                        dict(config) | {"server-round": server_round} | entries
                    ),
                }
            )
            messages.append(Message(content, message_type=MessageType.TRAIN, dst_node_id=node))
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Decode and aggregate the replies; return what the exchange offers as its
        global model (:meth:`~flower_synth.exchange.server.ExchangeServer.global_arrays`:
        the server classifier's weights, the fused prototypes; None where it has none),
        and the exchange's metrics with ``rejected_payloads`` and the nodes' aggregated
        metrics. The arrays are never sent to nodes: they are ``Result.arrays`` and what
        ``evaluate_fn`` scores."""
        valid = self.without_errors(replies, "aggregate_train")
        accepted, rejected = accept(valid, self.to_reply, self.exchange.decode)
        metrics = self.exchange.aggregate(server_round, accepted)
        metrics = {"rejected_payloads": rejected} | metrics | self.train_metrics(accepted)
        arrays = self.exchange.global_arrays()
        return (None if arrays is None else ArrayRecord(arrays_by_name(arrays))), MetricRecord(
            metrics
        )

    def to_reply(self, message: Message) -> Reply:
        """A reply message as a :class:`~flower_synth.exchange.server.Reply`: exactly one
        ``MetricRecord`` (whose ``weighted_by_key`` is the example count), its arrays'
        size checked against the exchange's limit before they are deserialised; a record
        of any other name (an extra ``ArrayRecord`` beside a valid reply) or anything
        else malformed raises (the node's failure)."""
        content, node = message.content, str(message.metadata.src_node_id)
        records = list(content.metric_records.values())
        if len(records) != 1:
            raise ValueError(f"a reply needs exactly one MetricRecord, got {len(records)}")
        unknown = sorted(set(content) - {self.arrayrecord_key, *content.metric_records})
        if unknown:
            raise PayloadError(
                f"a reply carries records this strategy does not read: {unknown}; send only "
                f"{self.arrayrecord_key!r} and one MetricRecord"
            )
        metrics = dict(records[0])
        examples = metrics.pop(self.weighted_by_key, None)
        arrays = content.array_records.get(self.arrayrecord_key)
        limit = self.exchange.max_payload_bytes(node)
        check_payload_size(node, arrayrecord_serialized_nbytes(arrays), limit)
        payload = []
        if arrays is not None:
            check_tensors([array.data for array in arrays.values()])
            payload = arrays.to_numpy_ndarrays()
        return Reply(node, payload, examples, metrics)

    def train_metrics(self, accepted: list[Accepted]) -> dict[str, Any]:
        """``train_metrics_aggr_fn`` over the accepted replies' metrics."""
        weighed = [
            RecordDict({"metrics": MetricRecord(dict(a.reply.metrics) | {self.weighted_by_key: w})})
            for a in accepted
            if (w := a.reply.num_examples) > 0
        ]
        return dict(self.train_metrics_aggr_fn(weighed, self.weighted_by_key)) if weighed else {}

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """One evaluation message per sampled node: only the config travels."""
        if self.fraction_evaluate == 0.0:
            return []
        nodes = self.sample(grid, self.fraction_evaluate, self.min_evaluate_nodes)
        content = RecordDict(
            {self.configrecord_key: ConfigRecord(dict(config) | {"server-round": server_round})}
        )
        return [Message(content, message_type=MessageType.EVALUATE, dst_node_id=n) for n in nodes]

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """``evaluate_metrics_aggr_fn`` over the replies whose metrics pass
        :func:`check_message_metrics` (the others are counted in
        ``rejected_evaluations``) and that carry a positive ``weighted_by_key`` or a
        ``global_accuracy`` (nodes that have not trained yet report 0 examples and no
        global accuracy and are left out; a trained node without a local test split
        reports 0 examples and its global accuracy); ``weighted_by_key`` weighs at most
        ``SIZE_CAP`` times its median."""
        valid, rejected = screened(
            self.without_errors(replies, "aggregate_evaluate"),
            lambda message: check_message_metrics(message, self.weighted_by_key),
            "aggregate_evaluate",
        )
        counted = [
            message.content
            for message in valid
            if any(
                counts_in_evaluation(record.get(self.weighted_by_key), record)
                for record in message.content.metric_records.values()
            )
        ]
        metrics = MetricRecord({"rejected_evaluations": len(rejected)})
        if counted:
            counted = with_capped_weights(counted, self.weighted_by_key)
            metrics.update(self.evaluate_metrics_aggr_fn(counted, self.weighted_by_key))
        return metrics

    @staticmethod
    def without_errors(replies: Iterable[Message], stage: str) -> list[Message]:
        """The replies that carry content; the others are logged."""
        valid = []
        for message in replies:
            if message.has_error():
                log(
                    WARNING,
                    "%s: node %s failed: %s",
                    stage,
                    message.metadata.src_node_id,
                    message.error.reason,
                )
            else:
                valid.append(message)
        return valid

    def evaluate(self, server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        """The exchange's server-side evaluation as a ``MetricRecord`` (its metrics and
        ``loss``), the default ``evaluate_fn`` of :meth:`start`."""
        outcome = self.exchange.evaluate(server_round)
        if outcome is None:
            return None
        loss, metrics = outcome
        return MetricRecord(dict(metrics) | {"loss": loss})

    def start(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord | None = None,
        num_rounds: int = 3,
        timeout: float = 3600,
        train_config: ConfigRecord | None = None,
        evaluate_config: ConfigRecord | None = None,
        evaluate_fn: EvaluateFn | None = None,
    ) -> Result:
        """Flower's round loop (``Strategy.start``). ``initial_arrays`` may be left out
        (nodes never receive weights; it is what ``evaluate_fn`` scores in round 0);
        ``evaluate_fn`` defaults to :meth:`evaluate`. The returned ``Result.arrays`` are
        the exchange's global arrays after the last round (see :meth:`aggregate_train`)."""
        return super().start(
            grid=grid,
            initial_arrays=initial_arrays if initial_arrays is not None else ArrayRecord(),
            num_rounds=num_rounds,
            timeout=timeout,
            train_config=train_config,
            evaluate_config=evaluate_config,
            evaluate_fn=evaluate_fn or self.evaluate,
        )
