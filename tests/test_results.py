"""Results files, summaries and plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flower_synth.app.results_files import load_results
from flower_synth.bench.cli import main
from flower_synth.bench.plotting import plot_runs
from flower_synth.bench.results import format_summary_table, summarize
from flower_synth.exchange.recorder import RunRecorder


def write_run(path: Path, strategy: str, accuracies: list[float]) -> Path:
    recorder = RunRecorder(path, {"strategy": strategy, "partitioner": "iid", "seed": 0})
    recorder.update(0, global_accuracy=0.1)
    for rnd, acc in enumerate(accuracies, start=1):
        recorder.update(
            rnd, global_accuracy=acc, bytes_down=1_000_000, bytes_up=500_000, seconds=rnd
        )
    return path


def test_recorder_keeps_one_record_per_round_and_round_zero_apart(tmp_path: Path) -> None:
    path = write_run(tmp_path / "a.json", "fedavg", [0.5, 0.7])
    data = load_results(path)
    assert data["initial"] == {"global_accuracy": 0.1}
    assert [r["round"] for r in data["rounds"]] == [1, 2]
    assert data["rounds"][0]["personalized_accuracy"] is None
    assert not list(tmp_path.glob("*.tmp"))


def test_summary_values(tmp_path: Path) -> None:
    summary = summarize(load_results(write_run(tmp_path / "a.json", "fedavg", [0.5, 0.8, 0.7])))
    assert summary["final_global_accuracy"] == 0.7
    assert summary["best_global_accuracy"] == 0.8
    assert summary["mb_per_round"] == pytest.approx(1.5)
    assert summary["total_mb"] == pytest.approx(4.5)
    assert summary["seconds_per_round"] == 2.5  # rounds 2 and 3 (round 1 includes start-up)
    table = format_summary_table([summary])
    assert "| fedavg | 3 | 70.00 | 80.00 | n/a | 1.50 | 4.5 | 2.5 |" in table


def test_load_results_rejects_other_json(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text(json.dumps({"a": 1}))
    with pytest.raises(ValueError, match="not a flower-synth results file"):
        load_results(tmp_path / "x.json")


def test_plot_writes_png(tmp_path: Path) -> None:
    files = [write_run(tmp_path / f"{s}.json", s, [0.5, 0.6]) for s in ("fedavg", "fedprox")]
    png = plot_runs(files, tmp_path / "plots" / "acc.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000


def test_plot_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(write_run(tmp_path / "r.json", "fedavg", [0.4]))]
    assert main(["plot", *files, "-o", str(tmp_path / "p.png")]) == 0
    assert "| fedavg | 1 | 40.00 |" in capsys.readouterr().out
    assert (tmp_path / "p.png").exists()
