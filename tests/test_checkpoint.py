"""Checkpoint and resume: a run continued from its checkpoint repeats no round, loses
none, and computes what the uninterrupted run computes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from unittest.mock import Mock

import numpy as np
import pytest
import torch
from conftest import IdleProxy, fit_result
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
from flwr.common import Code, EvaluateRes, Status
from flwr.server import Server
from flwr.server.client_manager import SimpleClientManager

from flower_synth import strategies
from flower_synth.app.results_files import load_results
from flower_synth.data import ImageDataset
from flower_synth.exchange.checkpoint import Checkpoint, Snapshot, State
from flower_synth.exchange.recorder import RunRecorder
from flower_synth.exchange.server import Accepted, Reply
from flower_synth.models import build_model
from flower_synth.prototypes import ClassMixtures
from flower_synth.prototypes.exchange import GMMPrototypeExchange
from flower_synth.prototypes.wire import encode_mixtures
from flower_synth.serverapp.strategy import MeteredStrategy, SyntheticSampleStrategy
from flower_synth.synthetic.server_classifier import PooledClassifier
from flower_synth.wire.payload import decode_samples, encode_samples

SHAPE = (1, 8, 8)
NODES = [11, 12, 13]


def test_nested_state_survives_a_checkpoint_file(tmp_path: Path) -> None:
    inner = State({"weights": np.arange(6.0).reshape(2, 3)}, {"trained": True})
    state = State(meta={"sizes": {"a": 3}}).with_part("model", inner)
    checkpoint = Checkpoint(tmp_path / "run.checkpoint.npz")
    assert not checkpoint.exists()
    checkpoint.save(Snapshot(7, state))
    loaded = checkpoint.load()
    assert loaded.server_round == 7
    assert loaded.state.meta["sizes"] == {"a": 3}
    assert loaded.state.part("model").meta == {"trained": True}
    np.testing.assert_array_equal(
        loaded.state.part("model").arrays["weights"], inner.arrays["weights"]
    )
    assert not (tmp_path / "run.checkpoint.npz.tmp").exists()  # written, then renamed
    checkpoint.remove()
    assert not checkpoint.exists()


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.npz"
    np.savez(path, x=np.zeros(2))
    with pytest.raises(ValueError, match="not a flower-synth checkpoint"):
        Checkpoint(path).load()


def test_recorder_restore_drops_the_round_in_flight(tmp_path: Path) -> None:
    recorder = RunRecorder(tmp_path / "r.json", {"seed": 0})
    for server_round in (1, 2, 3):
        recorder.update(server_round, global_accuracy=0.1 * server_round)
    saved = recorder.as_dict()
    again = RunRecorder(tmp_path / "r.json", {"seed": 0})
    again.restore(saved, resumed_after=2)
    data = load_results(tmp_path / "r.json")
    assert [r["round"] for r in data["rounds"]] == [1, 2]
    assert data["resumed"] == [2] and data["finished"] is False


def mixtures(label: int, count: int) -> list[np.ndarray]:
    summary = ClassMixtures(
        labels=np.array([label]),
        weights=np.array([1.0]),
        means=np.full((1, 4), float(label)),
        covariances=np.ones((1, 4)),
        class_counts=np.bincount([label], minlength=3) * count,
    )
    return encode_mixtures(summary, "float32")


def test_prototype_exchange_state_round_trip() -> None:
    exchange = GMMPrototypeExchange(num_classes=3, feature_dim=4, max_missed_rounds=2)
    exchange.instructions(1, ["a", "b"])
    replies = [
        Reply("a", mixtures(0, 20), 20, {"partition_id": 0}),
        Reply("b", mixtures(1, 30), 30, {"partition_id": 1}),
    ]
    exchange.aggregate(1, [Accepted(r, exchange.decode(r)) for r in replies])
    restored = GMMPrototypeExchange(num_classes=3, feature_dim=4, max_missed_rounds=2)
    restored.load_state(exchange.state())
    assert set(restored.summaries) == {"partition-0", "partition-1"}
    assert restored.roster.key_of("b") == "partition-1"
    sent, resent = exchange.instructions(2, ["a"])["a"][0], restored.instructions(2, ["a"])["a"][0]
    assert len(sent) == len(resent) == 5
    for original, copy in zip(sent, resent, strict=True):
        np.testing.assert_array_equal(original, copy)


# --- a whole Message-API run, interrupted and resumed -----------------------------------


def answer(partition: int, server_round: int, num_samples: int) -> list[np.ndarray]:
    """A node's payload: images of its own class (node ``11`` sends class 0, and so on)."""
    rng = np.random.default_rng([partition, server_round])
    images = np.clip(rng.normal(0.2 + 0.3 * partition, 0.1, (num_samples, *SHAPE)), 0, 1)
    return encode_samples(images, np.full(num_samples, partition), "uint8")


class AnsweringGrid:
    """A ``Grid`` whose nodes answer every training message at once (:func:`answer`)."""

    def get_node_ids(self) -> list[int]:
        return NODES

    def send_and_receive(self, messages, timeout=None):  # noqa: ANN001 - Grid's signature
        replies = []
        for message in messages:
            node = message.metadata.dst_node_id
            partition = NODES.index(node)
            config = message.content.config_records["config"]
            if message.metadata.message_type == "train":
                arrays = answer(partition, int(config["server-round"]), int(config["num_samples"]))
                metrics = {"partition_id": partition, "num-examples": 100}
                content = RecordDict(
                    {"arrays": ArrayRecord(arrays), "metrics": MetricRecord(metrics)}
                )
            else:
                content = RecordDict({"metrics": MetricRecord({"num-examples": 0})})
            reply = Mock(spec=Message)
            reply.content = content
            reply.metadata.src_node_id = node
            reply.has_error.side_effect = lambda: False
            replies.append(reply)
        return replies


class AnsweringProxy(IdleProxy):
    """A legacy client that answers as :class:`AnsweringGrid`'s nodes do."""

    def fit(self, ins, timeout, group_id):  # noqa: ANN001 - ClientProxy's signature
        partition = NODES.index(int(self.cid))
        arrays = answer(partition, int(ins.config["server_round"]), int(ins.config["num_samples"]))
        return fit_result(arrays, {"partition_id": partition})

    def evaluate(self, ins, timeout, group_id):  # noqa: ANN001 - ClientProxy's signature
        return EvaluateRes(Status(Code.OK, ""), 0.0, 0, {})


def labelled_test_set() -> ImageDataset:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 30)
    images = np.clip(rng.normal(0.2 + 0.3 * labels[:, None], 0.1, (90, 64)), 0, 1)
    return ImageDataset((images * 255).astype(np.uint8).reshape(90, *SHAPE), labels, 3)


EXCHANGE = {
    "sample_shape": SHAPE,
    "num_classes": 3,
    "samples_per_client": 40,
    "download_budget": 30,
}


def server_classifier() -> PooledClassifier:
    torch.manual_seed(0)
    return PooledClassifier(
        build_model(SHAPE, 3), labelled_test_set(), epochs=1, learning_rate=0.05
    )


def metered_run(path: Path) -> MeteredStrategy:
    strategy = SyntheticSampleStrategy(
        **EXCHANGE, server_classifier=server_classifier(), min_available_nodes=3
    )
    recorder = RunRecorder(path, {"seed": 0})
    return MeteredStrategy(strategy, recorder, Checkpoint(path.with_suffix(".checkpoint.npz")))


def run_message_api(path: Path, num_rounds: int, resumed_after: int | None = None) -> None:
    """``num_rounds`` of a Message-API run (resumed from its checkpoint, if asked)."""
    run = metered_run(path)
    if resumed_after is not None:
        assert run.resume() == resumed_after
    run.start(grid=AnsweringGrid(), num_rounds=num_rounds)


def run_legacy(path: Path, num_rounds: int, resumed_after: int | None = None) -> None:
    """The same on the legacy API: Flower's ``Server`` loop with three clients."""
    strategy = strategies.SyntheticSampleStrategy(
        **EXCHANGE, server_classifier=server_classifier(), min_available_clients=3
    )
    recorder = RunRecorder(path, {"seed": 0})
    checkpoint = Checkpoint(path.with_suffix(".checkpoint.npz"))
    run = strategies.MeteredStrategy(strategy, recorder, checkpoint)
    if resumed_after is not None:
        assert run.resume() == resumed_after
    manager = SimpleClientManager()
    for node in NODES:
        manager.register(AnsweringProxy(str(node)))
    Server(client_manager=manager, strategy=run).fit(run.rounds_left(num_rounds), timeout=None)


@pytest.mark.parametrize("run", [run_message_api, run_legacy], ids=["message-api", "legacy"])
def test_a_resumed_run_continues_exactly_where_the_checkpoint_left_off(
    tmp_path: Path, run: Callable[..., None]
) -> None:
    run(tmp_path / "whole.json", 4)
    run(tmp_path / "part.json", 2)  # then the ServerApp "dies"
    run(tmp_path / "part.json", 4, resumed_after=2)  # a new process: nothing in memory

    whole, part = load_results(tmp_path / "whole.json"), load_results(tmp_path / "part.json")
    assert [r["round"] for r in part["rounds"]] == [1, 2, 3, 4]  # none lost, none doubled
    assert part["resumed"] == [2]
    for a, b in zip(whole["rounds"], part["rounds"], strict=True):
        # the pools came back: round 3 sends the others' samples at once
        assert a["bytes_down"] == b["bytes_down"] and a["pool_samples"] == b["pool_samples"]
        assert a["replay_samples"] == b["replay_samples"]  # and the replay buffer
        assert a["global_accuracy"] == pytest.approx(b["global_accuracy"], abs=1e-9)
        assert a["pool_train_loss"] == pytest.approx(b["pool_train_loss"], rel=1e-6)
    assert whole["rounds"][2]["bytes_down"] > 0


def test_resume_without_a_checkpoint_starts_from_round_one(tmp_path: Path) -> None:
    run = metered_run(tmp_path / "fresh.json")
    assert run.resume() == 0
    run.start(grid=AnsweringGrid(), num_rounds=1)
    assert [r["round"] for r in load_results(tmp_path / "fresh.json")["rounds"]] == [1]


def test_downloads_are_cut_from_pools_kept_in_their_wire_dtype(tmp_path: Path) -> None:
    run = metered_run(tmp_path / "r.json")
    run.start(grid=AnsweringGrid(), num_rounds=1)
    pools = run.strategy.exchange.pools.pools
    assert {pool.samples.dtype for pool in pools.values()} == {np.dtype(np.uint8)}
    plan = run.strategy.exchange.instructions(2, ["11"])
    batch = decode_samples(plan["11"][0])
    assert len(batch) == 30 and 0 not in set(batch.labels.tolist())
