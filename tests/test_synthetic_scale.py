"""What a synthetic-exchange round costs as the federation grows, with the defaults:
bounded downloads and samples, aged and expired pools, a capped server classifier."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flower_synth.data import load_dataset
from flower_synth.exchange.server import Accepted, Reply
from flower_synth.models import build_model
from flower_synth.synthetic.server import SyntheticExchange
from flower_synth.synthetic.server_classifier import PooledClassifier
from flower_synth.wire.payload import WireBatch, decode_samples, encode_samples, max_payload_bytes

SHAPE = (1, 8, 8)


def one_round(
    exchange: SyntheticExchange,
    server_round: int,
    sizes: dict[int, int],
    answering: list[int],
    pool_size: int = 200,
) -> dict:
    """Configure a round for the clients in ``sizes`` and aggregate the answers of
    ``answering`` (client i's samples all carry label i); returns the round's metrics."""
    exchange.instructions(server_round, [str(i) for i in sizes])
    accepted = []
    for i in answering:
        arrays = encode_samples(np.full((pool_size, *SHAPE), 0.5), np.full(pool_size, i), "uint8")
        reply = Reply(str(i), arrays, sizes[i], {"partition_id": i})
        accepted.append(Accepted(reply, exchange.decode(reply)))
    return exchange.aggregate(server_round, accepted)


@pytest.mark.parametrize("clients", [10, 50])
def test_a_clients_download_is_bounded_by_the_defaults_whatever_the_federation(clients) -> None:
    exchange = SyntheticExchange(SHAPE, 60, num_partitions=clients)  # the defaults
    sizes = dict.fromkeys(range(clients), 1000) | {1: 100_000}  # client 1 claims a huge set
    one_round(exchange, 1, sizes, list(sizes), pool_size=400)  # others hold 3,600 or more
    instructions = exchange.instructions(2, [str(i) for i in sizes])
    for node, (arrays, config) in instructions.items():
        received = decode_samples(arrays)
        # 0.6 x 1000 real examples; the huge claim is capped by the 3,000-sample budget
        assert len(received) == (3000 if node == "1" else 600)
        assert int(node) not in set(received.labels.tolist())
        bound = max_payload_bytes(len(received), SHAPE, 60) + 4096
        assert sum(a.nbytes for a in arrays) <= bound
        assert config["num_samples"] == 1000 and config["sample_ratio"] == 0.2
    assert sum(a.nbytes for a in instructions["0"][0]) < 600 * (64 + 4) / 4  # deflated


def test_stale_pools_are_aged_then_expired_and_recorded() -> None:
    exchange = SyntheticExchange(SHAPE, 10, pool_max_age=3, download_ratio=0)
    sizes = {0: 500, 1: 500, 2: 500}
    metrics = one_round(exchange, 1, sizes, [0, 1, 2])
    assert (metrics["pool_age_max"], metrics["expired_pools"]) == (0, 0)
    for server_round in (2, 3, 4):  # client 2 is never sampled again
        received = decode_samples(exchange.instructions(server_round, ["0"])["0"][0])
        assert 2 in set(received.labels.tolist())  # its pool, made in round 1, still sent
        metrics = one_round(exchange, server_round, {0: 500, 1: 500}, [0, 1])
    assert metrics["expired_pools"] == 1 and metrics["pool_clients"] == 2  # after round 4
    assert metrics["pool_age_max"] == 0
    received = decode_samples(exchange.instructions(5, ["0"])["0"][0])
    assert set(received.labels.tolist()) == {1}


def test_age_decay_weighs_older_pools_less() -> None:
    exchange = SyntheticExchange(SHAPE, 10, pool_age_decay=0.5, download_ratio=0)
    one_round(exchange, 1, {0: 500, 1: 500, 2: 500}, [0, 1, 2], pool_size=300)
    metrics = one_round(exchange, 2, {0: 500, 1: 500}, [0, 1], pool_size=300)  # 2's pool ages
    assert metrics["pool_age_max"] == 1 and metrics["pool_age_mean"] == pytest.approx(1 / 3)
    received = decode_samples(exchange.instructions(3, ["0"])["0"][0])
    counts = np.bincount(received.labels, minlength=3)
    assert counts.tolist() == [0, 400, 200]  # age 1 vs age 2: weights 0.5 : 0.25


def test_the_server_classifiers_round_is_sized_by_its_samples_and_capped() -> None:
    train_set, test_set = load_dataset("digits")
    pools = [WireBatch(train_set.images[:600], train_set.labels[:600].astype(np.int32))]
    torch.manual_seed(0)
    capped = PooledClassifier(build_model(SHAPE, 10), test_set, epochs=2, max_draws=300)
    assert capped.learn(1, pools)["server_draws"] == 300  # 150 per epoch, not 2 x 600
    assert capped.learn(2, [pools[0].take(np.arange(100))])["server_draws"] == 200  # under cap
    uncapped = PooledClassifier(build_model(SHAPE, 10), test_set, epochs=2, max_draws=None)
    metrics = uncapped.learn(1, pools)
    assert metrics["server_draws"] == 1200
    assert metrics["server_steps"] == 2 * 16  # 600 draws: batches of 38, not 3 of 256
    with pytest.raises(ValueError, match="max_draws"):
        PooledClassifier(build_model(SHAPE, 10), test_set, max_draws=0)
