"""Learned trust: a pool whose labels do not say what its samples show loses its
weight in the downloads and in the server classifier's samples; honest pools keep
theirs."""

from __future__ import annotations

from unittest.mock import Mock

import numpy as np
import pytest
from conftest import ROGUE, fit_result, idle_federation
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from flower_synth import strategies
from flower_synth.exchange.checkpoint import State
from flower_synth.exchange.server import Accepted, Reply
from flower_synth.serverapp import strategy as message_strategies
from flower_synth.synthetic.learned_trust import LearnedTrust
from flower_synth.synthetic.server import SyntheticExchange
from flower_synth.wire.payload import WireBatch, decode_samples, encode_samples


def test_a_flipped_label_pool_weighs_less_than_an_honest_one_within_two_rounds(
    digit_pools,
) -> None:
    trust = LearnedTrust()
    for _ in range(2):
        agreement = trust.update(digit_pools, 10)
    assert agreement[ROGUE] < 0.2 < 0.6 < min(v for k, v in agreement.items() if k != ROGUE)
    assert trust.weight(ROGUE) == 0.0
    assert all(trust.weight(key) == 1.0 for key in digit_pools if key != ROGUE)
    assert trust.weight("never-seen") == 1.0


def test_weight_is_lost_at_once_and_regained_slowly(digit_pools) -> None:
    trust = LearnedTrust(smoothing=0.5)
    trust.update(digit_pools, 10)
    assert trust.weight(ROGUE) == 0.0
    honest = dict(digit_pools)
    fixed = digit_pools[ROGUE]
    honest[ROGUE] = WireBatch(fixed.samples, (fixed.labels - 1) % 10, None)  # labels mended
    weights = []
    for _ in range(3):
        trust.update(honest, 10)
        weights.append(trust.weight(ROGUE))
    assert weights == pytest.approx([0.5, 0.75, 0.875])


def test_sources_no_other_source_can_judge_keep_their_weight() -> None:
    images = np.random.default_rng(0).integers(0, 255, (40, 1, 8, 8), dtype=np.uint8)
    pools = {  # disjoint classes: nothing to compare with
        "a": WireBatch(images[:20], np.zeros(20, np.int32), None),
        "b": WireBatch(images[20:], np.ones(20, np.int32), None),
    }
    trust = LearnedTrust()
    assert trust.update(pools, 10) == {}
    assert trust.weight("a") == trust.weight("b") == 1.0


def test_learned_trust_survives_a_checkpoint(digit_pools) -> None:
    trust = LearnedTrust()
    trust.update(digit_pools, 10)
    restored = LearnedTrust()
    restored.load_state(State(meta=trust.state().meta))
    assert restored.weights == trust.weights and restored.agreement == trust.agreement


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"full": 0.2, "floor": 0.5}, "floor < full"),
        ({"smoothing": 0.0}, r"smoothing must lie in \(0, 1\]"),
        ({"min_judged": 0}, "min_judged must be >= 1"),
    ],
)
def test_bad_settings_are_refused(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        LearnedTrust(**kwargs)


class Recorder:
    """A server classifier that keeps what it was given to learn from."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def learn(self, server_round, batches):
        self.seen.append(sum(len(batch) for batch in batches))
        return {}

    def evaluate(self, server_round):
        return None


def exchange_round(exchange: SyntheticExchange, pools: dict[str, WireBatch], server_round: int):
    exchange.instructions(server_round, list(pools))
    accepted = []
    for key, pool in pools.items():
        arrays = encode_samples(pool.samples / 255.0, pool.labels, "uint8")
        reply = Reply(key, arrays, 300, {"partition_id": int(key)})
        accepted.append(Accepted(reply, exchange.decode(reply)))
    return exchange.aggregate(server_round, accepted)


def test_the_exchange_keeps_a_flipped_label_pool_out_of_downloads_and_the_server_classifier(
    digit_pools,
) -> None:
    server_classifier = Recorder()
    exchange = SyntheticExchange(
        (1, 8, 8), 10, trust="learned", server_classifier=server_classifier, num_partitions=4
    )
    metrics = exchange_round(exchange, digit_pools, 1)
    assert metrics["distrusted_sources"] == 1 and metrics["learned_trust_min"] == 0.0
    assert metrics["agreement_min"] < 0.2 < metrics["agreement_median"]
    assert server_classifier.seen == [900]  # three honest pools of 300, none of the rogue's
    for arrays, _ in exchange.instructions(2, list(digit_pools)).values():
        received = decode_samples(arrays)
        assert len(received) > 0 and (received.samples[:, 0, 0, 0] < 0.5).all()
    restored = SyntheticExchange((1, 8, 8), 10, trust="learned", num_partitions=4)
    restored.load_state(exchange.state())
    assert restored.pools.learned.weights == exchange.pools.learned.weights


def test_uniform_trust_still_takes_every_pool(digit_pools) -> None:
    server_classifier = Recorder()
    exchange = SyntheticExchange((1, 8, 8), 10, server_classifier=server_classifier)
    metrics = exchange_round(exchange, digit_pools, 1)
    assert server_classifier.seen == [1200] and "learned_trust_min" not in metrics
    received = decode_samples(exchange.instructions(2, ["0"])["0"][0])
    assert (received.samples[:, 0, 0, 0] > 0.5).any()  # the rogue's rows among them


def legacy_learned_round(replies: dict[str, list[np.ndarray]]) -> dict:
    manager, proxies = idle_federation(len(replies))
    strategy = strategies.SyntheticSampleStrategy(
        sample_shape=(1, 8, 8), num_classes=10, trust="learned", samples_per_client=300
    )
    strategy.configure_fit(1, None, manager)
    results = [
        (proxy, fit_result(arrays, {"partition_id": int(key)}, 300))
        for proxy, (key, arrays) in zip(proxies, replies.items(), strict=True)
    ]
    return strategy.aggregate_fit(1, results, [])[1]


def message_learned_round(replies: dict[str, list[np.ndarray]]) -> dict:
    strategy = message_strategies.SyntheticSampleStrategy(
        sample_shape=(1, 8, 8), num_classes=10, trust="learned", samples_per_client=300
    )
    grid = Mock()
    grid.get_node_ids.return_value = [int(key) + 1 for key in replies]
    list(strategy.configure_train(1, ArrayRecord(), ConfigRecord(), grid))
    messages = []
    for key, arrays in replies.items():
        message = Mock(spec=Message)
        record = ArrayRecord(numpy_ndarrays=arrays)
        metrics = MetricRecord({"partition_id": int(key), "num-examples": 300})
        message.content = RecordDict({"arrays": record, "metrics": metrics})
        message.metadata.src_node_id = int(key) + 1
        message.has_error.side_effect = lambda: False
        messages.append(message)
    return dict(strategy.aggregate_train(1, messages)[1])


@pytest.mark.parametrize(
    "adapter", [legacy_learned_round, message_learned_round], ids=["legacy", "message-api"]
)
def test_both_flower_apis_distrust_a_flipped_label_pool(adapter, digit_pools) -> None:
    replies = {
        key: encode_samples(pool.samples / 255.0, pool.labels, "uint8")
        for key, pool in digit_pools.items()
    }
    metrics = adapter(replies)
    assert metrics["rejected_payloads"] == 0 and metrics["pool_clients"] == 4
    assert metrics["distrusted_sources"] == 1 and metrics["learned_trust_min"] == 0.0
    assert metrics["learned_trust_mean"] == pytest.approx(0.75)
