"""A partition belongs to the node that first claimed it: another node's claim is that
node's failure while the owner is connected, and the partition changes hands once the
owner is gone (a SuperNode restarted under a new node id), unless partition handover is
off (SuperNode authentication: node ids are keys'), when it never does."""

from __future__ import annotations

from unittest.mock import Mock

import numpy as np
import pytest
from conftest import fit_result, idle_federation
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common import Code, FitRes, Parameters, Status
from test_adversarial import SHAPE, gmm_round, mixtures, samples

from flower_synth import strategies
from flower_synth.exchange.server import Roster
from flower_synth.serverapp import strategy as message_api
from flower_synth.wire.payload import PayloadError


def reply(node: int, partition: int, label: int) -> Message:
    message = Mock(spec=Message)
    pool = ArrayRecord(
        array_dict={
            str(i): Array(dtype="uint8", shape=(1,), stype="numpy.ndarray", data=t)
            for i, t in enumerate(samples(label))
        }
    )
    metrics = MetricRecord({"partition_id": partition, "num-examples": 100})
    message.content = RecordDict({"arrays": pool, "metrics": metrics})
    message.metadata.src_node_id = node
    message.has_error.side_effect = lambda: False
    return message


def message_round(strategy, connected: list[int], server_round: int, replies) -> dict:
    grid = Mock()
    grid.get_node_ids.return_value = connected
    list(strategy.configure_train(server_round, ArrayRecord(), ConfigRecord(), grid))
    _, metrics = strategy.aggregate_train(server_round, replies)
    return dict(metrics)


def pool_labels(strategy) -> dict[str, int]:
    return {key: int(pool.labels[0]) for key, pool in strategy.exchange.pools.pools.items()}


def test_a_second_node_claiming_a_held_partition_is_refused_until_the_owner_is_gone() -> None:
    strategy = message_api.SyntheticSampleStrategy(
        sample_shape=SHAPE, num_classes=10, samples_per_client=10, min_available_nodes=2
    )
    metrics = message_round(strategy, [1, 2, 3], 1, [reply(1, 0, 0), reply(2, 1, 1)])
    assert metrics["rejected_payloads"] == 0
    # node 3 claims partition 0 while node 1, its owner, is connected: refused
    metrics = message_round(strategy, [1, 2, 3], 2, [reply(2, 1, 1), reply(3, 0, 7)])
    assert metrics["rejected_payloads"] == 1
    assert pool_labels(strategy) == {"partition-0": 0, "partition-1": 1}
    # node 1 is gone (restarted as node 3): the partition changes hands
    metrics = message_round(strategy, [2, 3], 3, [reply(2, 1, 1), reply(3, 0, 7)])
    assert metrics["rejected_payloads"] == 0
    assert pool_labels(strategy) == {"partition-0": 7, "partition-1": 1}


def test_two_nodes_claiming_one_partition_in_one_round_keep_the_first() -> None:
    strategy = message_api.SyntheticSampleStrategy(
        sample_shape=SHAPE, num_classes=10, samples_per_client=10, min_available_nodes=2
    )
    metrics = message_round(strategy, [1, 2], 1, [reply(1, 0, 0), reply(2, 0, 7)])
    assert metrics["rejected_payloads"] == 1
    assert pool_labels(strategy) == {"partition-0": 0}


def legacy_fit(client_samples: list[bytes], partition: int) -> FitRes:
    return FitRes(
        Status(Code.OK, ""),
        Parameters(client_samples, "numpy.ndarray"),
        100,
        {"partition_id": partition},
    )


def test_the_legacy_adapter_keeps_the_owner_too() -> None:
    manager, proxies = idle_federation(3)
    strategy = strategies.SyntheticSampleStrategy(
        sample_shape=SHAPE, num_classes=10, samples_per_client=10
    )
    strategy.configure_fit(1, None, manager)
    strategy.aggregate_fit(1, [(proxies[0], legacy_fit(samples(0), 0))], [])
    strategy.configure_fit(2, None, manager)
    _, metrics = strategy.aggregate_fit(2, [(proxies[2], legacy_fit(samples(7), 0))], [])
    assert metrics["rejected_payloads"] == 1
    assert pool_labels(strategy) == {"partition-0": 0}
    manager.unregister(proxies[0])
    strategy.configure_fit(3, None, manager)
    _, metrics = strategy.aggregate_fit(3, [(proxies[2], legacy_fit(samples(7), 0))], [])
    assert metrics["rejected_payloads"] == 0
    assert pool_labels(strategy) == {"partition-0": 7}


def test_a_gmm_client_cannot_take_another_clients_partition() -> None:
    """Three clients hold partitions 0-2 after round 1; in round 2 the third claims
    partition 0 with far-off mixtures: refused, partition 0 keeps its owner's summary."""
    _, strategy = gmm_round(mixtures(2, 60), 60)
    manager, proxies = idle_federation(3)
    strategy.configure_fit(2, None, manager)
    rogue = (proxies[2], fit_result(mixtures(2, 60, mean=50.0), {"partition_id": 0}, 60))
    _, metrics = strategy.aggregate_fit(2, [rogue], [])
    assert metrics["rejected_payloads"] == 1
    assert sorted(strategy.exchange.summaries) == ["partition-0", "partition-1", "partition-2"]
    assert np.asarray(strategy.exchange.summaries["partition-0"].labels).tolist() == [0]


def test_without_handover_a_partition_stays_with_its_first_node_for_the_whole_run() -> None:
    """Node 1 owns partition 0; it disconnects, node 3 (another key) claims partition 0 in
    every later round and is refused, also after node 1 was dropped for missed rounds;
    node 1 comes back under its id (the same key) and is accepted."""
    strategy = message_api.SyntheticSampleStrategy(
        sample_shape=SHAPE,
        num_classes=10,
        samples_per_client=10,
        min_available_nodes=2,
        max_missed_rounds=1,
        partition_handover=False,
    )
    assert (
        message_round(strategy, [1, 2], 1, [reply(1, 0, 0), reply(2, 1, 1)])["rejected_payloads"]
        == 0
    )
    for server_round in (2, 3):  # node 1 gone: its pool dropped after round 2
        metrics = message_round(strategy, [2, 3], server_round, [reply(2, 1, 1), reply(3, 0, 7)])
        assert metrics["rejected_payloads"] == 1
        assert 7 not in pool_labels(strategy).values()
    metrics = message_round(strategy, [1, 2, 3], 4, [reply(1, 0, 5), reply(2, 1, 1)])
    assert metrics["rejected_payloads"] == 0
    assert pool_labels(strategy) == {"partition-0": 5, "partition-1": 1}


def test_the_legacy_adapter_without_handover_refuses_another_node_after_the_owner_left() -> None:
    manager, proxies = idle_federation(3)
    strategy = strategies.SyntheticSampleStrategy(
        sample_shape=SHAPE, num_classes=10, samples_per_client=10, partition_handover=False
    )
    strategy.configure_fit(1, None, manager)
    strategy.aggregate_fit(1, [(proxies[0], legacy_fit(samples(0), 0))], [])
    manager.unregister(proxies[0])
    strategy.configure_fit(2, None, manager)
    _, metrics = strategy.aggregate_fit(2, [(proxies[2], legacy_fit(samples(7), 0))], [])
    assert metrics["rejected_payloads"] == 1
    assert pool_labels(strategy) == {"partition-0": 0}


def test_a_gmm_partition_without_handover_stays_with_its_first_node() -> None:
    _, strategy = gmm_round(mixtures(2, 60), 60, partition_handover=False)
    manager, proxies = idle_federation(3)
    manager.unregister(proxies[0])  # partition 0's owner leaves
    strategy.configure_fit(2, None, manager)
    rogue = (proxies[2], fit_result(mixtures(2, 60, mean=50.0), {"partition_id": 0}, 60))
    _, metrics = strategy.aggregate_fit(2, [rogue], [])
    assert metrics["rejected_payloads"] == 1
    assert np.asarray(strategy.exchange.summaries["partition-0"].labels).tolist() == [0]


def test_the_owners_survive_a_checkpoint() -> None:
    roster = Roster(handover=False)
    roster.identify("1", 0)
    restored = Roster(handover=False)
    restored.load_state(roster.state())
    restored.observe(["3"])
    with pytest.raises(PayloadError, match="belongs to node 1 for the whole run"):
        restored.check_claim("3", 0)
    restored.check_claim("1", 0)  # the owner itself
