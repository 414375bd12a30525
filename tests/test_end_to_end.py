"""End-to-end runs through Flower: `flwr run` in the simulation engine and against a
real SuperLink with two SuperNodes on loopback."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT

from flower_synth.app.results_files import load_results
from flower_synth.bench.cli import main
from flower_synth.bench.equilibrium_check import run_equilibrium_experiment
from flower_synth.bench.federation import LocalFederation
from flower_synth.bench.processes import family, identities, still_running

DIGITS_MLP_PARAMETERS = 17_226
DIGITS_RUN = {
    "dataset": "digits",
    "partitioner": "dirichlet",
    "dirichlet-alpha": 0.5,
    "local-epochs": 5,
    "learning-rate": 0.05,
}

SYNTHETIC_RUN = {"strategy": "synthetic", "generator": "cvae", "generator-epochs": 20}
# Samples as they were before the defaults sized and deflated them: every client asked
# for its share of samples-per-client, every other pool received, arrays as they are,
# so that bytes can be counted exactly.
UNCOMPRESSED_POOLS = {
    "sample-allocation": "size",
    "download-ratio": 0.0,
    "download-budget": 0,
    "compression": "none",
}
# A digits sample on the wire: uint8 8x8 image, int32 label, float16 soft label over 10 classes.
SAMPLE_BYTES = 64 + 4 + 2 * 10

pytestmark = pytest.mark.slow


def single_results_file(folder: Path) -> dict:
    files = list(folder.glob("*.json"))
    assert len(files) == 1, files
    return load_results(files[0])


def assert_all_stopped(started: dict[int, int]) -> None:
    """None of the processes ``started`` (pid -> start time) still runs; a pid the
    machine has since given to another process does not count."""
    assert started, "the federation should have started processes"
    assert not still_running(started)


def simulate(tmp_path: Path, run_config: dict, clients: int) -> dict:
    """One `flwr run` in the simulation engine on digits; its results file's content.
    Asserts that the run succeeded and that every process it started is gone."""
    with LocalFederation(simulation=True, workdir=tmp_path / "federation") as federation:
        outcome = federation.run(
            PROJECT_ROOT,
            DIGITS_RUN | run_config | {"output-dir": str(tmp_path / "results")},
            {"num-supernodes": clients},
        )
        started = identities(federation.processes.pids())
    assert outcome.succeeded, outcome.describe()
    assert_all_stopped(started)
    return single_results_file(tmp_path / "results")


def test_simulation_learns_digits_and_counts_bytes(tmp_path: Path) -> None:
    """FedAvg (FedProx runs in the comparison test below)."""
    clients, rounds = 3, 3
    data = simulate(tmp_path, {"strategy": "fedavg", "num-server-rounds": rounds}, clients)
    assert data["config"]["strategy"] == "fedavg"
    assert data["config"]["model_parameters"] == DIGITS_MLP_PARAMETERS
    assert [r["round"] for r in data["rounds"]] == [1, 2, 3]
    for record in data["rounds"]:
        assert record["bytes_down"] == record["bytes_up"] == clients * DIGITS_MLP_PARAMETERS * 4
        assert record["fit_failures"] == 0
    final = data["rounds"][-1]
    assert final["global_accuracy"] > 0.6  # chance is 0.1
    assert final["personalized_accuracy"] > 0.6
    assert data["initial"]["global_accuracy"] < 0.3


@pytest.mark.parametrize(
    ("generators", "classifiers"),
    [("cvae", "model"), ("cvae,gaussian,gmm", "model,bayes,model")],
    ids=["cvae", "mixed"],
)
def test_synthetic_exchange_learns_digits(
    tmp_path: Path, generators: str, classifiers: str
) -> None:
    clients, rounds, samples = 3, 3, 500
    run_config = (
        SYNTHETIC_RUN
        | UNCOMPRESSED_POOLS
        | {
            "generator": generators,
            "classifier": classifiers,
            "samples-per-client": samples,
            "num-server-rounds": rounds,
        }
    )
    data = simulate(tmp_path, run_config, clients)
    sample_bytes = samples * SAMPLE_BYTES
    for record in data["rounds"]:
        assert record["fit_failures"] == 0
        assert record["bytes_up"] == clients * sample_bytes
        expected_down = 0 if record["round"] == 1 else clients * (clients - 1) * sample_bytes
        assert record["bytes_down"] == expected_down
        assert record["client_rounds_min"] == record["round"]
        assert record["label_agreement"] > 0.5  # chance is 0.1
    final = data["rounds"][-1]
    assert set(final["label_agreement_by_client"]) == {"0", "1", "2"}
    # Server classifier trained only on the pooled synthetic samples; chance is 0.1.
    assert final["global_accuracy"] > 0.6
    # Every client learns: the weakest one's own model, on its local and the global test set.
    assert final["personalized_accuracy_min"] > 0.6
    assert final["clients_global_accuracy_min"] > 0.4


@pytest.mark.parametrize("strategy", ["gmm-prototype", "fedproto"])
def test_prototype_strategies_learn_digits_without_sending_weights(
    tmp_path: Path, strategy: str
) -> None:
    clients, rounds = 3, 3
    data = simulate(tmp_path, {"strategy": strategy, "num-server-rounds": rounds}, clients)
    weights_bytes = clients * DIGITS_MLP_PARAMETERS * 4
    dim, classes = 64, 10  # DigitsMLP features; float16 on the wire, int32 labels and counts
    for previous, record in zip([None, *data["rounds"]], data["rounds"], strict=False):
        assert record["fit_failures"] == 0
        assert record["outlier_summaries"] == 0  # honest clients' scales agree
        assert record["client_rounds_min"] == record["round"]
        assert 0 < record["bytes_up"] < weights_bytes / 4
        if previous is None:
            assert record["bytes_down"] == 0  # nothing to broadcast before round 1
        elif strategy == "gmm-prototype":  # [labels, weights, means, variances, class_counts]
            component = 4 + 2 + 2 * dim + 2 * dim
            summary = previous["global_components"] * component + 4 * classes
            assert record["bytes_down"] == clients * summary
        else:  # [labels, means, counts]
            assert record["bytes_down"] == clients * previous["global_classes"] * (4 + 2 * dim + 4)
    final = data["rounds"][-1]
    # Each client's own model on its local split; chance is 0.1.
    assert final["personalized_accuracy"] > 0.8
    assert final["personalized_accuracy_min"] > 0.5
    # No global model: global accuracy is the clients' mean on the global test set.
    assert final["global_accuracy"] == final["clients_global_accuracy"]
    assert final["clients_global_accuracy_min"] <= final["global_accuracy"]


def test_synthetic_exchange_reaches_the_nash_equilibrium(tmp_path: Path) -> None:
    """Gaussian clients on different digits partitions: the pools' mean parameters
    converge to W @ M within 1e-2, contracting at least as fast as max(1 - a_ii)."""
    table = run_equilibrium_experiment(
        PROJECT_ROOT, tmp_path, num_clients=3, rounds=8, self_trust=0.5, samples_per_client=50_000
    )
    assert table[0]["local_vs_equilibrium"] > 0.05  # the equilibrium differs from local data
    assert table[-1]["max_error"] < 1e-2
    noise_floor = 0.01
    for previous, current in zip(table, table[1:], strict=False):
        if previous["max_error"] > 3 * noise_floor:
            assert current["ratio"] <= current["bound"] + 0.05


def test_comparison_sweep_runs_reports_and_resumes(tmp_path: Path, capsys) -> None:
    """`flower-synth compare` on a tiny digits grid: FedProx (a Flower run; the other
    strategies run in the tests above) and the centralized reference, 2 rounds; a second
    invocation runs nothing."""
    experiment = tmp_path / "tiny.yaml"
    experiment.write_text(
        f"""
name: tiny
output_dir: {tmp_path / "sweep"}
dataset: digits
num_clients: 3
rounds: 2
local_epochs: 5
target_accuracy: 0.5
partitions: [{{name: dir, partitioner: dirichlet, alpha: 0.5, seeds: [0]}}]
strategies: {{fedprox: {{proximal-mu: 0.01}}, centralized: {{}}}}
run_config: {{learning-rate: 0.05}}
"""
    )
    assert main(["compare", str(experiment), "--app-dir", str(PROJECT_ROOT)]) == 0
    first = capsys.readouterr().out
    assert first.count(": running") == 2 and "skipped" not in first
    files = sorted((tmp_path / "sweep").rglob("*.json"))
    assert len(files) == 2
    for path in files:
        data = load_results(path)
        assert len(data["rounds"]) == 2
        assert data["measurements"]["peak_rss_mb"] > 50  # at least one Python process with torch
    report = (tmp_path / "sweep" / "report.md").read_text()
    for strategy in ("fedprox", "centralized"):
        assert f"| {strategy} | 1/1 |" in report
    assert "None: every planned run finished." in report

    assert main(["compare", str(experiment), "--app-dir", str(PROJECT_ROOT)]) == 0
    second = capsys.readouterr().out
    assert second.count("results exist, skipped") == 2 and ": running" not in second
    assert sorted((tmp_path / "sweep").rglob("*.json")) == files


def test_comparison_stops_its_federation_when_terminated_and_resumes_the_cell(
    tmp_path: Path, capsys
) -> None:
    """`kill PID` (SIGTERM) on a running `flower-synth compare` stops the run's `flwr run`,
    SuperLink, SuperExec, simulation and Ray processes by pid; the command exits 130.
    Run again, it continues the partial cell from its checkpoint."""
    experiment = tmp_path / "long.yaml"
    rounds = 40  # digits rounds take under a second: enough for SIGTERM to land mid-run
    experiment.write_text(
        f"""
name: long
output_dir: {tmp_path / "sweep"}
dataset: digits
num_clients: 2
rounds: {rounds}
local_epochs: 1
partitions: [{{name: dir, partitioner: dirichlet, alpha: 0.5, seeds: [0]}}]
strategies: {{fedavg: {{}}}}
"""
    )
    command = [sys.executable, "-m", "flower_synth.bench.cli", "compare", str(experiment)]
    command += ["--app-dir", str(PROJECT_ROOT)]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    started: dict[int, int] = {}
    try:
        assert process.stdout is not None
        output = ""
        for line in process.stdout:  # until the federation has finished a round
            output += line
            if "round 1:" in line:
                break
        assert "round 1:" in output, output[-4000:]
        started = identities(family(process.pid))
        assert len(started) > 3, "compare, flwr run, the SuperLink and its children"
        process.send_signal(signal.SIGTERM)
        output += process.communicate(timeout=600)[0]  # generous: the machine may be busy
        assert process.returncode == 130, output[-4000:]
        assert "interrupted" in output
        assert_all_stopped(started)
    finally:
        for pid in still_running(started) | family(process.pid):  # if an assertion failed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(timeout=600)

    (partial,) = (tmp_path / "sweep").rglob("*.json")
    stopped_after = len(load_results(partial)["rounds"])
    assert stopped_after < rounds and not load_results(partial)["finished"]
    assert main(["compare", str(experiment), "--app-dir", str(PROJECT_ROOT)]) == 0
    assert ": running" in capsys.readouterr().out
    (resumed,) = (tmp_path / "sweep").rglob("*.json")  # the same file, continued
    data = load_results(resumed)
    assert resumed == partial and data["finished"]
    assert [r["round"] for r in data["rounds"]] == list(range(1, rounds + 1))
    assert len(data["resumed"]) == 1 and 1 <= data["resumed"][0] < rounds


def test_partly_labelled_clients_learn_more_through_the_exchange_than_alone(
    tmp_path: Path,
) -> None:
    """Two digits clients that know 5 % of their labels: the synthetic exchange's
    clients beat the same clients trained on their own labelled images."""
    clients, rounds = 2, 4
    partly = {"labelled-fraction": 0.05, "num-server-rounds": rounds, "client-global-eval-every": 1}
    accuracy = {}
    for strategy in ("local-only", "synthetic"):
        data = simulate(tmp_path / strategy, partly | {"strategy": strategy}, clients)
        assert data["config"]["labelled-fraction"] == "0.05"
        final = data["rounds"][-1]
        assert final["fit_failures"] == 0
        accuracy[strategy] = final["clients_global_accuracy"]
    assert accuracy["synthetic"] > accuracy["local-only"] + 0.02, accuracy


def test_learned_trust_keeps_a_flipped_label_client_from_steering_the_federation(
    tmp_path: Path,
) -> None:
    """One digits client of three sends its samples with every label shifted by one
    class: with uniform trust the server classifier learns the wrong labels; with
    learned trust that client's weight is 0 from round 1 on and the server classifier
    learns from the honest two."""
    rogue = {"label-shift": "0,0,1", "num-server-rounds": 3, "samples-per-client": 500}
    accuracy = {}
    for trust in ("uniform", "learned"):
        run_config = SYNTHETIC_RUN | UNCOMPRESSED_POOLS | rogue | {"trust": trust}
        data = simulate(tmp_path / trust, run_config, 3)
        assert all(record["fit_failures"] == 0 for record in data["rounds"])
        accuracy[trust] = data["rounds"][-1]["global_accuracy"]
    for record in data["rounds"]:
        assert record["learned_trust_by_client"]["2"] == 0.0
        assert (
            record["agreement_by_client"]["2"]
            < 0.3
            < min(record["agreement_by_client"][honest] for honest in ("0", "1"))
        )
    assert data["rounds"][-1]["learned_trust_by_client"]["0"] == 1.0
    # measured: uniform 0.37, learned 0.68 (chance is 0.1)
    assert accuracy["learned"] > 0.5 and accuracy["learned"] > accuracy["uniform"] + 0.2, accuracy
