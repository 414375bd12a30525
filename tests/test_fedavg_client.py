"""The weight-averaging client: local training really learns; FedProx really anchors."""

from __future__ import annotations

import numpy as np
import torch

from flower_synth.app.config import RunSettings
from flower_synth.clients import FedAvgClient
from flower_synth.data import load_client_data
from flower_synth.learning.classifier_training import ClassifierTraining
from flower_synth.learning.training import evaluate, get_weights
from flower_synth.models import build_model


def make_client(settings: RunSettings, partition_id: int = 0) -> FedAvgClient:
    data = load_client_data(settings.partition_scheme(3), partition_id)
    torch.manual_seed(0)
    model = build_model(data.train.image_shape, data.train.num_classes)
    return FedAvgClient(
        model,
        data,
        training=ClassifierTraining(local_epochs=3, batch_size=32, learning_rate=0.05),
        seed=0,
        partition_id=0,
    )


def test_fit_lowers_training_loss_and_reports_it(digits_settings: RunSettings) -> None:
    client = make_client(digits_settings)
    start = get_weights(client.learner.model)
    loss_before, _ = evaluate(client.learner.model, client.learner.data.train)
    weights, n_examples, metrics = client.fit(start, {"server_round": 1})
    loss_after, accuracy_after = evaluate(client.learner.model, client.learner.data.train)
    assert n_examples == len(client.learner.data.train)
    assert loss_after < 0.5 * loss_before
    assert accuracy_after > 0.6
    assert metrics["train_loss"] < loss_before
    assert [w.shape for w in weights] == [w.shape for w in start]


def test_evaluate_reports_local_test_accuracy(digits_settings: RunSettings) -> None:
    client = make_client(digits_settings)
    weights, _, _ = client.fit(client.get_parameters({}), {"server_round": 1})
    loss, n_examples, metrics = client.evaluate(weights, {})
    assert n_examples == len(client.learner.data.test) > 0
    assert metrics["accuracy"] > 0.5
    assert loss > 0


def test_proximal_term_keeps_weights_near_the_global_model(digits_settings: RunSettings) -> None:
    def drift(mu: float) -> float:
        client = make_client(digits_settings)
        start = client.get_parameters({})
        weights, _, _ = client.fit(start, {"server_round": 1, "proximal_mu": mu})
        return float(sum(np.sum((w - s) ** 2) for w, s in zip(weights, start, strict=True)))

    assert drift(1.0) < 0.5 * drift(0.0)


def test_same_seed_same_weights(digits_settings: RunSettings) -> None:
    first = make_client(digits_settings)
    second = make_client(digits_settings)
    w1, _, _ = first.fit(first.get_parameters({}), {"server_round": 2})
    w2, _, _ = second.fit(second.get_parameters({}), {"server_round": 2})
    assert all(np.array_equal(a, b) for a, b in zip(w1, w2, strict=True))
