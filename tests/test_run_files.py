"""One run owns its results file; resume continues only what it should, and a damaged
checkpoint is set aside instead of crashing every retry."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from flwr.server.strategy import FedAvg
from flwr.serverapp.strategy import FedAvg as MessageFedAvg

from flower_synth.app.run_files import (
    OwnedFile,
    checkpoint_of,
    differing_keys,
    new_results_file,
    resumable_results,
)
from flower_synth.exchange.checkpoint import Checkpoint, Snapshot, State
from flower_synth.exchange.recorder import RunRecorder
from flower_synth.serverapp.strategy import MeteredStrategy as MessageMeteredStrategy
from flower_synth.strategies import MeteredStrategy

NAMES = ("synthetic", "fashion-mnist", "dirichlet", 0)
CONFIG = {"strategy": "synthetic", "learning-rate": 0.01, "num-server-rounds": 4, "resume": True}


def unfinished_run(directory: Path, config: dict, stamp: str = "20260101-000000") -> Path:
    path = directory / f"synthetic-fashion-mnist-dirichlet-seed0-{stamp}.json"
    RunRecorder(path, config=config).update(1, seconds=1.0)
    checkpoint_of(path).save(Snapshot(1, State(meta={"results": {}})))
    return path


def test_a_results_file_has_one_owner_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    first = OwnedFile.claim(path)
    assert first is not None
    assert OwnedFile.claim(path) is None
    first.release()
    again = OwnedFile.claim(path)
    assert again is not None
    again.release()


def test_two_runs_started_in_the_same_second_write_two_files(tmp_path: Path) -> None:
    first = new_results_file(tmp_path / "run.json")
    second = new_results_file(tmp_path / "run.json")
    assert (first.path.name, second.path.name) == ("run.json", "run-2.json")
    first.release()
    second.release()


def test_resume_with_more_rounds_continues_the_checkpoint(tmp_path: Path) -> None:
    path = unfinished_run(tmp_path, CONFIG)
    owned = resumable_results(tmp_path, NAMES, CONFIG | {"num-server-rounds": 6, "resume": False})
    assert owned is not None and owned.path == path
    owned.release()


def test_resume_with_other_settings_leaves_the_file_and_says_why(tmp_path: Path, caplog) -> None:
    path = unfinished_run(tmp_path, CONFIG)
    with caplog.at_level(logging.WARNING, logger="flwr"):
        owned = resumable_results(tmp_path, NAMES, CONFIG | {"learning-rate": 0.02})
    assert owned is None
    assert "other settings (learning-rate)" in caplog.text
    assert path.exists() and checkpoint_of(path).exists()
    assert differing_keys(CONFIG, CONFIG | {"output-dir": "x", "num-server-rounds": 9}) == []


def test_a_key_the_strategy_never_reads_does_not_stop_a_resume(tmp_path: Path) -> None:
    fedavg = CONFIG | {"strategy": "fedavg"}
    unfinished_run(tmp_path, fedavg)  # written before a synthetic-only key existed
    owned = resumable_results(tmp_path, NAMES, fedavg | {"classifier-min-batches": 8})
    assert owned is not None
    owned.release()
    assert differing_keys(CONFIG, CONFIG | {"classifier-min-batches": 8}) == [
        "classifier-min-batches"  # synthetic reads it
    ]


def test_a_file_another_live_run_owns_is_not_resumed(tmp_path: Path) -> None:
    path = unfinished_run(tmp_path, CONFIG)
    other = OwnedFile.claim(path)
    assert other is not None
    assert resumable_results(tmp_path, NAMES, CONFIG) is None
    other.release()


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])


def empty(path: Path) -> None:
    path.write_bytes(b"")


def foreign(path: Path) -> None:
    with open(path, "wb") as handle:
        np.savez(handle, weights=np.zeros(3))


@pytest.mark.parametrize(
    "damage", [truncate, empty, foreign], ids=["truncated", "empty", "foreign"]
)
def test_a_damaged_checkpoint_is_set_aside_and_the_run_starts_clean(
    tmp_path: Path, damage, caplog
) -> None:
    path = unfinished_run(tmp_path, CONFIG)
    checkpoint = checkpoint_of(path)
    damage(checkpoint.path)
    with caplog.at_level(logging.WARNING, logger="flwr"):
        assert resumable_results(tmp_path, NAMES, CONFIG) is None  # a fresh run, no crash
    assert "is damaged" in caplog.text
    assert not checkpoint.exists()
    assert checkpoint.path.with_name(checkpoint.path.name + ".damaged").exists()
    assert resumable_results(tmp_path, NAMES, CONFIG) is None  # the retry too
    assert path.exists()  # the unfinished run's results stay


@pytest.mark.parametrize(
    "wrap",
    [
        lambda recorder, checkpoint: MeteredStrategy(FedAvg(), recorder, checkpoint),
        lambda recorder, checkpoint: MessageMeteredStrategy(MessageFedAvg(), recorder, checkpoint),
    ],
    ids=["legacy", "message-api"],
)
def test_a_library_run_with_a_damaged_checkpoint_starts_from_round_one(
    tmp_path: Path, wrap
) -> None:
    checkpoint = Checkpoint(tmp_path / "run.checkpoint.npz")
    checkpoint.path.write_bytes(b"PK\x03\x04 not really a zip")
    metered = wrap(RunRecorder(tmp_path / "run.json", {}), checkpoint)
    assert metered.resume() == 0
    assert checkpoint.path.with_name(checkpoint.path.name + ".damaged").exists()
