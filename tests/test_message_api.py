"""The Message-API strategies and client handlers: one algorithm behind both APIs.

Replies are built as Flower's own strategy tests build them (a ``Mock`` with the
``Message`` interface)."""

from __future__ import annotations

from unittest.mock import Mock

import numpy as np
import pytest
from conftest import fit_result, idle_federation
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict

from flower_synth import serverapp, strategies
from flower_synth.clientapp import message_config
from flower_synth.exchange.recorder import RunRecorder
from flower_synth.serverapp.strategy import MeteredStrategy, SyntheticSampleStrategy
from flower_synth.wire.payload import compressed, decode_samples, encode_samples

SHAPE = (1, 8, 8)


class FakeGrid:
    """The part of a ``Grid`` the strategies use: the connected nodes."""

    def __init__(self, nodes: list[int]) -> None:
        self.nodes = nodes

    def get_node_ids(self) -> list[int]:
        return self.nodes


def reply(node: int, arrays: list[np.ndarray], metrics: dict) -> Message:
    message = Mock(spec=Message)
    message.content = RecordDict({"arrays": ArrayRecord(arrays), "metrics": MetricRecord(metrics)})
    message.metadata.src_node_id = node
    message.has_error.side_effect = lambda: False
    return message


def payload(label: int, n: int, value: float = 0.5) -> list[np.ndarray]:
    return encode_samples(np.full((n, *SHAPE), value), np.full(n, label), "uint8")


BAD = {
    "labels out of range": lambda: [payload(1, 10)[0], np.full(10, 42, np.int32)],
    "one array": lambda: payload(1, 10)[:1],
    "float16 poison": lambda: [np.full((10, *SHAPE), 6e4, np.float16), payload(1, 10)[1]],
    "too many samples": lambda: payload(1, 11),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_both_adapters_reject_the_same_payload_the_same_way(kind: str) -> None:
    options = {"sample_shape": SHAPE, "num_classes": 10, "samples_per_client": 10}
    # legacy
    manager, proxies = idle_federation(2)
    legacy = strategies.SyntheticSampleStrategy(**options)
    legacy.configure_fit(1, None, manager)
    results = [
        (proxies[0], fit_result(payload(0, 10), {"partition_id": 0})),
        (proxies[1], fit_result(BAD[kind](), {"partition_id": 1})),
    ]
    _, legacy_metrics = legacy.aggregate_fit(1, results, [])
    # Message API
    message_api = serverapp.strategy.SyntheticSampleStrategy(**options)
    sent = list(message_api.configure_train(1, ArrayRecord(), ConfigRecord(), FakeGrid([11, 12])))
    assert sorted(m.metadata.dst_node_id for m in sent) == [11, 12]
    replies = [
        reply(11, payload(0, 10), {"partition_id": 0, "num-examples": 100}),
        reply(12, BAD[kind](), {"partition_id": 1, "num-examples": 100}),
    ]
    arrays, metrics = message_api.aggregate_train(1, replies)
    assert arrays is None  # no global model
    assert legacy_metrics["rejected_payloads"] == metrics["rejected_payloads"] == 1
    assert list(legacy.exchange.pools.pools) == list(message_api.exchange.pools.pools)
    assert list(message_api.exchange.pools.pools) == ["partition-0"]


def test_message_api_downloads_are_one_message_per_node_without_its_own_pool() -> None:
    strategy = SyntheticSampleStrategy(
        sample_shape=SHAPE, num_classes=10, samples_per_client=5, sample_allocation="equal"
    )
    grid = FakeGrid([1, 2, 3])
    list(strategy.configure_train(1, ArrayRecord(), ConfigRecord(), grid))
    replies = [reply(n, payload(n, 5), {"partition_id": n, "num-examples": 50}) for n in (1, 2, 3)]
    strategy.aggregate_train(1, replies)
    messages = list(strategy.configure_train(2, ArrayRecord(), ConfigRecord({"lr": 0.1}), grid))
    assert {m.metadata.message_type for m in messages} == {MessageType.TRAIN}
    for message in messages:
        node = message.metadata.dst_node_id
        labels = decode_samples(message.content["arrays"].to_numpy_ndarrays()).labels
        assert sorted(set(labels.tolist())) == sorted({1, 2, 3} - {node})
        config = message.content["config"]
        assert config["server-round"] == 2 and config["lr"] == 0.1 and config["num_samples"] == 5


def test_a_reply_without_its_example_count_is_rejected() -> None:
    strategy = SyntheticSampleStrategy(sample_shape=SHAPE, num_classes=10, samples_per_client=5)
    list(strategy.configure_train(1, ArrayRecord(), ConfigRecord(), FakeGrid([1, 2])))
    replies = [
        reply(1, payload(1, 5), {"partition_id": 1}),  # no num-examples
        reply(2, payload(2, 5), {"partition_id": 2, "num-examples": -3}),
    ]
    _, metrics = strategy.aggregate_train(1, replies)
    assert metrics["rejected_payloads"] == 2


def test_message_metering_counts_array_bytes_exactly(tmp_path) -> None:
    recorder = RunRecorder(tmp_path / "run.json", config={})
    strategy = MeteredStrategy(
        SyntheticSampleStrategy(
            sample_shape=SHAPE, num_classes=10, samples_per_client=5, compression="none"
        ),
        recorder,
    )
    grid = FakeGrid([1, 2])
    list(strategy.configure_train(1, ArrayRecord(), ConfigRecord(), grid))
    replies = [reply(n, payload(n, 5), {"partition_id": n, "num-examples": 50}) for n in (1, 2)]
    strategy.aggregate_train(1, replies)
    list(strategy.configure_train(2, ArrayRecord(), ConfigRecord(), grid))
    first, second = recorder.rounds
    per_node = 5 * 64 + 5 * 4  # uint8 8x8 images and int32 labels
    assert first["bytes_down"] == 0 and first["bytes_up"] == 2 * per_node
    assert second["bytes_down"] == 2 * per_node  # each gets the other's pool
    assert first["fit_failures"] == 0


def test_deflated_payloads_are_metered_as_they_travel(tmp_path) -> None:
    recorder = RunRecorder(tmp_path / "run.json", config={})
    strategy = MeteredStrategy(
        SyntheticSampleStrategy(sample_shape=SHAPE, num_classes=10, samples_per_client=40),
        recorder,
    )
    grid = FakeGrid([1, 2])
    list(strategy.configure_train(1, ArrayRecord(), ConfigRecord(), grid))
    sent = {n: compressed(payload(n, 40), "deflate") for n in (1, 2)}
    replies = [reply(n, sent[n], {"partition_id": n, "num-examples": 400}) for n in (1, 2)]
    strategy.aggregate_train(1, replies)
    messages = list(strategy.configure_train(2, ArrayRecord(), ConfigRecord(), grid))
    first, second = recorder.rounds
    assert first["bytes_up"] == sum(a.nbytes for arrays in sent.values() for a in arrays)
    down = [m.content["arrays"].to_numpy_ndarrays() for m in messages]
    assert second["bytes_down"] == sum(a.nbytes for arrays in down for a in arrays)
    assert second["bytes_down"] < 2 * 40 * (64 + 4) / 5  # constant images deflate > 5x
    for message, arrays in zip(messages, down, strict=True):
        other = 3 - message.metadata.dst_node_id
        assert decode_samples(arrays).labels.tolist() == [other] * 40


@pytest.mark.parametrize(
    ("keyword", "reason"),
    [
        ("initial_parameters", "there is no global model to initialise"),
        ("fraction_fitt", "unknown keyword arguments"),
    ],
)
def test_fedavg_keywords_that_cannot_apply_are_refused_with_the_reason(keyword, reason) -> None:
    with pytest.raises(TypeError, match=reason):
        strategies.SyntheticSampleStrategy(sample_shape=SHAPE, num_classes=10, **{keyword: 1})
    with pytest.raises(TypeError, match=reason):
        SyntheticSampleStrategy(sample_shape=SHAPE, num_classes=10, **{keyword: 1})


def test_fedavg_sampling_keywords_and_defaults_are_accepted() -> None:
    legacy = strategies.SyntheticSampleStrategy(
        sample_shape=SHAPE,
        num_classes=10,
        on_fit_config_fn=lambda r: {"lr": 0.1},
        accept_failures=False,
    )
    assert legacy.min_available_clients == 2  # as in FedAvg
    manager, _ = idle_federation(2)
    (_, ins), _ = legacy.configure_fit(3, None, manager)
    assert ins.config["lr"] == 0.1 and ins.config["server_round"] == 3
    assert legacy.aggregate_fit(3, [], [RuntimeError("lost")]) == (None, {})


def test_message_config_reads_flowers_hyphenated_keys_as_the_learners_names() -> None:
    message = Mock(spec=Message)
    message.content = RecordDict(
        {"config": ConfigRecord({"server-round": 3, "proximal-mu": 0.1, "self_trust": 0.5})}
    )
    assert message_config(message) == {"server_round": 3, "proximal_mu": 0.1, "self_trust": 0.5}
