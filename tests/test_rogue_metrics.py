"""A rogue client's metrics and example counts: validated in one place
(``flower_synth.wire.client_metrics``) before any aggregation, through both Flower APIs,
our strategies and the metering wrapper around flwr's FedAvg alike. A bad report is that
client's failure, counted, never aggregated, never the server's crash."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from unittest.mock import Mock

import pytest
from conftest import idle_federation
from flwr.app import Message, MetricRecord, RecordDict
from flwr.common import Code, EvaluateRes, FitRes, Parameters, Status
from flwr.server.strategy import FedAvg
from flwr.serverapp.strategy import FedAvg as MessageFedAvg

from flower_synth import strategies
from flower_synth.exchange.metrics import for_messages, personalized_accuracy
from flower_synth.exchange.recorder import RunRecorder
from flower_synth.serverapp import strategy as message_api
from flower_synth.wire.client_metrics import (
    MAX_EXAMPLES,
    SIZE_CAP,
    capped_sizes,
    check_metric,
    check_num_examples,
    within_total,
)
from flower_synth.wire.payload import PayloadError

SHAPE = (1, 8, 8)
HONEST = [(100, {"accuracy": 0.9, "partition_id": 0}), (100, {"accuracy": 0.8, "partition_id": 1})]
# (examples, metrics) of the rogue third client: each must be refused
MALFORMED: dict[str, tuple[object, dict]] = {
    "metric is a list": (100, {"accuracy": [0.5, 0.6]}),
    "metric is text": (100, {"accuracy": "high"}),
    "examples = inf": (math.inf, {"accuracy": 0.9}),
    "examples negative": (-5, {"accuracy": 0.9}),
    "examples a float": (100.5, {"accuracy": 0.9}),
    "examples beyond int32": (MAX_EXAMPLES + 1, {"accuracy": 0.9}),
    "accuracy NaN": (100, {"accuracy": math.nan}),
    "accuracy 333333": (100, {"accuracy": 333333.9}),
    "accuracy negative": (100, {"accuracy": -0.1}),
    "loss inf": (100, {"accuracy": 0.9, "loss": math.inf}),
    "seconds negative": (100, {"accuracy": 0.9, "classifier_seconds": -3.0}),
    "count a float": (100, {"accuracy": 0.9, "client_rounds": 2.5}),
}
HONEST_MEAN = 0.85


def legacy_evaluation(rogue: tuple[object, dict], wrapped: str, tmp_path: Path) -> dict:
    """One evaluation round of three legacy clients (two honest, one rogue) through
    ``wrapped``: our synthetic strategy, GMM prototypes or flwr's FedAvg, inside the
    metering wrapper."""
    recorder = RunRecorder(tmp_path / "run.json", config={})
    if wrapped == "synthetic":
        inner = strategies.SyntheticSampleStrategy(
            sample_shape=SHAPE,
            num_classes=10,
            evaluate_metrics_aggregation_fn=personalized_accuracy,
        )
    elif wrapped == "gmm-prototype":
        inner = strategies.GMMPrototypeStrategy(
            num_classes=10, feature_dim=4, evaluate_metrics_aggregation_fn=personalized_accuracy
        )
    else:
        inner = FedAvg(evaluate_metrics_aggregation_fn=personalized_accuracy)
    strategy = strategies.MeteredStrategy(inner, recorder)
    _, proxies = idle_federation(3)
    ok = Status(Code.OK, "")
    results = [
        (proxy, EvaluateRes(ok, 0.5, n, m))  # type: ignore[arg-type]
        for proxy, (n, m) in zip(proxies, [*HONEST, rogue], strict=True)
    ]
    strategy.aggregate_evaluate(1, results, [])
    return json.loads((tmp_path / "run.json").read_text())["rounds"][0]


def message_reply(examples: object, metrics: dict, node: int) -> Message:
    message = Mock(spec=Message)
    message.content = RecordDict({"metrics": MetricRecord(metrics | {"num-examples": examples})})
    message.metadata.src_node_id = node
    message.has_error.side_effect = lambda: False
    return message


def message_evaluation(rogue: tuple[object, dict], wrapped: str, tmp_path: Path) -> dict:
    """The same round through the Message API."""
    recorder = RunRecorder(tmp_path / "run.json", config={})
    aggregate = for_messages(personalized_accuracy)
    if wrapped == "synthetic":
        inner = message_api.SyntheticSampleStrategy(
            sample_shape=SHAPE, num_classes=10, evaluate_metrics_aggr_fn=aggregate
        )
    elif wrapped == "gmm-prototype":
        inner = message_api.GMMPrototypeStrategy(
            num_classes=10, feature_dim=4, evaluate_metrics_aggr_fn=aggregate
        )
    else:
        inner = MessageFedAvg(evaluate_metrics_aggr_fn=aggregate)
    try:
        replies = [
            message_reply(n, m, node) for node, (n, m) in enumerate([*HONEST, rogue], start=1)
        ]
    except (TypeError, ValueError):
        pytest.skip("the Message API cannot carry this report: MetricRecord refuses it")
    message_api.MeteredStrategy(inner, recorder).aggregate_evaluate(1, replies)
    return json.loads((tmp_path / "run.json").read_text())["rounds"][0]


ADAPTERS: dict[str, Callable[[tuple[object, dict], str, Path], dict]] = {
    "legacy": legacy_evaluation,
    "message-api": message_evaluation,
}


@pytest.mark.parametrize("wrapped", ["synthetic", "gmm-prototype", "fedavg"])
@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
@pytest.mark.parametrize("attack", sorted(MALFORMED))
def test_a_malformed_evaluation_report_is_that_clients_failure(
    adapter: str, attack: str, wrapped: str, tmp_path: Path
) -> None:
    record = ADAPTERS[adapter](MALFORMED[attack], wrapped, tmp_path)
    assert record["evaluate_failures"] == 1
    assert record["personalized_accuracy"] == pytest.approx(HONEST_MEAN)
    assert record["personalized_accuracy_weighted"] == pytest.approx(HONEST_MEAN)
    assert record["personalized_accuracy_max"] == pytest.approx(0.9)


@pytest.mark.parametrize("wrapped", ["synthetic", "fedavg"])
@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
def test_a_vast_claimed_test_set_weighs_at_most_the_cap(
    adapter: str, wrapped: str, tmp_path: Path
) -> None:
    """Accuracy 1.0 claimed over 10^9 examples is well-formed: it is aggregated, but its
    count weighs at most SIZE_CAP times the median (true weighted mean 0.85)."""
    record = ADAPTERS[adapter]((10**9, {"accuracy": 1.0, "partition_id": 2}), wrapped, tmp_path)
    assert record["evaluate_failures"] == 0
    cap = SIZE_CAP * 100
    assert record["personalized_accuracy_weighted"] == pytest.approx(
        (0.9 * 100 + 0.8 * 100 + 1.0 * cap) / (200 + cap)
    )
    assert record["personalized_accuracy"] == pytest.approx((0.9 + 0.8 + 1.0) / 3)


def fit_res(examples: object, metrics: dict) -> FitRes:
    return FitRes(Status(Code.OK, ""), Parameters([], "numpy.ndarray"), examples, metrics)  # type: ignore[arg-type]


@pytest.mark.parametrize("attack", sorted(MALFORMED))
def test_a_malformed_training_report_is_a_fit_failure_around_fedavg(
    attack: str, tmp_path: Path
) -> None:
    """flwr's FedAvg behind the legacy metering wrapper never sees the rogue result."""
    seen: list[int] = []

    def aggregate(results: list[tuple[int, dict]]) -> dict:
        seen.extend(n for n, _ in results)
        return {}

    recorder = RunRecorder(tmp_path / "run.json", config={})
    strategy = strategies.MeteredStrategy(FedAvg(fit_metrics_aggregation_fn=aggregate), recorder)
    _, proxies = idle_federation(3)
    examples, metrics = MALFORMED[attack]
    results = [
        (proxies[0], fit_res(100, {"train_loss": 1.0})),
        (proxies[1], fit_res(examples, metrics)),
    ]
    strategy.aggregate_fit(1, results, [])
    record = json.loads((tmp_path / "run.json").read_text())["rounds"][0]
    assert record["fit_failures"] == 1
    assert seen == [100]  # FedAvg aggregates the honest result only


def test_the_documented_ranges() -> None:
    assert check_metric("accuracy", 1) == 1
    assert check_metric("global_accuracy_uncorrected", 0.0) == 0.0
    assert check_metric("train_loss", -2.5) == -2.5  # a loss may be any finite number
    assert check_metric("my_metric", 1e300) == 1e300
    assert check_metric("fresh_start", True) is True
    assert check_num_examples(0) == 0
    for key, value in [
        ("label_agreement", 1.5),
        ("generator_seconds", -1.0),
        ("partition_id", -1),
        ("generated_samples", 3.0),
        ("my_metric", math.nan),
        ("my_metric", None),
        ("my_metric", b"\x00"),
    ]:
        with pytest.raises(PayloadError, match=repr(key)):
            check_metric(key, value)
    with pytest.raises(PayloadError, match="num_examples"):
        check_num_examples(True)


def test_claims_beyond_the_total_leave_the_largest_claim_what_the_others_leave() -> None:
    assert within_total([100, 100, 10**9], 300).tolist() == [100, 100, 100]
    assert within_total([10**9, 50], 110).tolist() == [60, 50]  # two clients too
    assert within_total([100, 250], 1000).tolist() == [100, 250]  # honest: untouched


def test_sizes_are_capped_by_the_median_of_the_positive_ones() -> None:
    assert list(capped_sizes([0, 0, 10, 20, 10**9])) == [0, 0, 10, 20, SIZE_CAP * 20]
    assert list(capped_sizes([0, 0])) == [0, 0]


def test_a_reply_with_other_metric_names_cannot_stop_flwrs_fedavg(tmp_path: Path) -> None:
    """flwr's Message-API FedAvg refuses a round whose replies differ in their metric
    names by raising out of the round loop; behind the wrapper the odd reply is that
    client's failure and the others are aggregated."""
    record = message_evaluation((100, {"accuracy": 0.9, "other": 1.0}), "fedavg", tmp_path)
    assert record["evaluate_failures"] == 1
    assert record["personalized_accuracy"] == pytest.approx(HONEST_MEAN)
