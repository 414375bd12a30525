"""A server classifier given no normalisation takes its inputs as the clients' models
do: clients report their input normalisation with their samples, the server validates
it as part of the payload, and follows what most of a round's clients report."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import fit_result, idle_federation
from flwr.app import MetricRecord, RecordDict
from torch import nn

from flower_synth.exchange.checkpoint import State
from flower_synth.learning.normalization import SYMMETRIC, Normalization
from flower_synth.serverapp.strategy.model_free import average_measures
from flower_synth.strategies import SyntheticSampleStrategy
from flower_synth.synthetic.server_classifier import PooledClassifier
from flower_synth.wire.input_normalization import (
    most_reported,
    normalization_metrics,
    reported_normalization,
)
from flower_synth.wire.payload import PayloadError, encode_samples

SHAPE = (1, 8, 8)
MNIST = Normalization((0.1307,), (0.3081,))


def reply(partition: int, normalization: Normalization | None, **extra: float):
    arrays = encode_samples(np.full((5, *SHAPE), 0.5), np.full(5, partition), "uint8")
    metrics = {"partition_id": partition} | extra
    if normalization is not None:
        metrics |= normalization_metrics(normalization, 1)
    return fit_result(arrays, metrics)


def strategy(normalization: Normalization | None = None) -> SyntheticSampleStrategy:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    classifier = PooledClassifier(model, num_classes=10, normalization=normalization, epochs=1)
    return SyntheticSampleStrategy(
        sample_shape=SHAPE, num_classes=10, samples_per_client=5, server_classifier=classifier
    )


def test_the_server_classifier_follows_what_most_clients_report() -> None:
    manager, proxies = idle_federation(4)
    exchange = strategy()
    assert exchange.exchange.server_classifier.normalization == SYMMETRIC  # until told
    exchange.configure_fit(1, None, manager)
    results = [
        (proxies[0], reply(0, MNIST)),
        (proxies[1], reply(1, MNIST)),
        (proxies[2], reply(2, SYMMETRIC)),
        (proxies[3], reply(3, None)),  # says nothing: counts for no one
    ]
    _, metrics = exchange.aggregate_fit(1, results, [])
    assert metrics["rejected_payloads"] == 0
    assert exchange.exchange.server_classifier.normalization == MNIST

    given = strategy(SYMMETRIC)  # a normalisation given by the user is kept
    given.configure_fit(1, None, manager)
    given.aggregate_fit(1, results, [])
    assert given.exchange.server_classifier.normalization == SYMMETRIC


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"input_std_0": -1.0}, "> 0"),
        ({"input_mean_0": math.nan}, "finite"),
        ({"input_mean_0": 1e9}, "finite"),
        ({"input_mean_1": 0.5}, "channels"),
    ],
)
def test_a_rogue_normalisation_is_that_clients_failure(bad: dict, reason: str) -> None:
    manager, proxies = idle_federation(3)
    exchange = strategy()
    exchange.configure_fit(1, None, manager)
    rogue = reply(2, MNIST)
    rogue.metrics |= bad
    results = [(proxies[0], reply(0, SYMMETRIC)), (proxies[1], reply(1, SYMMETRIC))]
    _, metrics = exchange.aggregate_fit(1, [*results, (proxies[2], rogue)], [])
    assert metrics["rejected_payloads"] == 1 and metrics["pool_clients"] == 2
    assert exchange.exchange.server_classifier.normalization == SYMMETRIC
    with pytest.raises(PayloadError, match=reason):
        reported_normalization(rogue.metrics, 1)


def test_reports_are_counted_whatever_order_they_arrive_in() -> None:
    other = Normalization((0.2,), (0.3,))
    assert most_reported([other, MNIST]) == most_reported([MNIST, other]) == MNIST
    assert most_reported([None, None]) is None


def test_the_followed_normalisation_survives_a_checkpoint_and_is_no_measure() -> None:
    classifier = PooledClassifier(nn.Linear(64, 10), num_classes=10)
    classifier.follow(MNIST)
    state = classifier.state()
    restored = PooledClassifier(nn.Linear(64, 10), num_classes=10)
    restored.load_state(State(state.arrays, state.meta))
    assert restored.normalization == MNIST

    records = [
        RecordDict({"metrics": MetricRecord({"loss": float(i), "num-examples": 1} | report)})
        for i, report in enumerate([normalization_metrics(MNIST, 1)] * 2)
    ]
    assert set(average_measures(records, "num-examples")) == {"loss"}
