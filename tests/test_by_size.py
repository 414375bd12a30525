"""Summaries along the partitions' axis (images per class, labelled share): figures per
partition, per client, over seeds, and every strategy's gain over local-only."""

from __future__ import annotations

from pathlib import Path

from flower_synth.bench.by_size import is_data_scarce, labelled_axis, write_by_size
from flower_synth.bench.experiments import ExperimentConfig, PartitionSpec, expand
from flower_synth.exchange.recorder import RunRecorder


def scarce(tmp_path: Path) -> ExperimentConfig:
    return ExperimentConfig(
        output_dir=str(tmp_path / "scarce"),
        dataset="digits",
        num_clients=2,
        rounds=2,
        partitions=[
            PartitionSpec(name=f"n{n}", partitioner="per-class", examples_per_class=n, seeds=[0, 1])
            for n in (5, 20)
        ],
        strategies={"local-only": {}, "synthetic": {}, "fedavg": {}},
    )


def record(cell, accuracy: float, frechet: float | None) -> None:
    recorder = RunRecorder(cell.directory / "run.json", config=cell.settings.to_run_config())
    values = {
        "clients_global_accuracy": accuracy,
        "clients_global_accuracy_client_0": accuracy - 0.1,
        "clients_global_accuracy_client_1": accuracy + 0.1,
    }
    if cell.strategy == "fedavg":
        values = {"global_accuracy": accuracy}
    if frechet is not None:
        values["generation_quality_by_client"] = {
            "0": {"frechet": frechet, "reference_accuracy": 0.5},
            "1": {"frechet": frechet + 2, "reference_accuracy": 0.7},
        }
        values["generation_frechet"] = frechet + 1
    recorder.update(1, global_accuracy=0.1)
    recorder.update(2, **values)
    recorder.finish()


def test_summary_gives_mean_std_over_seeds_per_size_and_client(tmp_path: Path) -> None:
    config = scarce(tmp_path)
    assert is_data_scarce(config)
    for cell in expand(config):
        size = 0.1 if cell.partition == "n5" else 0.3
        frechet = 10.0 * (cell.seed + 1) if cell.strategy == "synthetic" else None
        record(
            cell, size + 0.2 * cell.seed + (0.05 if cell.strategy == "synthetic" else 0), frechet
        )
    report = write_by_size(config, expand(config)).read_text()
    # n5: local-only seeds 0.1 and 0.3 -> 20.00 ± 14.14; synthetic +5
    assert "| n5 | 20.00 ± 14.14 (2) | 25.00 ± 14.14 (2) | 20.00 ± 14.14 (2) |" in report
    assert "| n20 | 40.00 ± 14.14 (2) | 45.00 ± 14.14 (2) | 40.00 ± 14.14 (2) |" in report
    assert "| n5 | local-only | 10.00 ± 14.14 | 30.00 ± 14.14 |" in report
    assert "| n5 | 16.00 ± 7.07 (2) |" in report  # generation_frechet: 11 and 21
    assert "| n5 | synthetic | 15.00 ± 7.07 | 17.00 ± 7.07 |" in report
    # paired by seed, both clients +5 points on both seeds
    assert "| n5 | synthetic | 5.00 ± 0.00 | 5.00 ± 0.00 | 2 |" in report
    assert (tmp_path / "scarce" / "by-size.png").stat().st_size > 1000


def test_unfinished_runs_are_left_out_and_counted(tmp_path: Path) -> None:
    config = scarce(tmp_path)
    cells = [c for c in expand(config) if not (c.strategy == "fedavg" and c.seed == 1)]
    for cell in cells:
        record(cell, 0.5, None)
    report = write_by_size(config, expand(config)).read_text()
    assert "| n5 | 50.00 ± 0.00 (2) | 50.00 ± 0.00 (2) | 50.00 (1) |" in report
    assert "## Generators" not in report


def test_partly_labelled_experiments_are_summarised_against_the_labelled_share(
    tmp_path: Path,
) -> None:
    config = scarce(tmp_path)
    assert labelled_axis(config) is None  # no labelled-fraction of their own
    for partition, fraction in zip(config.partitions, ("0.01", "0.1"), strict=True):
        partition.partitioner, partition.run_config = "iid", {"labelled-fraction": fraction}
    axis = labelled_axis(config)
    assert axis is not None and axis.values == {"n5": 1.0, "n20": 10.0}
    for cell in expand(config):
        if cell.strategy == "synthetic" and cell.seed == 1:  # client 0 loses on seed 1
            recorder = RunRecorder(
                cell.directory / "run.json", config=cell.settings.to_run_config()
            )
            recorder.update(1, global_accuracy=0.1)
            recorder.update(
                2, clients_global_accuracy_client_0=0.1, clients_global_accuracy_client_1=0.6
            )
            recorder.finish()
        else:
            record(cell, 0.5 if cell.strategy == "synthetic" else 0.3, None)
    report = write_by_size(config, expand(config), axis).read_text()
    assert report.startswith(f"# {config.name}: against labelled share")
    # seed 0: both clients +20; seed 1: client 0 -10, client 1 +20 -> mean 5, smallest -10
    assert "| n5 | synthetic | 12.50 ± 10.61 | 5.00 ± 21.21 | 2 |" in report
    assert (tmp_path / "scarce" / "by-labels.png").stat().st_size > 1000


def test_clients_of_two_modalities_are_summarised_apart(tmp_path: Path) -> None:
    config = scarce(tmp_path)
    config.run_config = {"modality": "clean,composited"}
    for cell in expand(config):
        record(cell, 0.5 if cell.strategy == "synthetic" else 0.3, None)
    report = write_by_size(config, expand(config)).read_text()
    section = report.split("## By modality")[1]
    # client 0 (clean) scores accuracy - 0.1, client 1 (composited) accuracy + 0.1
    clean, composited = section.split("Clients on composited images")
    assert "| n5 | 20.00 ± 0.00 (2) | 40.00 ± 0.00 (2) | - |" in clean
    assert "| n5 | 40.00 ± 0.00 (2) | 60.00 ± 0.00 (2) | - |" in composited
    assert "| n5 | synthetic | 20.00 ± 0.00 | 20.00 ± 0.00 | 2 |" in composited
    assert "## By modality" not in write_by_size(scarce(tmp_path / "one"), []).read_text()
