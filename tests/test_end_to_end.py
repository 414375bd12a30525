"""End-to-end runs through Flower: `flwr run` in the simulation engine and against a
real SuperLink with two SuperNodes on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import PROJECT_ROOT

from flower_synth.federation import LocalFederation
from flower_synth.processes import family
from flower_synth.results import load_results

DIGITS_MLP_PARAMETERS = 17_226
DIGITS_RUN = {
    "dataset": "digits",
    "partitioner": "dirichlet",
    "dirichlet-alpha": 0.5,
    "local-epochs": 5,
    "learning-rate": 0.05,
}

pytestmark = pytest.mark.slow


def single_results_file(folder: Path) -> dict:
    files = list(folder.glob("*.json"))
    assert len(files) == 1, files
    return load_results(files[0])


def assert_all_stopped(pids: set[int]) -> None:
    assert pids, "the federation should have started processes"
    assert not set().union(*(family(pid) for pid in pids))


@pytest.mark.parametrize("strategy", ["fedavg", "fedprox"])
def test_simulation_learns_digits_and_counts_bytes(tmp_path: Path, strategy: str) -> None:
    clients, rounds = 3, 3
    with LocalFederation(simulation=True, workdir=tmp_path / "federation") as federation:
        outcome = federation.run(
            PROJECT_ROOT,
            DIGITS_RUN
            | {
                "strategy": strategy,
                "num-server-rounds": rounds,
                "output-dir": str(tmp_path / "results"),
            },
            {"num-supernodes": clients},
            timeout=600,
        )
        started = federation.processes.pids()
    assert outcome.returncode == 0, outcome.stdout[-4000:]
    assert_all_stopped(started)

    data = single_results_file(tmp_path / "results")
    assert data["config"]["strategy"] == strategy
    assert data["config"]["model_parameters"] == DIGITS_MLP_PARAMETERS
    assert [r["round"] for r in data["rounds"]] == [1, 2, 3]
    for record in data["rounds"]:
        assert record["bytes_down"] == record["bytes_up"] == clients * DIGITS_MLP_PARAMETERS * 4
        assert record["fit_failures"] == 0
    final = data["rounds"][-1]
    assert final["global_accuracy"] > 0.6  # chance is 0.1
    assert final["personalized_accuracy"] > 0.6
    assert data["initial"]["global_accuracy"] < 0.3


def test_deployment_with_superlink_and_two_supernodes(tmp_path: Path) -> None:
    nodes, rounds = 2, 2
    with LocalFederation(simulation=False, workdir=tmp_path / "federation") as federation:
        for partition_id in range(nodes):
            federation.start_supernode(partition_id, nodes)
        outcome = federation.run(
            PROJECT_ROOT,
            DIGITS_RUN
            | {
                "num-server-rounds": rounds,
                "min-available-clients": nodes,
                "output-dir": str(tmp_path / "results"),
            },
            timeout=600,
        )
        started = federation.processes.pids()
    assert outcome.returncode == 0, outcome.stdout[-4000:]
    assert len(started) >= 1 + nodes
    assert_all_stopped(started)

    data = single_results_file(tmp_path / "results")
    assert [r["round"] for r in data["rounds"]] == [1, 2]
    for record in data["rounds"]:
        assert record["clients_sampled"] == nodes
        assert record["bytes_down"] == record["bytes_up"] == nodes * DIGITS_MLP_PARAMETERS * 4
    assert data["rounds"][-1]["global_accuracy"] > 0.5
