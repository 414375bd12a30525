"""Aggregation of client metrics into round figures."""

from __future__ import annotations

import pytest

from flower_synth.exchange.metrics import (
    client_evaluation,
    clients_global_accuracy,
    stateful_client_fit_metrics,
)


def test_label_agreement_is_the_share_of_all_samples_with_the_clients_spread() -> None:
    results = [
        (
            100,
            {
                "label_agreement": 0.9,
                "generated_samples": 900,
                "client_rounds": 3,
                "generator_seconds": 1.5,
            },
        ),
        (
            10,
            {
                "label_agreement": 0.1,
                "generated_samples": 100,
                "client_rounds": 3,
                "generator_seconds": 0.25,
                "pseudo_labelled": 40,
            },
        ),
        (50, {"train_loss": 1.0, "client_rounds": 2, "pseudo_labelled": 2}),
    ]
    metrics = stateful_client_fit_metrics(results)
    assert metrics["clients_pseudo_labelled"] == 42
    assert metrics["label_agreement"] == pytest.approx((0.9 * 900 + 0.1 * 100) / 1000)
    assert (metrics["label_agreement_min"], metrics["label_agreement_max"]) == (0.1, 0.9)
    assert (metrics["client_rounds_min"], metrics["client_rounds_max"]) == (2, 3)
    assert metrics["clients_generator_seconds"] == 1.75  # summed: where the round's time goes


def test_client_evaluation_reports_corrected_and_uncorrected_global_accuracy() -> None:
    results = [
        (20, {"accuracy": 0.9, "global_accuracy": 0.6, "global_accuracy_uncorrected": 0.5}),
        (10, {"accuracy": 0.7, "global_accuracy": 0.8, "global_accuracy_uncorrected": 0.7}),
        (10, {"accuracy": 0.8, "accuracy_uncorrected": 0.6, "global_accuracy_own_classes": 0.9}),
        (10, {"accuracy": 0.8, "accuracy_restored": 0.7}),
        (0, {}),  # a client that has not trained yet reports nothing
    ]
    metrics = client_evaluation(results)
    assert metrics["personalized_accuracy"] == pytest.approx(0.8)
    assert metrics["personalized_accuracy_uncorrected"] == pytest.approx(0.6)
    assert metrics["personalized_accuracy_restored"] == pytest.approx(0.7)
    assert metrics["clients_global_accuracy"] == pytest.approx(0.7)
    assert metrics["clients_global_accuracy_uncorrected"] == pytest.approx(0.6)
    assert metrics["clients_global_accuracy_own_classes"] == pytest.approx(0.9)
    assert "clients_global_accuracy_other_classes" not in metrics


def test_clients_global_accuracy_is_recorded_per_partition_and_rogue_ids_are_not() -> None:
    results = [
        (10, {"global_accuracy": 0.5, "partition_id": 0}),
        (10, {"global_accuracy": 0.7, "partition_id": 3}),
        (10, {"global_accuracy": 0.9, "partition_id": -1}),
        (10, {"global_accuracy": 0.6, "partition_id": 2.5}),
        (10, {"global_accuracy": 0.8}),
    ]
    metrics = clients_global_accuracy(results)
    assert metrics["clients_global_accuracy"] == pytest.approx(0.7)
    per_client = {k: v for k, v in metrics.items() if "_client_" in k}
    assert per_client == {
        "clients_global_accuracy_client_0": 0.5,
        "clients_global_accuracy_client_3": 0.7,
    }
