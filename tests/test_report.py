"""The report generator on hand-made results files with known figures."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from flower_synth.bench.cli import main
from flower_synth.bench.experiments import ExperimentConfig, PartitionSpec, expand
from flower_synth.bench.report import mean_std, megabytes_to_target, speed_ratio, write_report
from flower_synth.bench.results import add_measurements
from flower_synth.exchange.recorder import RunRecorder


def fixture_sweep(tmp_path: Path, rounds: int, seeds: list[int]) -> ExperimentConfig:
    """FedAvg and GMM prototypes on one digits partition, target accuracy 80 %."""
    return ExperimentConfig(
        name="fixture sweep",
        output_dir=str(tmp_path / "sweep"),
        dataset="digits",
        num_clients=3,
        rounds=rounds,
        target_accuracy=0.8,
        partitions=[PartitionSpec(name="dir", seeds=seeds)],
        strategies={"fedavg": {}, "gmm-prototype": {}},
    )


def write_run(
    cell, accuracies, personalized, bytes_per_round, seconds, peak_mb=None, machine="m1", **extra
) -> None:
    recorder = RunRecorder(
        cell.directory / "run.json",
        config=cell.settings.to_run_config() | {"strategy": cell.strategy},
    )
    for server_round, (acc, pers, secs) in enumerate(
        zip(accuracies, personalized, seconds, strict=True), 1
    ):
        recorder.update(
            server_round,
            global_accuracy=acc,
            personalized_accuracy=pers,
            bytes_down=bytes_per_round // 2,
            bytes_up=bytes_per_round // 2,
            seconds=secs,
            **{key: values[server_round - 1] for key, values in extra.items()},
        )
    recorder.finish()
    measurements = {"machine": machine} | ({} if peak_mb is None else {"peak_rss_mb": peak_mb})
    add_measurements(recorder.path, **measurements)


def test_mean_std_and_megabytes_to_target() -> None:
    assert mean_std([0.80, 0.84], 100) == "82.00 ± 2.83"
    assert mean_std([3.0]) == "3.00"
    assert mean_std([]) == "n/a"
    data = {
        "rounds": [
            {"global_accuracy": 0.5, "bytes_down": 1_000_000, "bytes_up": 1_000_000},
            {"global_accuracy": 0.82, "bytes_down": 1_000_000, "bytes_up": 1_000_000},
        ]
    }
    assert megabytes_to_target(data, 0.8) == 4.0
    assert megabytes_to_target(data, 0.9) is None


def test_report_tables_plots_and_unfinished_runs(tmp_path: Path) -> None:
    config = fixture_sweep(tmp_path, rounds=3, seeds=[0, 1])
    fedavg0, gmm0, fedavg1, gmm1 = expand(config)
    write_run(
        fedavg0, [0.5, 0.7, 0.80], [0.6, 0.7, 0.8], 2_000_000, [30.0, 10.0, 12.0], peak_mb=900
    )
    write_run(
        fedavg1, [0.5, 0.85, 0.84], [0.6, 0.7, 0.9], 2_000_000, [40.0, 11.0, 13.0], peak_mb=1000
    )
    write_run(
        gmm0,
        [0.3, 0.35, 0.4],
        [0.9, 0.95, 0.97],
        200_000,
        [15.0, 16.0, 17.0],
        clients_global_accuracy=[0.3, 0.35, 0.4],
        label_agreement=[0.5, 0.7, None],  # the last round that has a figure counts
        clients_global_accuracy_uncorrected=[0.2, 0.3, 0.35],
    )
    # gmm1 never finished: it must be listed, not filled in.
    report = write_report(config, [fedavg0, gmm0, fedavg1, gmm1]).read_text()

    # fedavg: final 80 / 84 %, best 80 / 85 %, personalized 80 / 90 %, 2 MB a round,
    # 6 MB each; 80 % (and fedavg's final mean 82 % - 5 = 77 %) first reached after 3
    # rounds (6 MB) and 2 rounds (4 MB); median of rounds 2-3: 11 and 12 s.
    assert (
        "| fedavg | 2/2 | 82.00 ± 2.83 | 82.50 ± 3.54 | 85.00 ± 7.07 | n/a | 2.00 ± 0.00 "
        "| 6.00 ± 0.00 | 5.0 ± 1.4 (2/2) | 5.0 ± 1.4 (2/2) | 11.5 ± 0.7 | 1.00x | 1000 |"
    ) in report
    assert (
        "| gmm-prototype | 1/2 | 40.00 | 40.00 | 97.00 | 40.00 | 0.20 | 0.60 | not reached "
        "| not reached | 16.5 | 1.43x | n/a |"
    ) in report
    assert "| gmm-prototype | 70.00 | 40.00 | 35.00 |" in report  # the samples table
    assert "| MB to fedavg - 5 |" in report
    assert "## Unfinished runs\n\n- dir/gmm-prototype/seed1" in report
    assert "MB to 80 %" in report
    assert (tmp_path / "sweep" / "dir.png").stat().st_size > 10_000


def test_filtered_compare_reports_the_whole_experiment(tmp_path: Path) -> None:
    """``--strategies``/``--partitions`` choose what runs; report.md still covers every
    cell of the experiment, so a filtered run never replaces a full report."""
    config = fixture_sweep(tmp_path, rounds=2, seeds=[0])
    experiment = tmp_path / "experiment.yaml"
    OmegaConf.save(OmegaConf.structured(config), experiment)
    fedavg, gmm = expand(config)
    write_run(fedavg, [0.5, 0.8], [0.6, 0.8], 2_000_000, [30.0, 10.0])
    write_run(gmm, [0.3, 0.4], [0.9, 0.95], 200_000, [15.0, 16.0])

    assert main(["compare", str(experiment), "--strategies", "gmm-prototype", "--report-only"]) == 0

    report = (tmp_path / "sweep" / "report.md").read_text()
    assert "| fedavg | 1/1 | 80.00 | 80.00 | 80.00 | n/a | 2.00 | 4.00 |" in report
    assert (
        "| gmm-prototype | 1/1 | 40.00 | 40.00 | 95.00 | n/a | 0.20 | 0.40 | not reached "
        "| not reached | 16.0 | 1.60x |"
    ) in report


def test_seconds_per_round_share_a_ratio_only_within_one_machine() -> None:
    baseline = [(10.0, "a"), (12.0, "a"), (20.0, "b"), (99.0, None)]
    # 22 s on a (FedAvg 11 s there) and 30 s on b (FedAvg 20 s): 2.0x and 1.5x
    assert speed_ratio([(22.0, "a"), (30.0, "b")], baseline) == "1.75x"
    assert speed_ratio([(22.0, "a"), (50.0, "c")], baseline) == "2.00x"  # c has no FedAvg
    assert speed_ratio([(50.0, "c"), (40.0, None)], baseline) == "n/a"
