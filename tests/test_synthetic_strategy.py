"""SyntheticSampleStrategy: pools, downloads, trust proportions, payload rejection."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import fit_result, idle_federation
from flwr.common import FitRes, parameters_to_ndarrays

from flower_synth.exchange.recorder import RunRecorder
from flower_synth.strategies import MeteredStrategy, SyntheticSampleStrategy
from flower_synth.synthetic.allocation import allocate
from flower_synth.wire.payload import decode_samples, encode_samples

SHAPE = (1, 8, 8)
federation = idle_federation


def payload(label: int, n: int, value: float = 0.5, soft: bool = False) -> list[np.ndarray]:
    """n samples of one class: the label tells which client made them."""
    probabilities = np.eye(10)[np.full(n, label)] * 0.9 + 0.01 if soft else None
    return encode_samples(np.full((n, *SHAPE), value), np.full(n, label), "uint8", probabilities)


def fit_res(arrays: list[np.ndarray], partition: int, num_examples: int = 100) -> FitRes:
    return fit_result(arrays, {"partition_id": partition}, num_examples)


def first_round(strategy, manager, proxies, pool_sizes) -> None:
    instructions = strategy.configure_fit(1, strategy.initialize_parameters(manager), manager)
    assert all(ins.parameters.tensors == [] for _, ins in instructions)
    results = [
        (proxy, fit_res(payload(i, pool_sizes[i]), i, num_examples=100 * (i + 1)))
        for i, proxy in enumerate(proxies)
    ]
    strategy.exchange.requested = dict.fromkeys(strategy.exchange.requested, max(pool_sizes))
    _, metrics = strategy.aggregate_fit(1, results, [])
    assert metrics["rejected_payloads"] == 0
    assert metrics["pool_samples"] == sum(pool_sizes)


def downloads(strategy, manager, server_round: int = 2) -> dict[str, tuple[np.ndarray, dict]]:
    instructions = strategy.configure_fit(server_round, None, manager)
    return {
        proxy.cid: (decode_samples(parameters_to_ndarrays(ins.parameters)).labels, ins.config)
        for proxy, ins in instructions
    }


def test_largest_remainder_allocation_is_exact() -> None:
    assert allocate(7, np.array([0.0, 2.0, 5.0])).tolist() == [0, 2, 5]
    counts = allocate(10, np.array([1.0, 1.0, 1.0]))
    assert counts.sum() == 10 and sorted(counts.tolist()) == [3, 3, 4]
    assert allocate(1000, np.array([0.1, 0.3, 0.6])).tolist() == [100, 300, 600]


def test_clients_never_receive_their_own_pool_and_budget_holds() -> None:
    manager, proxies = federation(4)
    strategy = SyntheticSampleStrategy(
        sample_shape=SHAPE,
        num_classes=10,
        samples_per_client=50,
        download_budget=90,
        download_ratio=0,
        self_trust=0.4,
        sample_allocation="equal",
    )
    first_round(strategy, manager, proxies, [50, 50, 50, 50])
    for index, proxy in enumerate(proxies):
        labels, config = downloads(strategy, manager)[proxy.cid]
        assert index not in set(labels.tolist())
        assert len(labels) == 90
        assert (
            np.bincount(labels, minlength=4)[[j for j in range(4) if j != index]].tolist()
            == [30] * 3
        )
        assert config["self_trust"] == 0.4 and config["num_samples"] == 50
        assert config["server_round"] == 2


def test_explicit_trust_matrix_sets_source_proportions() -> None:
    trust = np.array([[0.5, 0.1, 0.4], [0.25, 0.5, 0.25], [0.3, 0.1, 0.6]])
    manager, proxies = federation(3)
    strategy = SyntheticSampleStrategy(
        sample_shape=SHAPE,
        num_classes=10,
        samples_per_client=500,
        download_budget=200,
        download_ratio=0,
        trust=trust,
    )
    first_round(strategy, manager, proxies, [500, 500, 500])
    received = downloads(strategy, manager)
    counts = {
        cid: np.bincount(labels, minlength=3).tolist() for cid, (labels, _) in received.items()
    }
    assert counts["node-0"] == [0, 40, 160]  # 0.1 : 0.4
    assert counts["node-1"] == [100, 0, 100]  # 0.25 : 0.25
    assert counts["node-2"] == [150, 50, 0]  # 0.3 : 0.1
    assert received["node-2"][1]["self_trust"] == 0.6


def test_size_trust_and_unlimited_budget() -> None:
    manager, proxies = federation(3)
    strategy = SyntheticSampleStrategy(
        sample_shape=SHAPE, num_classes=10, trust="size", download_budget=0, download_ratio=0
    )
    first_round(strategy, manager, proxies, [40, 40, 40])  # sizes 100, 200, 300
    labels, _ = downloads(strategy, manager)["node-0"]
    assert len(labels) == 80  # all the other pools hold
    assert np.bincount(labels, minlength=3).tolist() == [0, 32, 48]  # 200 : 300


def test_malformed_payloads_are_rejected_and_the_round_completes() -> None:
    manager, proxies = federation(3)
    strategy = SyntheticSampleStrategy(
        sample_shape=SHAPE, num_classes=10, samples_per_client=20, sample_allocation="equal"
    )
    first_round(strategy, manager, proxies, [20, 20, 20])
    strategy.configure_fit(2, None, manager)
    bad_labels = payload(1, 20)
    bad_labels[1][:] = 42
    results = [
        (proxies[0], fit_res(payload(0, 20, value=1.0), 0)),
        (proxies[1], fit_res(bad_labels, 1)),
        (proxies[2], fit_res([payload(2, 20)[0]], 2)),
    ]
    parameters, metrics = strategy.aggregate_fit(2, results, [])
    assert parameters is None
    assert metrics["rejected_payloads"] == 2
    assert strategy.exchange.pools.pools["partition-0"].samples.max() == 255  # replaced (uint8)
    assert (
        strategy.exchange.pools.pools["partition-1"].labels.tolist() == [1] * 20
    )  # previous pool kept
    assert metrics["pool_clients"] == 3


def test_a_payload_larger_than_asked_for_is_rejected() -> None:
    manager, proxies = federation(2)
    strategy = SyntheticSampleStrategy(sample_shape=SHAPE, num_classes=10, samples_per_client=10)
    strategy.configure_fit(1, None, manager)
    results = [(proxies[0], fit_res(payload(0, 11), 0)), (proxies[1], fit_res(payload(1, 10), 1))]
    _, metrics = strategy.aggregate_fit(1, results, [])
    assert metrics["rejected_payloads"] == 1
    assert list(strategy.exchange.pools.pools) == ["partition-1"]


@pytest.mark.parametrize("partition", [-1, "0", 2.5, True])
def test_a_malformed_partition_id_is_the_clients_failure(partition) -> None:
    manager, proxies = federation(2)
    strategy = SyntheticSampleStrategy(sample_shape=SHAPE, num_classes=10, samples_per_client=10)
    strategy.configure_fit(1, None, manager)
    results = [
        (proxies[0], fit_res(payload(0, 10), partition)),
        (proxies[1], fit_res(payload(1, 10), 1)),
    ]
    _, metrics = strategy.aggregate_fit(1, results, [])
    assert metrics["rejected_payloads"] == 1 and list(strategy.exchange.pools.pools) == [
        "partition-1"
    ]


def test_samples_asked_of_each_client_follow_their_sizes() -> None:
    manager, proxies = federation(3)
    strategy = SyntheticSampleStrategy(
        sample_shape=SHAPE, num_classes=10, samples_per_client=100, sample_allocation="size"
    )
    round_one = strategy.configure_fit(1, None, manager)
    assert [ins.config["num_samples"] for _, ins in round_one] == [100, 100, 100]  # sizes unknown
    first_round(strategy, manager, proxies, [100, 100, 100])  # sizes 100, 200, 300
    asked = {
        proxy.cid: ins.config["num_samples"]
        for proxy, ins in strategy.configure_fit(2, None, manager)
    }
    assert asked == {"node-0": 50, "node-1": 100, "node-2": 150}


def test_a_client_rejoining_under_a_new_node_id_leaves_one_pool() -> None:
    manager, proxies = federation(3)
    strategy = SyntheticSampleStrategy(sample_shape=SHAPE, num_classes=10, samples_per_client=20)
    first_round(strategy, manager, proxies, [20, 20, 20])
    manager.unregister(proxies[2])
    (rejoined,) = idle_federation(1)[1]
    rejoined.cid = "node-9"
    manager.register(rejoined)
    strategy.configure_fit(2, None, manager)
    results = [(proxies[0], fit_res(payload(0, 20), 0)), (rejoined, fit_res(payload(5, 20), 2))]
    _, metrics = strategy.aggregate_fit(2, results, [])
    assert metrics["pool_clients"] == 3 and metrics["pool_samples"] == 60
    assert strategy.exchange.pools.pools["partition-2"].labels.tolist() == [5] * 20  # replaced
    received, _ = downloads(strategy, manager, server_round=3)["node-0"]
    assert set(received.tolist()) == {1, 5}  # the old pool of partition 2 is gone
    own, _ = downloads(strategy, manager, server_round=3)["node-9"]
    assert 5 not in set(own.tolist())  # never its own partition's samples


def test_partial_participation_keeps_trust_proportions_exact_over_existing_pools() -> None:
    trust = np.array(
        [[0.4, 0.1, 0.2, 0.3], [0.2, 0.4, 0.2, 0.2], [0.1, 0.3, 0.5, 0.1], [0.25, 0.25, 0.25, 0.25]]
    )
    manager, proxies = federation(4)
    strategy = SyntheticSampleStrategy(
        sample_shape=SHAPE,
        num_classes=10,
        samples_per_client=60,
        download_budget=120,
        download_ratio=0,
        trust=trust,
    )
    strategy.configure_fit(1, None, manager)
    results = [(proxies[i], fit_res(payload(i, 60), i)) for i in (0, 1, 3)]  # 2 not sampled
    strategy.aggregate_fit(1, results, [])
    received, config = downloads(strategy, manager)["node-0"]
    assert config["self_trust"] == 0.4
    counts = np.bincount(received, minlength=4)
    assert counts.tolist() == [0, 30, 0, 90]  # a_01 : a_03 = 0.1 : 0.3 over the pools that exist


def test_soft_labels_travel_to_the_receivers() -> None:
    manager, proxies = federation(2)
    strategy = SyntheticSampleStrategy(sample_shape=SHAPE, num_classes=10, samples_per_client=10)
    strategy.configure_fit(1, None, manager)
    results = [(proxies[i], fit_res(payload(i, 10, soft=True), i)) for i in range(2)]
    strategy.aggregate_fit(1, results, [])
    arrays = {
        proxy.cid: parameters_to_ndarrays(ins.parameters)
        for proxy, ins in strategy.configure_fit(2, None, manager)
    }
    batch = decode_samples(arrays["node-0"])
    assert batch.probabilities.shape == (10, 10)
    assert np.allclose(batch.probabilities[:, 1], 0.91 / 1.0, atol=2e-3)


class RecordingLearner:
    """A PoolLearner that remembers what it was given."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, list[int]]] = []

    def learn(self, server_round, batches):
        self.seen.append((server_round, sorted({int(b.labels[0]) for b in batches})))
        return {"learnt": len(batches)}

    def evaluate(self, server_round):
        return 0.5, {"global_accuracy": 0.75} if self.seen else None

    def global_arrays(self):
        return {"seen": np.array([len(self.seen)])} if self.seen else None


def test_the_server_classifier_learns_in_aggregate_fit_from_the_new_pools() -> None:
    manager, proxies = federation(3)
    learner = RecordingLearner()
    strategy = SyntheticSampleStrategy(
        sample_shape=SHAPE, num_classes=10, samples_per_client=5, server_classifier=learner
    )
    strategy.configure_fit(1, None, manager)
    results = [(proxies[i], fit_res(payload(i, 5), i)) for i in range(3)]
    _, metrics = strategy.aggregate_fit(1, results, [])
    assert metrics["learnt"] == 3 and learner.seen == [(1, [0, 1, 2])]
    strategy.configure_fit(2, None, manager)
    _, metrics = strategy.aggregate_fit(2, results[:1], [])  # only the new pool
    assert learner.seen[-1] == (2, [0])
    assert strategy.evaluate(2, None) == (0.5, {"global_accuracy": 0.75})


def test_invalid_construction_is_named() -> None:
    with pytest.raises(ValueError, match="trust must be one of"):
        SyntheticSampleStrategy(sample_shape=SHAPE, num_classes=10, trust="equal")
    with pytest.raises(ValueError, match="rows must sum to 1"):
        SyntheticSampleStrategy(sample_shape=SHAPE, num_classes=10, trust=np.ones((2, 2)))


def test_rejected_payloads_count_as_fit_failures_in_the_round_record(tmp_path) -> None:
    manager, proxies = federation(2)
    recorder = RunRecorder(tmp_path / "run.json", config={})
    strategy = MeteredStrategy(
        SyntheticSampleStrategy(sample_shape=SHAPE, num_classes=10, samples_per_client=20),
        recorder,
    )
    strategy.configure_fit(1, strategy.initialize_parameters(manager), manager)
    bad = payload(1, 20)
    bad[0] = bad[0].astype(np.float32)
    results = [(proxies[0], fit_res(payload(0, 20), 0)), (proxies[1], fit_res(bad, 1))]
    strategy.aggregate_fit(1, results, [RuntimeError("lost")])
    record = json.loads((tmp_path / "run.json").read_text())["rounds"][0]
    assert record["fit_failures"] == 2  # one lost client, one rejected payload
    assert record["rejected_payloads"] == 1
    assert record["bytes_up"] == 20 * 64 + 20 * 4 + 20 * 64 * 4 + 20 * 4  # counted as received
