"""Plots of results files: accuracy vs round and accuracy vs cumulative megabytes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402

from flower_synth.results import load_results  # noqa: E402


def run_label(config: dict) -> str:
    """Legend label of a run: strategy, partitioner (with alpha) and seed."""
    partition = config.get("partitioner", "?")
    if partition == "dirichlet":
        partition += f"({config.get('dirichlet-alpha')})"
    return f"{config.get('strategy', '?')} {partition} seed {config.get('seed', '?')}"


def plot_runs(
    result_files: Sequence[str | Path], output: str | Path, metric: str = "global_accuracy"
) -> Path:
    """Draw ``metric`` against round and against cumulative MB exchanged (up + down).

    Rounds where the metric is missing are skipped. Returns the PNG path.
    """
    figure, (by_round, by_bytes) = plt.subplots(1, 2, figsize=(11, 4))
    for path in result_files:
        data = load_results(path)
        rounds = [r for r in data["rounds"] if r.get(metric) is not None]
        megabytes, cumulative = [], 0.0
        for record in data["rounds"]:
            cumulative += ((record.get("bytes_down") or 0) + (record.get("bytes_up") or 0)) / 1e6
            if record.get(metric) is not None:
                megabytes.append(cumulative)
        values = [100 * r[metric] for r in rounds]
        label = run_label(data["config"])
        by_round.plot([r["round"] for r in rounds], values, marker=".", label=label)
        by_bytes.plot(megabytes, values, marker=".", label=label)
    by_round.set_xlabel("round")
    by_bytes.set_xlabel("cumulative MB exchanged (up + down)")
    for axis in (by_round, by_bytes):
        axis.set_ylabel(f"{metric.replace('_', ' ')} (%)")
        axis.grid(alpha=0.3)
    by_round.legend(fontsize="small")
    figure.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=120)
    plt.close(figure)
    return output
