"""The scale summary: cost per round against the number of clients, beside FedAvg."""

from __future__ import annotations

from pathlib import Path

from flower_synth.bench.by_clients import is_scale_experiment, write_by_clients
from flower_synth.bench.experiments import ExperimentConfig, PartitionSpec, expand
from flower_synth.bench.results import add_measurements
from flower_synth.exchange.recorder import RunRecorder


def scale(tmp_path: Path) -> ExperimentConfig:
    return ExperimentConfig(
        output_dir=str(tmp_path / "scale"),
        dataset="digits",
        num_clients=10,
        rounds=3,
        partitions=[
            PartitionSpec(name=f"clients-{n}", num_clients=n, seeds=[0]) for n in (10, 100)
        ],
        strategies={"fedavg": {}, "synthetic": {}},
    )


def test_cost_per_round_is_summarised_against_the_number_of_clients(tmp_path: Path) -> None:
    config = scale(tmp_path)
    assert is_scale_experiment(config)
    assert {c.federation_config["num-supernodes"] for c in expand(config)} == {10, 100}
    for cell in expand(config):
        seconds = 2.0 if cell.strategy == "fedavg" else 3.0  # synthetic: 1.5x
        megabytes = 4.0 if cell.strategy == "fedavg" else 5.0
        recorder = RunRecorder(cell.directory / "run.json", config=cell.settings.to_run_config())
        for server_round, extra in ((1, 10.0), (2, 0.0), (3, 1.0)):  # round 1 is left out
            recorder.update(
                server_round,
                seconds=seconds + extra,
                bytes_down=megabytes * 1e6 / 2,
                bytes_up=megabytes * 1e6 / 2,
                global_accuracy=0.5,
                **({"pool_age_mean": 2.5, "pool_age_max": 7} if cell.strategy != "fedavg" else {}),
            )
        recorder.finish()
        add_measurements(recorder.path, machine="m", peak_rss_mb=1000.0)
    report = write_by_clients(config, expand(config)).read_text()
    # median of rounds 2-3: 2.5 vs 3.5 -> 1.40x; mean the same here; bytes 5 / 4 = 1.25x
    assert (
        "| 100 | synthetic | 3.5 | 1.40x | 3.5 | 1.40x | 5.00 | 1.25x | 1000 | 50.00 | 2.5 / 7 |"
        in report
    )
    assert "| 10 | fedavg | 2.5 | 1.00x |" in report
    assert (tmp_path / "scale" / "by-clients.png").exists()
    assert not is_scale_experiment(ExperimentConfig(partitions=[PartitionSpec(name="a")]))
