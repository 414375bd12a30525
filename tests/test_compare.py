"""The sweep runner: resumability, failures, and results that belong to a cell."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flower_synth.bench.compare import finished_results, run_sweep
from flower_synth.bench.experiments import Cell, ExperimentConfig, PartitionSpec, expand
from flower_synth.exchange.recorder import RunRecorder


def write_results(cell: Cell, rounds: int, **config_changes) -> Path:
    """A results file as a run of ``cell`` would write it (its full run config), with
    ``rounds`` rounds."""
    recorder = RunRecorder(
        cell.directory / f"{cell.strategy}-run{len(list(cell.directory.glob('*.json')))}.json",
        config=cell.settings.to_run_config() | {"strategy": cell.base} | config_changes,
    )
    for server_round in range(1, rounds + 1):
        recorder.update(server_round, global_accuracy=0.5, bytes_down=10, bytes_up=10, seconds=1.0)
    recorder.finish()  # as the ServerApp does when it returns
    return recorder.path


def experiment(tmp_path: Path) -> ExperimentConfig:
    return ExperimentConfig(
        output_dir=str(tmp_path / "sweep"),
        dataset="digits",
        num_clients=3,
        rounds=2,
        partitions=[PartitionSpec(name="dir", seeds=[0, 1])],
        strategies={"fedavg": {}, "gmm-prototype": {}},
    )


def test_a_resumed_sweep_runs_only_unfinished_cells(tmp_path: Path) -> None:
    cells = expand(experiment(tmp_path))
    ran: list[str] = []

    def fake_run(cell: Cell) -> None:
        ran.append(cell.name)
        write_results(cell, rounds=2)

    # An interrupted run (1 of 2 rounds) and a run with other settings do not count.
    write_results(cells[0], rounds=1)
    write_results(cells[1], rounds=2, **{"learning-rate": 0.5})
    write_results(cells[2], rounds=2)
    outcomes = run_sweep(cells, fake_run, log=lambda message: None)
    assert ran == [cells[0].name, cells[1].name, cells[3].name]
    assert [o.status for o in outcomes] == ["ran", "ran", "done", "ran"]

    ran.clear()
    outcomes = run_sweep(cells, fake_run, log=lambda message: None)
    assert ran == []
    assert {o.status for o in outcomes} == {"done"}
    assert all(finished_results(cell) is not None for cell in cells)


def test_a_failing_cell_is_reported_and_the_sweep_goes_on(tmp_path: Path) -> None:
    cells = expand(experiment(tmp_path))
    messages: list[str] = []

    def flaky_run(cell: Cell) -> None:
        if cell.strategy == "fedavg":
            raise RuntimeError("flwr run exited with 1")
        write_results(cell, rounds=2)

    outcomes = run_sweep(cells, flaky_run, log=messages.append)
    assert [o.status for o in outcomes] == ["failed", "ran", "failed", "ran"]
    assert any("FAILED: flwr run exited with 1" in m for m in messages)
    assert finished_results(cells[0]) is None


@pytest.mark.parametrize("garbage", ["{}", "not json"])
def test_foreign_json_files_are_ignored(tmp_path: Path, garbage: str) -> None:
    cell = expand(experiment(tmp_path))[0]
    cell.directory.mkdir(parents=True)
    (cell.directory / "other.json").write_text(garbage)
    assert finished_results(cell) is None


def test_synthetic_only_settings_do_not_invalidate_other_strategies_runs(tmp_path: Path) -> None:
    exp = experiment(tmp_path)
    exp.strategies = {"fedavg": {}, "synthetic": {}}
    fedavg, synthetic = [c for c in expand(exp) if c.seed == 0]
    for cell in (fedavg, synthetic):  # written when the generator trained 5 epochs a round
        write_results(cell, rounds=2, **{"generator-epochs": 5})
    assert finished_results(fedavg) is not None  # FedAvg never reads it
    assert finished_results(synthetic) is None  # synthetic exchange does: rerun


def test_gmm_only_settings_do_not_invalidate_other_strategies_runs(tmp_path: Path) -> None:
    exp = experiment(tmp_path)
    fedavg, gmm = [c for c in expand(exp) if c.seed == 0]
    for cell in (fedavg, gmm):  # written when fusion-tau was a total distance of 1.0
        write_results(cell, rounds=2, **{"fusion-tau": 1.0})
    assert finished_results(fedavg) is not None  # FedAvg never reads it
    assert finished_results(gmm) is None  # GMM prototypes do: rerun


def test_a_key_a_file_lacks_means_what_runs_did_before_the_key_existed(tmp_path: Path) -> None:
    exp = experiment(tmp_path)
    exp.strategies = {"gmm-prototype": {}, "gmm-prototype@raw": {"feature-norm": False}}
    recipe, raw = [c for c in expand(exp) if c.seed == 0]
    for cell in (recipe, raw):  # written before runs could normalise their features
        path = write_results(cell, rounds=2)
        data = json.loads(path.read_text())
        del data["config"]["feature-norm"]
        path.write_text(json.dumps(data))
    assert finished_results(raw) is not None  # those runs used raw features
    assert finished_results(recipe) is None  # the default now normalises them: rerun


def test_client_evaluation_settings_matter_only_to_strategies_whose_clients_keep_models(
    tmp_path: Path,
) -> None:
    exp = experiment(tmp_path)
    fedavg, gmm = [c for c in expand(exp) if c.seed == 0]
    for cell in (fedavg, gmm):  # written when clients scored the global test set every round
        write_results(cell, rounds=2, **{"client-global-eval-every": 1})
    assert finished_results(fedavg) is not None  # FedAvg's clients keep no model to score
    assert finished_results(gmm) is None  # GMM prototypes' clients do: rerun


def test_synthetic_runs_from_before_bounded_budgets_are_not_taken_for_default_runs(
    tmp_path: Path,
) -> None:
    exp = experiment(tmp_path)
    old = {
        "sample-allocation": "size",
        "download-budget": 3000,
        "download-ratio": 0.0,
        "sample-levels": 256,
        "compression": "none",
        "pool-max-age": 0,
        "server-max-draws": 0,
    }
    exp.strategies = {"synthetic": {}, "synthetic@before": old}
    default, before = [c for c in expand(exp) if c.seed == 0]
    for cell in (default, before):  # written before the keys existed
        path = write_results(cell, rounds=2, **{"sample-allocation": "size"})
        data = json.loads(path.read_text())
        for key in ("download-ratio", "sample-levels", "compression", "pool-max-age"):
            del data["config"][key]
        del data["config"]["server-max-draws"]
        path.write_text(json.dumps(data))
    assert finished_results(before) is not None  # what those runs did, said explicitly
    assert finished_results(default) is None  # the defaults now bound the budgets: rerun
