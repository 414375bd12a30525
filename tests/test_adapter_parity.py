"""One behaviour behind both Flower APIs: the same evaluation replies enter (or stay out
of) the round's figures in the legacy and the Message-API adapter."""

from __future__ import annotations

from unittest.mock import Mock

from conftest import idle_federation
from flwr.app import Message, MetricRecord, RecordDict
from flwr.common import Code, EvaluateRes, Status

from flower_synth import strategies
from flower_synth.serverapp import strategy as message_api

SHAPE = (1, 8, 8)
# (partition, examples, metrics): trained with a local test split; not trained yet;
# trained without a local test split (global accuracy only)
REPLIES = [
    (0, 10, {"accuracy": 0.8}),
    (1, 0, {"accuracy": 0.0}),
    (2, 0, {"global_accuracy": 0.5}),
]


def legacy_seen() -> set[int]:
    seen: set[int] = set()

    def aggregate(results):
        seen.update(int(metrics["partition_id"]) for _, metrics in results)
        return {}

    strategy = strategies.SyntheticSampleStrategy(
        sample_shape=SHAPE, num_classes=10, evaluate_metrics_aggregation_fn=aggregate
    )
    _, proxies = idle_federation(3)
    results = [
        (proxies[p], EvaluateRes(Status(Code.OK, ""), 1.0, n, m | {"partition_id": p}))
        for p, n, m in REPLIES
    ]
    strategy.aggregate_evaluate(1, results, [])
    return seen


def message_seen() -> set[int]:
    seen: set[int] = set()

    def aggregate(records, key):
        seen.update(int(r["metrics"]["partition_id"]) for r in records)
        return MetricRecord({})

    strategy = message_api.SyntheticSampleStrategy(
        sample_shape=SHAPE, num_classes=10, evaluate_metrics_aggr_fn=aggregate
    )
    replies = []
    for p, n, m in REPLIES:
        message = Mock(spec=Message)
        message.content = RecordDict(
            {"metrics": MetricRecord(m | {"partition_id": p, "num-examples": n})}
        )
        message.has_error.side_effect = lambda: False
        replies.append(message)
    strategy.aggregate_evaluate(1, replies)
    return seen


def test_both_adapters_count_the_same_evaluation_replies() -> None:
    assert legacy_seen() == message_seen() == {0, 2}
