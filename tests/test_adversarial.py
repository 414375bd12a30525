"""One rogue client among honest ones: every malformed payload or metric is that
client's failure, through both Flower APIs, and the round goes on intact."""

from __future__ import annotations

import io
from collections.abc import Callable
from unittest.mock import Mock

import numpy as np
import pytest
import torch
from conftest import fit_result, idle_federation
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common import Code, FitRes, Parameters, Status, parameters_to_ndarrays

from flower_synth import strategies
from flower_synth.clients import SyntheticSampleClient
from flower_synth.data import load_client_data, load_global_test
from flower_synth.exchange.server import Accepted, Reply
from flower_synth.generative import ClassConditionalGaussian
from flower_synth.models import build_model
from flower_synth.prototypes import (
    ClassMixtures,
    ClassPrototypes,
    decode_mixtures,
    encode_mixtures,
    encode_prototypes,
)
from flower_synth.prototypes.exchange import FedProtoExchange
from flower_synth.serverapp import strategy as message_strategies
from flower_synth.synthetic.server_classifier import PooledClassifier
from flower_synth.wire.payload import encode_samples

SHAPE = (1, 8, 8)
HONEST = {"partition_id": 0}


def npy(array: np.ndarray) -> bytes:
    handle = io.BytesIO()
    np.save(handle, array, allow_pickle=True)
    return handle.getvalue()


def samples(label: int, n: int = 10, value: float = 0.5) -> list[bytes]:
    return [npy(a) for a in encode_samples(np.full((n, *SHAPE), value), np.full(n, label), "uint8")]


def header_announcing(gigabytes: float) -> bytes:
    """A .npy header for a huge uint8 array, followed by a few bytes of data."""
    handle = io.BytesIO()
    shape = (int(gigabytes * 2**30),)
    np.lib.format.write_array_header_1_0(
        handle, {"descr": "|u1", "fortran_order": False, "shape": shape}
    )
    return handle.getvalue() + b"\x00" * 64


SYNTHETIC_ATTACKS: dict[str, tuple[Callable[[], list[bytes]], dict, int]] = {
    "pickled object array": (
        lambda: [npy(np.array([{"a": 1}] * 10, dtype=object))] + samples(1)[1:],
        {"partition_id": 1},
        100,
    ),
    "garbage bytes": (lambda: [b"\x00garbage", samples(1)[1]], {"partition_id": 1}, 100),
    "truncated npy": (lambda: [samples(1)[0][:300], samples(1)[1]], {"partition_id": 1}, 100),
    "header announcing 6.4 GB": (
        lambda: [header_announcing(6.4), samples(1)[1]],
        {"partition_id": 1},
        100,
    ),
    "header announcing 64 TB": (
        lambda: [header_announcing(64 * 2**10), samples(1)[1]],
        {"partition_id": 1},
        100,
    ),
    "non-numeric metric": (lambda: samples(1), {"partition_id": 1, "train_loss": "abc"}, 100),
    "NaN metric": (lambda: samples(1), {"partition_id": 1, "train_loss": float("nan")}, 100),
    "negative partition": (lambda: samples(1), {"partition_id": -1}, 100),
    "huge partition": (lambda: samples(1), {"partition_id": 10**18}, 100),
    "float partition": (lambda: samples(1), {"partition_id": 1e18}, 100),
    "float16 poison high": (
        lambda: [npy(np.full((10, *SHAPE), 6e4, np.float16)), samples(1)[1]],
        {"partition_id": 1},
        100,
    ),
    "float16 poison low": (
        lambda: [npy(np.full((10, *SHAPE), -1e4, np.float16)), samples(1)[1]],
        {"partition_id": 1},
        100,
    ),
    "absurd example count": (lambda: samples(1), {"partition_id": 1}, 10**15),
    "oversized payload": (lambda: samples(1, n=5000), {"partition_id": 1}, 100),
}


def legacy_round(arrays: list[bytes], metrics: dict, num_examples: int) -> tuple[dict, dict]:
    manager, proxies = idle_federation(2)
    strategy = strategies.SyntheticSampleStrategy(
        sample_shape=SHAPE, num_classes=10, samples_per_client=10
    )
    strategy.configure_fit(1, None, manager)

    def result(tensors, m, n):
        return FitRes(Status(Code.OK, ""), Parameters(tensors, "numpy.ndarray"), n, m)

    results = [
        (proxies[0], result(samples(0), HONEST, 100)),
        (proxies[1], result(arrays, metrics, num_examples)),
    ]
    _, round_metrics = strategy.aggregate_fit(1, results, [])
    return round_metrics, strategy.exchange.pools.pools


def message_round(arrays: list[bytes], metrics: dict, num_examples: int) -> tuple[dict, dict]:
    strategy = message_strategies.SyntheticSampleStrategy(
        sample_shape=SHAPE, num_classes=10, samples_per_client=10
    )
    grid = Mock()
    grid.get_node_ids.return_value = [1, 2]
    list(strategy.configure_train(1, ArrayRecord(), ConfigRecord(), grid))

    def reply(node, tensors, m, n):
        message = Mock(spec=Message)
        record = ArrayRecord(
            array_dict={
                str(i): Array(dtype="uint8", shape=(1,), stype="numpy.ndarray", data=t)
                for i, t in enumerate(tensors)
            }
        )
        message.content = RecordDict(
            {
                "arrays": record,
                "metrics": MetricRecord(m | {"num-examples": n}),
            }
        )
        message.metadata.src_node_id = node
        message.has_error.side_effect = lambda: False
        return message

    try:
        MetricRecord(metrics)
    except (TypeError, ValueError):
        pytest.skip("the Message API cannot carry this metric: MetricRecord refuses it")
    replies = [reply(1, samples(0), HONEST, 100), reply(2, arrays, metrics, num_examples)]
    _, round_metrics = strategy.aggregate_train(1, replies)
    return dict(round_metrics), strategy.exchange.pools.pools


@pytest.mark.parametrize("adapter", [legacy_round, message_round], ids=["legacy", "message-api"])
@pytest.mark.parametrize("attack", sorted(SYNTHETIC_ATTACKS))
def test_a_rogue_synthetic_payload_is_rejected_and_the_round_goes_on(adapter, attack) -> None:
    make, metrics, num_examples = SYNTHETIC_ATTACKS[attack]
    round_metrics, pools = adapter(make(), metrics, num_examples)
    assert round_metrics["rejected_payloads"] == 1
    assert list(pools) == ["partition-0"]  # the honest client's pool, nothing of the rogue's
    assert round_metrics["pool_samples"] == 10


def float16_edge_rounds(
    settings, rounds: int, rogue: bool = True, **options: object
) -> tuple[object, list[dict]]:
    """``rounds`` rounds of two honest Gaussian clients on digits (float16 samples) and,
    with ``rogue``, a third that sends float16 images all 9.0, inside the accepted
    range [-8, 9]; returns the strategy and every round's metrics."""
    manager, proxies = idle_federation(3 if rogue else 2)
    strategy = strategies.SyntheticSampleStrategy(
        sample_shape=SHAPE,
        num_classes=10,
        samples_per_client=200,
        download_budget=0,
        sample_dtype="float16",  # downloads as float16 too: nothing clipped on the way out
        **options,
    )
    honest = {
        proxy.cid: SyntheticSampleClient(
            ClassConditionalGaussian(10),
            None,
            load_client_data(settings.partition_scheme(3), index),
            RecordDict(),
            partition_id=index,
            sample_dtype="float16",
            compression="none",
        )
        for index, proxy in enumerate(proxies[:2])
    }
    edge = encode_samples(
        np.full((200, *SHAPE), 9.0), np.arange(200) % 10, "float16", compression="none"
    )
    parameters, history = None, []
    for server_round in range(1, rounds + 1):
        results = []
        for proxy, ins in strategy.configure_fit(server_round, parameters, manager):
            if proxy.cid in honest:
                arrays, count, metrics = honest[proxy.cid].fit(
                    parameters_to_ndarrays(ins.parameters), ins.config
                )
                results.append((proxy, fit_result(arrays, metrics, count)))
            else:
                results.append((proxy, fit_result(edge, {"partition_id": 2}, 200)))
        parameters, metrics = strategy.aggregate_fit(server_round, results, [])
        history.append(metrics)
    return strategy, history


def test_float16_images_at_the_edge_of_the_range_cannot_drag_honest_replies_out_of_it(
    digits_settings,
) -> None:
    """Honest clients learn from what the server passes on of the rogue's all-9.0
    images and keep sending replies the server accepts, round after round."""
    strategy, history = float16_edge_rounds(digits_settings, 4)
    for metrics in history:
        assert metrics["rejected_payloads"] == 0 and metrics["pool_clients"] == 3
    kept = strategy.exchange.pools.pools
    assert max(float(pool.samples.max()) for pool in kept.values()) <= 2.0  # passed on clipped


def test_learned_trust_leaves_the_server_classifier_as_without_the_float16_rogue(
    digits_settings,
) -> None:
    """The server classifier after 4 rounds: with learned trust exactly what the two
    honest clients alone give (the rogue's images agree with no class); with uniform
    trust far below it."""
    test = load_global_test(digits_settings.data_source)

    def accuracy(rogue: bool, trust: str) -> float:
        torch.manual_seed(0)
        classifier = PooledClassifier(build_model(SHAPE, 10), test)
        options = {"trust": trust, "server_classifier": classifier}
        float16_edge_rounds(digits_settings, 4, rogue, **options)
        return classifier.evaluate(4)[1]["global_accuracy"]

    honest = accuracy(False, "uniform")
    assert honest > 0.6  # chance is 0.1
    assert accuracy(True, "learned") == pytest.approx(honest, abs=0.03)
    assert accuracy(True, "uniform") < honest - 0.15


def mixtures(label: int, count: int, mean: float = 0.0, dtype: str = "float16") -> list[np.ndarray]:
    summary = ClassMixtures(
        np.array([label]),
        np.array([1.0]),
        np.full((1, 4), mean),
        np.ones((1, 4)),
        np.bincount([label], minlength=3) * count,
    )
    return encode_mixtures(summary, dtype)


def gmm_round(
    rogue: list[np.ndarray], rogue_examples: int, **options: object
) -> tuple[dict, object]:
    manager, proxies = idle_federation(3)
    strategy = strategies.GMMPrototypeStrategy(
        num_classes=3, feature_dim=4, max_client_components=2, **options
    )
    strategy.configure_fit(1, None, manager)
    results = [
        (proxies[0], fit_result(mixtures(0, 50), {"partition_id": 0}, 50)),
        (proxies[1], fit_result(mixtures(1, 60), {"partition_id": 1}, 60)),
        (proxies[2], fit_result(rogue, {"partition_id": 2}, rogue_examples)),
    ]
    _, metrics = strategy.aggregate_fit(1, results, [])
    return metrics, strategy


def test_gmm_counts_near_the_int32_limit_cannot_ruin_the_broadcast() -> None:
    metrics, strategy = gmm_round(mixtures(1, 2**31 - 1), rogue_examples=2**31 - 1)
    assert metrics["rejected_payloads"] == 0  # consistent, so accepted, but capped in fusion
    (_, broadcast), *_ = strategy.configure_fit(2, None, idle_federation(3)[0])
    arrays = [np.load(io.BytesIO(t)) for t in broadcast.parameters.tensors]
    fused = decode_mixtures(arrays, 3, 4)  # what an honest client does: it must accept it
    assert (fused.class_counts >= 0).all() and fused.class_counts[1] <= 10 * 60 + 60


@pytest.mark.parametrize(
    ("rogue", "examples"),
    [
        (mixtures(1, 1000), 10),  # more class counts than training examples
        (mixtures(1, 10, mean=1e38, dtype="float32"), 10),  # inf once broadcast as float16
    ],
    ids=["counts-beyond-examples", "beyond-float16"],
)
def test_gmm_payloads_that_would_poison_the_fusion_are_rejected(rogue, examples) -> None:
    metrics, strategy = gmm_round(rogue, examples)
    assert metrics["rejected_payloads"] == 1
    assert metrics["global_components"] == 2  # the honest clients' classes 0 and 1


@pytest.mark.parametrize(
    "rogue",
    [
        mixtures(1, 10, mean=100.0),  # far outside the features' sphere
        encode_mixtures(
            ClassMixtures(
                np.array([1]),
                np.array([1.0]),
                np.zeros((1, 4)),
                np.full((1, 4), 1e4),
                np.array([0, 10, 0]),
            )
        ),  # variances no feature on the sphere can have
    ],
    ids=["huge-means", "huge-variances"],
)
def test_gmm_components_no_normalised_features_can_have_are_refused(rogue) -> None:
    """With features on the sphere of radius sqrt(4) = 2 (the app's feature-norm),
    the server refuses what lies outside it; the honest classes fuse as before."""
    manager, proxies = idle_federation(3)
    strategy = strategies.GMMPrototypeStrategy(
        num_classes=3, feature_dim=4, max_client_components=2, feature_radius=2.0
    )
    strategy.configure_fit(1, None, manager)
    results = [
        (proxies[0], fit_result(mixtures(0, 50), {"partition_id": 0}, 50)),
        (proxies[1], fit_result(mixtures(2, 60, mean=0.9), {"partition_id": 1}, 60)),
        (proxies[2], fit_result(rogue, {"partition_id": 2}, 10)),
    ]
    _, metrics = strategy.aggregate_fit(1, results, [])
    assert metrics["rejected_payloads"] == 1 and metrics["global_classes"] == 2
    unbounded = strategies.GMMPrototypeStrategy(
        num_classes=3, feature_dim=4, max_client_components=2
    )
    unbounded.configure_fit(1, None, manager)
    _, metrics = unbounded.aggregate_fit(1, results, [])
    assert metrics["rejected_payloads"] == 0  # without the radius nothing says they are wrong
    # ... but their scale, 100x the others', keeps them out of the fusion
    assert metrics["outlier_summaries"] == 1 and metrics["global_classes"] == 2


@pytest.mark.parametrize("clients", [2, 3])
def test_fedproto_leaves_a_clients_huge_prototypes_out_of_the_fusion(clients) -> None:
    """One client's prototypes 1,000x the others' scale: with two clients or three,
    the global prototypes are the honest clients' alone, and honest clients of
    different scales (3x) are both fused."""
    exchange = FedProtoExchange(num_classes=3, feature_dim=4)
    rng = np.random.default_rng(0)

    def reply(node: int, scale: float) -> Accepted:
        means = rng.normal(1.0, 0.2, (3, 4)) * scale
        arrays = encode_prototypes(ClassPrototypes(np.arange(3), means, np.full(3, 20)))
        message = Reply(str(node), arrays, 60, {"partition_id": node})
        return Accepted(message, exchange.decode(message))

    honest = [reply(node, 3.0 if node == 1 else 1.0) for node in range(clients - 1)]
    exchange.instructions(1, [str(node) for node in range(clients)])
    metrics = exchange.aggregate(1, [*honest, reply(clients - 1, 1000.0)])
    assert metrics["outlier_summaries"] == 1
    assert np.abs(exchange.global_summary.means).max() < 10  # the honest scale
    exchange.instructions(2, [str(node) for node in range(clients - 1)])
    metrics = exchange.aggregate(2, [reply(node, 1.0) for node in range(clients - 1)])
    assert metrics["outlier_summaries"] == 1  # still stored, still left out


def test_the_app_bounds_gmm_components_by_the_feature_sphere() -> None:
    from flower_synth.app.config import RunSettings
    from flower_synth.app.server_app import build_own_model_strategy

    normed = build_own_model_strategy(RunSettings(strategy="gmm-prototype"), 64, 10)
    assert normed.exchange.feature_radius == pytest.approx(8.0)
    plain = RunSettings(strategy="gmm-prototype", feature_norm=False)
    assert build_own_model_strategy(plain, 64, 10).exchange.feature_radius is None


@pytest.mark.parametrize("strategy", ["gmm-prototype", "fedproto"])
def test_the_app_bounds_prototype_counts_by_the_training_set(strategy) -> None:
    from flower_synth.app.config import RunSettings
    from flower_synth.app.server_app import build_own_model_strategy
    from flower_synth.data import load_global_train

    settings = RunSettings(strategy=strategy, dataset="digits")
    exchange = build_own_model_strategy(settings, 64, 10).exchange
    assert exchange.total_examples == len(load_global_train(settings.data_source)) > 0


def test_fusing_only_empty_summaries_broadcasts_nothing() -> None:
    empty = encode_mixtures(
        ClassMixtures(
            np.zeros(0, int), np.zeros(0), np.zeros((0, 4)), np.zeros((0, 4)), np.zeros(3, int)
        )
    )
    manager, proxies = idle_federation(2)
    strategy = strategies.GMMPrototypeStrategy(num_classes=3, feature_dim=4)
    strategy.configure_fit(1, None, manager)
    results = [(p, fit_result(empty, {"partition_id": i}, 5)) for i, p in enumerate(proxies)]
    _, metrics = strategy.aggregate_fit(1, results, [])
    assert metrics["rejected_payloads"] == 0 and metrics["summary_clients"] == 2
    assert "global_components" not in metrics
    assert all(ins.parameters.tensors == [] for _, ins in strategy.configure_fit(2, None, manager))


def test_a_client_claiming_a_vast_dataset_gets_a_bounded_share() -> None:
    manager, proxies = idle_federation(4)
    strategy = strategies.SyntheticSampleStrategy(
        sample_shape=SHAPE, num_classes=10, samples_per_client=10, trust="size", download_budget=120
    )
    strategy.configure_fit(1, None, manager)
    sizes = [100, 100, 100, 2**31 - 1]  # the last one lies
    results = [
        (
            p,
            fit_result(
                encode_samples(np.full((10, *SHAPE), 0.5), np.full(10, i), "uint8"),
                {"partition_id": i},
                n,
            ),
        )
        for i, (p, n) in enumerate(zip(proxies, sizes, strict=True))
    ]
    strategy.aggregate_fit(1, results, [])
    (_, ins), *_ = strategy.configure_fit(2, None, manager)
    labels = np.load(io.BytesIO(ins.parameters.tensors[1]))
    liar = np.mean(labels == 3)
    assert liar <= 10 / 12 + 0.01  # at most 10x an honest client's weight (two others here)


def test_an_extra_record_beside_a_valid_reply_is_refused() -> None:
    """A reply may carry only what the strategy reads: an extra ArrayRecord (e.g. a
    gigabyte beside a valid pool) makes it that node's failure, and nothing is kept."""
    strategy = message_strategies.SyntheticSampleStrategy(
        sample_shape=SHAPE, num_classes=10, samples_per_client=10
    )
    grid = Mock()
    grid.get_node_ids.return_value = [1, 2]
    list(strategy.configure_train(1, ArrayRecord(), ConfigRecord(), grid))
    pool = ArrayRecord(
        array_dict={
            str(i): Array(dtype="uint8", shape=(1,), stype="numpy.ndarray", data=t)
            for i, t in enumerate(samples(0))
        }
    )
    message = Mock(spec=Message)
    message.content = RecordDict(
        {
            "arrays": pool,
            "metrics": MetricRecord(HONEST | {"num-examples": 100}),
            "extra": ArrayRecord(array_dict={"x": Array(np.zeros(1000, np.uint8))}),
        }
    )
    message.metadata.src_node_id = 1
    message.has_error.side_effect = lambda: False
    _, round_metrics = strategy.aggregate_train(1, [message])
    assert round_metrics["rejected_payloads"] == 1
    assert strategy.exchange.pools.pools == {}
