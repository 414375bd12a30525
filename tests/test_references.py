"""The reference runs: local-only training (a Flower strategy) and centralized training."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from conftest import fit_result, idle_federation
from flwr.app import RecordDict

from flower_synth.app.config import RunSettings
from flower_synth.app.results_files import load_results
from flower_synth.bench.centralized import run_centralized
from flower_synth.clients import LocalOnlyClient
from flower_synth.data import load_client_data
from flower_synth.learning.classifier_training import ClassifierTraining
from flower_synth.models import build_model
from flower_synth.strategies import LocalOnlyStrategy


def test_local_only_strategy_sends_nothing_and_rejects_payloads() -> None:
    manager, proxies = idle_federation(3)
    strategy = LocalOnlyStrategy()
    instructions = strategy.configure_fit(4, strategy.initialize_parameters(manager), manager)
    assert len(instructions) == 3
    assert all(
        ins.parameters.tensors == [] and ins.config == {"server_round": 4}
        for _, ins in instructions
    )
    results = [
        (proxies[0], fit_result([], {"train_loss": 0.5})),
        (proxies[1], fit_result([np.zeros(3, np.float32)], {"train_loss": 0.7})),
    ]
    parameters, metrics = strategy.aggregate_fit(4, results, [])
    assert parameters is None
    assert metrics == {"rejected_payloads": 1}


def test_local_only_client_learns_alone(digits_settings: RunSettings) -> None:
    torch.manual_seed(0)
    data = load_client_data(digits_settings.partition_scheme(3), 1)
    client = LocalOnlyClient(
        build_model((1, 8, 8), 10),
        data,
        RecordDict(),
        partition_id=1,
        training=ClassifierTraining(local_epochs=5, learning_rate=0.05),
    )
    for server_round in (1, 2):
        arrays, num_examples, metrics = client.fit([], {"server_round": server_round})
        assert arrays == [] and num_examples == len(data.train)
    assert metrics["client_rounds"] == 2
    _, _, evaluation = client.evaluate([], {})
    assert evaluation["accuracy"] > 0.8


def test_centralized_reference_trains_on_the_pooled_client_data(
    digits_settings: RunSettings,
) -> None:
    settings = dataclasses.replace(digits_settings, num_server_rounds=3, local_epochs=1)
    data = load_results(run_centralized(settings, num_clients=3))
    assert data["config"]["strategy"] == "centralized"
    assert data["config"]["num-clients"] == 3
    assert [r["round"] for r in data["rounds"]] == [1, 2, 3]
    assert all(r["bytes_down"] == r["bytes_up"] == 0 for r in data["rounds"])
    final = data["rounds"][-1]
    assert final["global_accuracy"] > 0.85  # 10 classes; the pooled data is balanced
    assert final["personalized_accuracy"] > 0.85
    # knowing each client's label mix can only help on its skewed split (Dirichlet 0.5)
    assert final["personalized_accuracy_restored"] > final["personalized_accuracy"] + 0.01
