"""Plots of results files: accuracy vs round and accuracy vs cumulative megabytes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402

from flower_synth.app.results_files import load_results  # noqa: E402

Curve = tuple[np.ndarray, np.ndarray, np.ndarray]  # rounds, cumulative MB, metric in %


def run_label(config: dict) -> str:
    """Legend label of a run: strategy, partitioner (with alpha) and seed."""
    partition = config.get("partitioner", "?")
    if partition == "dirichlet":
        partition += f"({config.get('dirichlet-alpha')})"
    return f"{config.get('strategy', '?')} {partition} seed {config.get('seed', '?')}"


def curve(data: dict[str, Any], metric: str) -> Curve:
    """Rounds where ``metric`` was recorded, the cumulative MB exchanged (up + down)
    by the end of each, and the metric in percent."""
    rounds, megabytes, values, cumulative = [], [], [], 0.0
    for record in data["rounds"]:
        cumulative += ((record.get("bytes_down") or 0) + (record.get("bytes_up") or 0)) / 1e6
        if record.get(metric) is not None:
            rounds.append(record["round"])
            megabytes.append(cumulative)
            values.append(100 * record[metric])
    return np.array(rounds), np.array(megabytes), np.array(values)


def mean_curve(runs: Sequence[dict[str, Any]], metric: str) -> Curve:
    """:func:`curve` averaged over runs (seeds), on the rounds all of them recorded."""
    curves = [curve(data, metric) for data in runs]
    length = min(len(c[0]) for c in curves)
    return tuple(np.mean([c[i][:length] for c in curves], axis=0) for i in range(3))  # type: ignore[return-value]


def _draw(axes: Sequence[Any], labelled: Sequence[tuple[str, Curve]], metric: str) -> None:
    by_round, by_bytes = axes
    for label, (rounds, megabytes, values) in labelled:
        by_round.plot(rounds, values, marker=".", label=label)
        by_bytes.plot(megabytes, values, marker=".", label=label)
    by_round.set_xlabel("round")
    by_bytes.set_xlabel("cumulative MB exchanged (up + down)")
    by_bytes.set_xscale("symlog", linthresh=1.0)
    for axis in axes:
        axis.set_ylabel(f"{metric.replace('_', ' ')} (%)")
        axis.grid(alpha=0.3)
    by_round.legend(fontsize="small")


def save_figure(figure: Any, output: str | Path) -> Path:
    """Lay out, write (creating the folder) and close ``figure``; returns the path."""
    figure.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=110)
    plt.close(figure)
    return output


def plot_runs(
    result_files: Sequence[str | Path], output: str | Path, metric: str = "global_accuracy"
) -> Path:
    """Draw ``metric`` against round and against cumulative MB exchanged, one curve per
    results file. Rounds where the metric is missing are skipped. Returns the PNG path."""
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    runs = [load_results(path) for path in result_files]
    _draw(axes, [(run_label(data["config"]), curve(data, metric)) for data in runs], metric)
    return save_figure(figure, output)


def plot_strategies(
    runs: dict[str, Sequence[dict[str, Any]]],
    output: str | Path,
    metrics: Sequence[str] = ("global_accuracy", "personalized_accuracy"),
) -> Path:
    """One row per metric (against round and against cumulative MB), one curve per
    strategy: the mean over its runs (seeds). Returns the PNG path."""
    figure, rows = plt.subplots(len(metrics), 2, figsize=(11, 4 * len(metrics)), squeeze=False)
    for axes, metric in zip(rows, metrics, strict=True):
        labelled = [
            (strategy, mean_curve(group, metric))
            for strategy, group in runs.items()
            if all(len(curve(data, metric)[0]) for data in group)
        ]
        _draw(axes, labelled, metric)
    return save_figure(figure, output)
