"""What a strategy without weight averaging offers as its global model: the server
classifier's weights (synthetic exchange) or the fused prototypes (GMM), returned by both
adapters as the round's aggregated arrays, so that Flower's ``Result.arrays`` and
``evaluate_fn`` work as in Flower's examples, and never sent to clients."""

from __future__ import annotations

import numpy as np
import torch
from conftest import fit_result, idle_federation
from flwr.app import ArrayRecord, ConfigRecord
from flwr.common import parameters_to_ndarrays
from test_message_api import SHAPE, FakeGrid, payload, reply
from torch import nn

from flower_synth import strategies
from flower_synth.serverapp.strategy import SyntheticSampleStrategy
from flower_synth.strategies.model_free import EMPTY_PARAMETERS


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


def pools_of_two_nodes() -> list:
    return [
        reply(n, payload(n, 20, 0.1 * n), {"partition_id": n, "num-examples": 50}) for n in (1, 2)
    ]


def test_message_api_returns_the_server_classifier_as_the_rounds_arrays() -> None:
    classifier = model()
    before = {k: v.clone() for k, v in classifier.state_dict().items()}
    strategy = SyntheticSampleStrategy(
        sample_shape=SHAPE, num_classes=10, server_classifier=classifier
    )
    grid = FakeGrid([1, 2])
    list(strategy.configure_train(1, ArrayRecord(), ConfigRecord(), grid))
    arrays, _ = strategy.aggregate_train(1, pools_of_two_nodes())
    state = arrays.to_torch_state_dict()
    assert state.keys() == before.keys()
    for key, value in classifier.state_dict().items():
        assert torch.equal(state[key], value)  # the classifier as trained this round
    assert not torch.equal(state["1.weight"], before["1.weight"])  # it did learn
    messages = list(strategy.configure_train(2, arrays, ConfigRecord(), grid))
    sent = [m.content["arrays"].to_numpy_ndarrays() for m in messages]
    assert all(len(a) == 2 for a in sent)  # samples and labels only: no weights go down


def test_evaluate_fn_scores_the_returned_arrays() -> None:
    strategy = SyntheticSampleStrategy(
        sample_shape=SHAPE, num_classes=10, server_classifier=model()
    )
    list(strategy.configure_train(1, ArrayRecord(), ConfigRecord(), FakeGrid([1, 2])))
    arrays, _ = strategy.aggregate_train(1, pools_of_two_nodes())
    user_model = model()
    user_model.load_state_dict(arrays.to_torch_state_dict())  # as Flower's examples do
    images = torch.full((4, *SHAPE), 0.2 * 2 - 1)  # node 2's pool value, normalised
    assert (user_model(images).argmax(1) == 2).all()


def test_no_server_classifier_means_no_arrays() -> None:
    strategy = SyntheticSampleStrategy(sample_shape=SHAPE, num_classes=10)
    list(strategy.configure_train(1, ArrayRecord(), ConfigRecord(), FakeGrid([1, 2])))
    arrays, metrics = strategy.aggregate_train(1, pools_of_two_nodes())
    assert arrays is None and metrics["rejected_payloads"] == 0


def test_legacy_returns_the_same_arrays_and_runs_evaluate_fn_on_them() -> None:
    seen = []

    def evaluate_fn(server_round, weights, config):
        seen.append((server_round, [w.shape for w in weights]))
        return 0.5, {"checked": 1.0}

    legacy = strategies.SyntheticSampleStrategy(
        sample_shape=SHAPE, num_classes=10, server_classifier=model(), evaluate_fn=evaluate_fn
    )
    manager, proxies = idle_federation(2)
    legacy.configure_fit(1, None, manager)
    results = [
        (proxies[n - 1], fit_result(payload(n, 20, 0.1 * n), {"partition_id": n})) for n in (1, 2)
    ]
    parameters, _ = legacy.aggregate_fit(1, results, [])
    weights = parameters_to_ndarrays(parameters)
    expected = [v.numpy() for v in legacy.exchange.server_classifier.model.state_dict().values()]
    assert all(np.array_equal(a, b) for a, b in zip(weights, expected, strict=True))
    assert legacy.evaluate(0, EMPTY_PARAMETERS) is None  # nothing yet
    assert legacy.evaluate(1, parameters) == (0.5, {"checked": 1.0})
    assert seen == [(1, [(10, 64), (10,)])]


def test_identity_metrics_are_not_averaged_by_default() -> None:
    strategy = SyntheticSampleStrategy(sample_shape=SHAPE, num_classes=10)
    list(strategy.configure_train(1, ArrayRecord(), ConfigRecord(), FakeGrid([1, 2])))
    replies = [
        reply(n, payload(n, 20), {"partition_id": n, "num-examples": 50, "train_loss": float(n)})
        for n in (1, 2)
    ]
    _, metrics = strategy.aggregate_train(1, replies)
    assert "partition_id" not in metrics and metrics["train_loss"] == 1.5
