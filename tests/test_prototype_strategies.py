"""GMMPrototypeStrategy and FedProtoStrategy: broadcast, fusion, rejection, byte counts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import fit_result, idle_federation
from flwr.common import parameters_to_ndarrays

from flower_synth.exchange.recorder import RunRecorder
from flower_synth.prototypes import (
    ClassMixtures,
    class_means,
    decode_mixtures,
    decode_prototypes,
    encode_mixtures,
    encode_prototypes,
)
from flower_synth.strategies import FedProtoStrategy, GMMPrototypeStrategy, MeteredStrategy

CLASSES, DIM = 3, 2


def one_class_mixture(label: int, centre: float, count: int) -> list[np.ndarray]:
    """Two components of class ``label`` around ``centre``."""
    counts = np.zeros(CLASSES, np.int64)
    counts[label] = count
    mixture = ClassMixtures(
        np.array([label, label]),
        np.array([0.5, 0.5]),
        np.array([[centre, 0.0], [centre + 0.1, 0.0]]),
        np.ones((2, DIM)),
        counts,
    )
    return encode_mixtures(mixture, "float32")


def gmm_strategy(**options) -> GMMPrototypeStrategy:
    return GMMPrototypeStrategy(num_classes=CLASSES, feature_dim=DIM, dtype="float32", **options)


def test_gmm_strategy_broadcasts_the_fused_mixtures_to_every_client() -> None:
    manager, proxies = idle_federation(3)
    strategy = gmm_strategy(tau=0.5, max_components=None)
    first = strategy.configure_fit(1, strategy.initialize_parameters(manager), manager)
    assert len(first) == 3 and all(ins.parameters.tensors == [] for _, ins in first)
    results = [
        (proxies[0], fit_result(one_class_mixture(0, 0.0, 100), {}, 100)),
        (proxies[1], fit_result(one_class_mixture(0, 0.2, 300), {}, 300)),
        (proxies[2], fit_result(one_class_mixture(2, 9.0, 50), {})),
    ]
    parameters, metrics = strategy.aggregate_fit(1, results, [])
    assert metrics["rejected_payloads"] == 0 and metrics["summary_clients"] == 3
    # Close components (D_B / d < 0.5) merge by similarity: one per class.
    assert (metrics["global_components"], metrics["global_classes"]) == (2, 2)
    assert (metrics["merged_similar"], metrics["merged_capped"]) == (4, 0)
    second = strategy.configure_fit(2, None, manager)
    broadcasts = [parameters_to_ndarrays(ins.parameters) for _, ins in second]
    for arrays in broadcasts[1:]:
        for sent, reference in zip(arrays, broadcasts[0], strict=True):
            np.testing.assert_array_equal(sent, reference)
    for returned, sent in zip(parameters_to_ndarrays(parameters), broadcasts[0], strict=True):
        np.testing.assert_array_equal(returned, sent)  # the round's arrays: the fusion
    fused = decode_mixtures(broadcasts[0], CLASSES, DIM)
    np.testing.assert_array_equal(fused.class_counts, [400, 0, 50])
    # class 0: masses 50, 50 at 0.0/0.1 and 150, 150 at 0.2/0.3 -> mean 0.2
    np.testing.assert_allclose(fused.means[fused.labels == 0][0], [0.2, 0.0], atol=1e-6)
    assert second[0][1].config == {"server_round": 2}


def test_gmm_strategy_rejects_malformed_payloads_and_keeps_previous_summaries() -> None:
    manager, proxies = idle_federation(2)
    strategy = gmm_strategy()
    strategy.aggregate_fit(
        1, [(p, fit_result(one_class_mixture(i, i, 10), {})) for i, p in enumerate(proxies)], []
    )
    bad = one_class_mixture(1, 5.0, 10)
    bad[3][0, 0] = -1.0  # negative variance
    wrong_width = one_class_mixture(0, 5.0, 10)
    wrong_width[2] = np.zeros((2, DIM + 1), np.float32)
    results = [(proxies[0], fit_result(bad, {})), (proxies[1], fit_result(wrong_width, {}))]
    _, metrics = strategy.aggregate_fit(2, results, [])
    assert metrics["rejected_payloads"] == 2
    kept = strategy.exchange.summaries[strategy.exchange.roster.key_of("node-0")]
    assert kept.labels.tolist() == [0, 0]  # previous summary kept
    assert metrics["global_classes"] == 2


def test_one_clients_degenerate_variances_never_block_the_fused_broadcast() -> None:
    manager, proxies = idle_federation(3)
    strategy = GMMPrototypeStrategy(num_classes=CLASSES, feature_dim=DIM)  # float16 broadcast
    rogue = one_class_mixture(1, 3.0, 10)
    rogue[3][:] = 1e-30  # positive in float32, zero in a float16 broadcast
    results = [
        (proxies[0], fit_result(one_class_mixture(0, 0.0, 10), {})),
        (proxies[1], fit_result(one_class_mixture(2, 5.0, 10), {})),
        (proxies[2], fit_result(rogue, {})),
    ]
    _, metrics = strategy.aggregate_fit(1, results, [])
    assert metrics["rejected_payloads"] == 1 and metrics["global_classes"] == 2
    broadcast = parameters_to_ndarrays(strategy.configure_fit(2, None, manager)[0][1].parameters)
    assert broadcast[3].dtype == np.float16
    fused = decode_mixtures(broadcast, CLASSES, DIM)  # what every client does: accepted
    assert sorted(set(fused.labels.tolist())) == [0, 2]


def test_gmm_strategy_rejects_more_components_than_clients_may_send() -> None:
    manager, proxies = idle_federation(1)
    strategy = gmm_strategy(max_client_components=1)
    _, metrics = strategy.aggregate_fit(
        1, [(proxies[0], fit_result(one_class_mixture(0, 0, 10), {}))], []
    )
    assert metrics["rejected_payloads"] == 1 and strategy.exchange.global_summary is None


def test_invalid_gmm_strategy_settings_are_named() -> None:
    with pytest.raises(ValueError, match="covariance must be"):
        gmm_strategy(covariance="tied")
    with pytest.raises(ValueError, match="tau must be >= 0"):
        gmm_strategy(tau=-1.0)


def test_fedproto_strategy_averages_prototypes_by_class_count() -> None:
    manager, proxies = idle_federation(2)
    strategy = FedProtoStrategy(num_classes=CLASSES, feature_dim=DIM, dtype="float32")
    local = [
        class_means(np.array([[0.0, 0.0], [2.0, 2.0], [4.0, 0.0]]), np.array([0, 0, 1]), CLASSES),
        class_means(np.array([[6.0, 6.0]]), np.array([0]), CLASSES),
    ]
    results = [
        (p, fit_result(encode_prototypes(m, "float32"), {}))
        for p, m in zip(proxies, local, strict=True)
    ]
    _, metrics = strategy.aggregate_fit(1, results, [])
    assert metrics["global_classes"] == 2
    (_, ins), _ = strategy.configure_fit(2, None, manager)
    fused = decode_prototypes(parameters_to_ndarrays(ins.parameters), CLASSES, DIM)
    np.testing.assert_allclose(fused.means, [[8 / 3, 8 / 3], [4.0, 0.0]], rtol=1e-6)
    np.testing.assert_array_equal(fused.counts, [3, 1])


def test_metered_prototype_round_counts_bytes_and_rejections(tmp_path) -> None:
    manager, proxies = idle_federation(2)
    recorder = RunRecorder(tmp_path / "run.json", config={})
    strategy = MeteredStrategy(gmm_strategy(tau=0.0, max_components=None), recorder)
    good = one_class_mixture(0, 0.0, 10)
    bad = one_class_mixture(1, 0.0, 10)
    bad[0] = bad[0].astype(np.int64)
    for server_round in (1, 2):
        strategy.configure_fit(server_round, strategy.initialize_parameters(manager), manager)
        results = [(proxies[0], fit_result(good, {})), (proxies[1], fit_result(bad, {}))]
        strategy.aggregate_fit(server_round, results, [])
    first, second = json.loads((tmp_path / "run.json").read_text())["rounds"]
    payload = 2 * (4 + 4 + 4 * DIM + 4 * DIM) + 4 * CLASSES  # float32, 2 components
    assert first["bytes_up"] == payload + (payload + 2 * 4)  # int64 labels: 4 bytes more each
    assert first["bytes_down"] == 0
    assert second["bytes_down"] == 2 * payload  # the fused summary, unchanged at tau=0
    assert first["fit_failures"] == second["fit_failures"] == 1
