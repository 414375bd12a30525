"""The attacks of one rogue client, each through both Flower API generations: one driver
per adapter plays the same clients against the legacy ``Strategy`` and the Message-API
``Strategy``, and every test asserts what stops the attack on what the honest clients
keep or receive. (Malformed metrics and payloads: ``test_rogue_metrics.py`` and
``test_adversarial.py``, over both adapters too.)"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple
from unittest.mock import Mock

import numpy as np
import pytest
from conftest import ROGUE, IdleProxy, fit_result
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common import parameters_to_ndarrays
from flwr.server.client_manager import SimpleClientManager

from flower_synth import strategies
from flower_synth.prototypes import (
    ClassMixtures,
    ClassPrototypes,
    decode_mixtures,
    encode_mixtures,
    encode_prototypes,
)
from flower_synth.serverapp import strategy as message_strategies
from flower_synth.wire.client_metrics import MAX_EXAMPLES, SIZE_CAP
from flower_synth.wire.payload import decode_samples, encode_samples

SHAPE = (1, 8, 8)


class Sent(NamedTuple):
    """What one client sends in a round: from ``node``, claiming ``partition``."""

    node: int
    partition: int
    arrays: list[np.ndarray]
    num_examples: int


class LegacyDriver:
    """Plays clients against a legacy strategy: a client manager of idle proxies."""

    name = "legacy"
    module = strategies

    def __init__(self, strategy: Any) -> None:
        self.strategy = strategy
        self.manager = SimpleClientManager()
        self.proxies: dict[int, IdleProxy] = {}

    def connect(self, nodes: Sequence[int]) -> None:
        for node in set(self.proxies) - set(nodes):
            self.manager.unregister(self.proxies.pop(node))
        for node in set(nodes) - set(self.proxies):
            self.proxies[node] = IdleProxy(str(node))
            self.manager.register(self.proxies[node])

    def downloads(self, server_round: int) -> dict[int, list[np.ndarray]]:
        instructions = self.strategy.configure_fit(server_round, None, self.manager)
        return {
            int(proxy.cid): parameters_to_ndarrays(ins.parameters) for proxy, ins in instructions
        }

    def round(self, server_round: int, sent: Sequence[Sent]) -> dict:
        self.downloads(server_round)
        results = [
            (
                self.proxies[s.node],
                fit_result(s.arrays, {"partition_id": s.partition}, s.num_examples),
            )
            for s in sent
        ]
        return dict(self.strategy.aggregate_fit(server_round, results, [])[1])


class MessageDriver:
    """Plays clients against a Message-API strategy: a grid that names the nodes."""

    name = "message-api"
    module = message_strategies

    def __init__(self, strategy: Any) -> None:
        self.strategy = strategy
        self.grid = Mock()

    def connect(self, nodes: Sequence[int]) -> None:
        self.grid.get_node_ids.return_value = list(nodes)

    def downloads(self, server_round: int) -> dict[int, list[np.ndarray]]:
        messages = self.strategy.configure_train(
            server_round, ArrayRecord(), ConfigRecord(), self.grid
        )
        return {
            int(m.metadata.dst_node_id): m.content["arrays"].to_numpy_ndarrays() for m in messages
        }

    def round(self, server_round: int, sent: Sequence[Sent]) -> dict:
        self.downloads(server_round)
        replies = []
        for s in sent:
            message = Mock(spec=Message)
            metrics = MetricRecord({"partition_id": s.partition, "num-examples": s.num_examples})
            arrays = ArrayRecord(numpy_ndarrays=list(s.arrays))
            message.content = RecordDict({"arrays": arrays, "metrics": metrics})
            message.metadata.src_node_id = s.node
            message.has_error.side_effect = lambda: False
            replies.append(message)
        return dict(self.strategy.aggregate_train(server_round, replies)[1])


@pytest.fixture(params=[LegacyDriver, MessageDriver], ids=["legacy", "message-api"])
def driver(request):  # noqa: ANN001, ANN201 - a fixture returning a factory
    """``driver(strategy_name, nodes, **options)``: the strategy of that adapter with
    ``nodes`` connected, in its driver."""

    def make(name: str, nodes: Sequence[int], **options: Any) -> LegacyDriver | MessageDriver:
        adapter = request.param(getattr(request.param.module, name)(**options))
        adapter.connect(nodes)
        return adapter

    return make


def constant_pool(label: int, value: float = 0.5, n: int = 10, dtype: str = "uint8") -> list:
    return encode_samples(np.full((n, *SHAPE), value), np.full(n, label), dtype)


def mixtures(label: int, count: int, mean: float = 0.0, variance: float = 1.0) -> list:
    summary = ClassMixtures(
        np.array([label]),
        np.array([1.0]),
        np.full((1, 4), mean),
        np.full((1, 4), variance),
        np.bincount([label], minlength=3) * count,
    )
    return encode_mixtures(summary, "float32")


GMM = {"num_classes": 3, "feature_dim": 4, "max_client_components": 2}
HONEST_GMM = [Sent(0, 0, mixtures(0, 50), 50), Sent(1, 1, mixtures(1, 60), 60)]


# --- synthetic-sample exchange -----------------------------------------------------


def test_flipped_labels_and_a_vast_claim_are_kept_out_by_learned_trust(driver, digit_pools) -> None:
    """The rogue sends real digits with every label shifted and claims 2^31 - 1
    examples: with learned trust its weight is 0 and no download carries its rows (its
    images have a white corner pixel, the honest ones a black one)."""
    nodes = [int(key) for key in digit_pools]
    run = driver(
        "SyntheticSampleStrategy",
        nodes,
        sample_shape=SHAPE,
        num_classes=10,
        samples_per_client=300,
        trust="learned",
    )
    sent = [
        Sent(
            int(key),
            int(key),
            encode_samples(pool.samples / 255.0, pool.labels, "uint8"),
            MAX_EXAMPLES if key == ROGUE else 300,
        )
        for key, pool in digit_pools.items()
    ]
    metrics = run.round(1, sent)
    assert metrics["rejected_payloads"] == 0 and metrics["distrusted_sources"] == 1
    for node, arrays in run.downloads(2).items():
        received = decode_samples(arrays)
        assert len(received) > 0
        assert (received.samples[:, 0, 0, 0] < 0.5).all(), node  # no white corner


def test_a_vast_claim_under_size_trust_weighs_at_most_the_cap(driver) -> None:
    """Three clients of 100 examples, one claiming 2^31 - 1: in an honest client's
    download the liar's share is at most SIZE_CAP times an honest client's."""
    run = driver(
        "SyntheticSampleStrategy",
        range(4),
        sample_shape=SHAPE,
        num_classes=10,
        samples_per_client=10,
        trust="size",
        download_budget=120,
    )
    sizes = [100, 100, 100, MAX_EXAMPLES]
    run.round(1, [Sent(i, i, constant_pool(i), n) for i, n in enumerate(sizes)])
    labels = decode_samples(run.downloads(2)[0]).labels
    assert len(labels) > 0
    liar = float(np.mean(labels == 3))
    assert 0.5 < liar <= SIZE_CAP / (SIZE_CAP + 2) + 0.01  # two honest others here


def test_a_vast_claim_keeps_its_real_share_where_the_total_is_known(driver) -> None:
    """The federation holds 400 examples (the app: the dataset's training set): a claim
    beyond them is refused; the largest claim that is not, all 400, is trimmed to what
    the three honest clients leave, so in a download it weighs as an honest client."""
    options = {"sample_shape": SHAPE, "num_classes": 10, "samples_per_client": 10}
    options |= {"trust": "size", "download_budget": 120, "total_examples": 400}
    run = driver("SyntheticSampleStrategy", range(4), **options)
    honest = [Sent(i, i, constant_pool(i), 100) for i in range(3)]
    assert run.round(1, [*honest, Sent(3, 3, constant_pool(3), 401)])["rejected_payloads"] == 1
    run = driver("SyntheticSampleStrategy", range(4), **options)
    assert run.round(1, [*honest, Sent(3, 3, constant_pool(3), 400)])["rejected_payloads"] == 0
    labels = decode_samples(run.downloads(2)[0]).labels
    assert len(labels) > 0 and abs(float(np.mean(labels == 3)) - 1 / 3) <= 0.05  # as the others


def test_float16_images_at_the_edge_of_the_range_are_passed_on_clipped(driver) -> None:
    """All 9.0, inside the accepted [-8, 9]: accepted, but what the others receive of
    them is clipped to the kept band, so the honest generators stay in range."""
    run = driver(
        "SyntheticSampleStrategy",
        range(2),
        sample_shape=SHAPE,
        num_classes=10,
        samples_per_client=10,
        sample_dtype="float16",
    )
    sent = [
        Sent(0, 0, constant_pool(0), 100),
        Sent(1, 1, constant_pool(1, 9.0, dtype="float16"), 100),
    ]
    assert run.round(1, sent)["rejected_payloads"] == 0
    received = decode_samples(run.downloads(2)[0])
    assert len(received) > 0 and float(received.samples.max()) <= 2.0


@pytest.mark.parametrize("handover", [True, False])
def test_a_partition_claimed_by_another_node_stays_with_its_owner(driver, handover) -> None:
    """Node 2 claims partition 0 while node 0 holds it: refused; once node 0 is gone it
    takes the partition over only where handover is on."""
    run = driver(
        "SyntheticSampleStrategy",
        range(3),
        sample_shape=SHAPE,
        num_classes=10,
        samples_per_client=10,
        partition_handover=handover,
    )
    run.round(1, [Sent(0, 0, constant_pool(0), 100), Sent(1, 1, constant_pool(1), 100)])
    metrics = run.round(2, [Sent(1, 1, constant_pool(1), 100), Sent(2, 0, constant_pool(7), 100)])
    assert metrics["rejected_payloads"] == 1
    run.connect([1, 2])  # node 0 is gone
    metrics = run.round(3, [Sent(1, 1, constant_pool(1), 100), Sent(2, 0, constant_pool(7), 100)])
    assert metrics["rejected_payloads"] == (0 if handover else 1)
    pools = run.strategy.exchange.pools.pools
    assert int(pools["partition-0"].labels[0]) == (7 if handover else 0)


# --- GMM prototypes and FedProto ---------------------------------------------------


@pytest.mark.parametrize(
    "rogue",
    [mixtures(1, 10, mean=100.0), mixtures(1, 10, variance=1e4)],
    ids=["huge-means", "huge-variances"],
)
def test_gmm_components_far_from_the_others_never_reach_the_fusion(driver, rogue) -> None:
    """With the feature sphere (the app's default) they are refused; without it their
    scale, far above the others', keeps them out of the fusion."""
    for radius, refused, left_out in ((2.0, 1, 0), (None, 0, 1)):
        run = driver("GMMPrototypeStrategy", range(3), feature_radius=radius, **GMM)
        metrics = run.round(1, [*HONEST_GMM, Sent(2, 2, rogue, 10)])
        assert metrics["rejected_payloads"] == refused
        assert metrics["outlier_summaries"] == left_out
        fused = run.strategy.exchange.global_summary
        assert np.abs(fused.means).max() < 1.0 and fused.covariances.max() < 2.0


def test_gmm_variances_of_1e_30_are_refused_and_the_broadcast_still_decodes(driver) -> None:
    run = driver("GMMPrototypeStrategy", range(3), **GMM)
    metrics = run.round(1, [*HONEST_GMM, Sent(2, 2, mixtures(2, 10, variance=1e-30), 10)])
    assert metrics["rejected_payloads"] == 1
    for arrays in run.downloads(2).values():
        assert decode_mixtures(arrays, 3, 4).labels.tolist() == [0, 1]  # what a client accepts


def test_gmm_counts_beyond_the_claimed_examples_are_refused(driver) -> None:
    run = driver("GMMPrototypeStrategy", range(3), **GMM)
    metrics = run.round(1, [*HONEST_GMM, Sent(2, 2, mixtures(1, 1000), 10)])
    assert metrics["rejected_payloads"] == 1 and metrics["global_components"] == 2


def test_gmm_counts_times_1000_weigh_at_most_the_cap_among_three_clients(driver) -> None:
    """Counts x1000 that agree with a claimed training set of that size: accepted (the
    server cannot check a client's data), but the class count is capped at SIZE_CAP
    times the median of the clients' totals in the fusion."""
    run = driver("GMMPrototypeStrategy", range(3), **GMM)
    metrics = run.round(1, [*HONEST_GMM, Sent(2, 2, mixtures(1, 60_000), 60_000)])
    assert metrics["rejected_payloads"] == 0
    fused = decode_mixtures(run.downloads(2)[0], 3, 4)
    assert fused.class_counts[1] <= SIZE_CAP * 60 + 60


@pytest.mark.parametrize("clients", [2, 3])
def test_gmm_counts_times_1000_keep_the_liars_real_share_where_the_total_is_known(
    driver, clients
) -> None:
    """Where the server knows the federation's training examples (the app: the
    dataset's training set), counts x1000 beyond them are refused, and the most a liar
    can claim, all of them, is trimmed to what the others leave: its real share, with
    two clients or three."""
    honest, real = HONEST_GMM[: clients - 1], 60
    total = sum(sent.num_examples for sent in honest) + real
    run = driver("GMMPrototypeStrategy", range(3), total_examples=total, **GMM)
    metrics = run.round(1, [*honest, Sent(2, 2, mixtures(1, real * 1000), real * 1000)])
    assert metrics["rejected_payloads"] == 1
    run = driver("GMMPrototypeStrategy", range(3), total_examples=total, **GMM)
    metrics = run.round(1, [*honest, Sent(2, 2, mixtures(1, total), total)])
    assert metrics["rejected_payloads"] == 0
    fused = decode_mixtures(run.downloads(2)[0], 3, 4)
    honest_class_1 = 60 if clients == 3 else 0
    assert fused.class_counts[1] <= honest_class_1 + real


def test_a_gmm_partition_claimed_by_another_node_is_refused(driver) -> None:
    run = driver("GMMPrototypeStrategy", range(3), **GMM)
    run.round(1, HONEST_GMM)
    metrics = run.round(2, [Sent(2, 0, mixtures(2, 50, mean=0.5), 50)])
    assert metrics["rejected_payloads"] == 1
    assert run.strategy.exchange.summaries["partition-0"].labels.tolist() == [0]


@pytest.mark.parametrize("clients", [2, 3])
def test_fedproto_leaves_huge_prototypes_out_of_the_fusion(driver, clients) -> None:
    """One client's prototypes 1,000x the others' scale, with two clients or three."""
    rng = np.random.default_rng(0)

    def prototypes(scale: float) -> list[np.ndarray]:
        means = rng.normal(1.0, 0.2, (3, 4)) * scale
        return encode_prototypes(ClassPrototypes(np.arange(3), means, np.full(3, 20)))

    run = driver("FedProtoStrategy", range(clients), num_classes=3, feature_dim=4)
    honest = [Sent(node, node, prototypes(1.0), 60) for node in range(clients - 1)]
    metrics = run.round(1, [*honest, Sent(clients - 1, clients - 1, prototypes(1000.0), 60)])
    assert metrics["rejected_payloads"] == 0 and metrics["outlier_summaries"] == 1
    for arrays in run.downloads(2).values():
        means = np.asarray(arrays[1], dtype=np.float64)
        assert np.abs(means).max() < 10  # the honest scale
