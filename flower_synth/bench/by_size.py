"""The data-scarce summary (experiments whose partitions are all ``per-class``): the
clients' accuracy on the test set and their generators' quality against the number of
images per class, mean ± std over seeds, per client, and a plot of accuracy against n."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402

from flower_synth.bench.compare import finished_results  # noqa: E402
from flower_synth.bench.experiments import Cell, ExperimentConfig  # noqa: E402
from flower_synth.bench.plotting import save_figure  # noqa: E402
from flower_synth.bench.report import mean_std  # noqa: E402
from flower_synth.results import load_results  # noqa: E402

Runs = dict[tuple[str, str], list[dict[str, Any]]]  # (partition, strategy) -> results

# Each client's classifier on the global test set: its own model where it keeps one,
# else the global model (FedAvg, centralized), which every client then shares.
ACCURACY_KEYS = ("clients_global_accuracy", "global_accuracy")
CLIENT_ACCURACY_PREFIX = "clients_global_accuracy_client_"


def last_value(data: dict[str, Any], keys: Sequence[str]) -> float | None:
    """The value of the first of ``keys`` in the last round that records any of them."""
    for record in reversed(data["rounds"]):
        for key in keys:
            if record.get(key) is not None:
                return float(record[key])
    return None


def client_accuracies(data: dict[str, Any]) -> dict[int, float]:
    """Each client's own model on the global test set in the last round that records
    them, by partition id (empty where the run records none)."""
    for record in reversed(data["rounds"]):
        found = {
            int(key.removeprefix(CLIENT_ACCURACY_PREFIX)): float(value)
            for key, value in record.items()
            if key.startswith(CLIENT_ACCURACY_PREFIX)
        }
        if found:
            return found
    return {}


def generator_scores(data: dict[str, Any], figure: str) -> dict[int, float]:
    """``figure`` of every client's samples in the last round scored, by partition id."""
    for record in reversed(data["rounds"]):
        scores = record.get("generation_quality_by_client")
        if scores:
            return {int(pid): float(score[figure]) for pid, score in scores.items()}
    return {}


def is_data_scarce(config: ExperimentConfig) -> bool:
    """Whether every partition of ``config`` is ``per-class`` (n images of every class)."""
    return bool(config.partitions) and all(p.partitioner == "per-class" for p in config.partitions)


def finished_runs(cells: Sequence[Cell]) -> Runs:
    """Results of the finished cells by (partition, strategy)."""
    runs: Runs = {}
    for cell in cells:
        path = finished_results(cell)
        runs.setdefault((cell.partition, cell.strategy), [])
        if path is not None:
            runs[(cell.partition, cell.strategy)].append(load_results(path))
    return runs


def grid_table(
    runs: Runs,
    partitions: Sequence[str],
    strategies: Sequence[str],
    value: Any,
    scale: float = 100.0,
) -> str:
    """Partitions as rows, strategies as columns: ``mean ± std (seeds)`` of
    ``value(run)`` over the finished runs."""
    lines = [
        "| partition | " + " | ".join(strategies) + " |",
        "|---" * (len(strategies) + 1) + "|",
    ]
    for partition in partitions:
        cells = []
        for strategy in strategies:
            found = [value(d) for d in runs.get((partition, strategy), [])]
            values = [v for v in found if v is not None]
            cells.append(f"{mean_std(values, scale)} ({len(values)})" if values else "-")
        lines.append(f"| {partition} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_client_table(
    runs: Runs,
    partitions: Sequence[str],
    strategies: Sequence[str],
    per_client: Any,
    scale: float = 100.0,
) -> str:
    """One row per (partition, strategy): every client's ``mean ± std`` over seeds."""
    clients = sorted({pid for rs in runs.values() for d in rs for pid in per_client(d)})
    lines = [
        "| partition | strategy | " + " | ".join(f"client {pid}" for pid in clients) + " |",
        "|---" * (len(clients) + 2) + "|",
    ]
    for partition in partitions:
        for strategy in strategies:
            found = [per_client(d) for d in runs.get((partition, strategy), [])]
            found = [f for f in found if f]
            if not found:
                continue
            row = [mean_std([f[pid] for f in found if pid in f], scale) for pid in clients]
            lines.append(f"| {partition} | {strategy} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot_accuracy(
    runs: Runs, sizes: dict[str, int], strategies: Sequence[str], output: Path
) -> Path:
    """The clients' accuracy (mean over clients; mean ± std over seeds) against the
    images per class of each partition (``sizes``), one line per strategy."""
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    for strategy in strategies:
        points = []
        for partition, size in sizes.items():
            found = [last_value(d, ACCURACY_KEYS) for d in runs.get((partition, strategy), [])]
            values = [100 * v for v in found if v is not None]
            if values:
                std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
                points.append((size, float(np.mean(values)), std))
        if points:
            xs, means, stds = zip(*points, strict=True)
            axis.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=strategy)
    axis.set_xscale("log")
    axis.set_xlabel("training images per class per client")
    axis.set_ylabel("clients' accuracy on the test set (%)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return save_figure(figure, output)


def write_by_size(config: ExperimentConfig, cells: Sequence[Cell]) -> Path:
    """``by-size.md`` and ``by-size.png`` in the experiment's output folder (see the
    module docstring). Only finished runs count; the seeds counted are given."""
    output = Path(config.output_dir).expanduser().resolve()
    runs = finished_runs(cells)
    sizes = {p.name: p.examples_per_class for p in config.partitions}
    partitions, strategies = list(sizes), list(config.strategies)
    generating = [
        s
        for s in strategies
        if any(generator_scores(d, "frechet") for p in partitions for d in runs.get((p, s), []))
    ]
    lines = [
        f"# {config.name}: against images per class",
        "",
        "Final round; mean ± sample std over seeds (seeds counted in brackets). Accuracy is "
        "each client's classifier on the dataset's test set, averaged over clients (the "
        "global model for FedAvg and centralized training, which every client shares).",
        "",
        "## Clients' accuracy on the test set (%)",
        "",
        grid_table(runs, partitions, strategies, lambda d: last_value(d, ACCURACY_KEYS)),
        "",
        "## Per client (%)",
        "",
        per_client_table(runs, partitions, strategies, client_accuracies),
    ]
    if generating:
        lines += [
            "",
            "## Generators",
            "",
            "Each client's samples against the test set in the reference classifier's "
            "feature space, averaged over clients: Fréchet distance (lower is better), the "
            "mean of the per-class distances, and the reference classifier's accuracy on "
            "the samples' conditioning labels (%).",
            "",
            "Fréchet distance:",
            "",
            grid_table(runs, partitions, generating, frechet, 1.0),
            "",
            "Mean per-class Fréchet distance:",
            "",
            grid_table(runs, partitions, generating, class_frechet, 1.0),
            "",
            "Reference accuracy on the samples (%):",
            "",
            grid_table(runs, partitions, generating, reference_accuracy),
            "",
            "Fréchet distance per client:",
            "",
            per_client_table(
                runs, partitions, generating, lambda d: generator_scores(d, "frechet"), 1.0
            ),
        ]
    plot = plot_accuracy(runs, sizes, strategies, output / "by-size.png")
    lines += ["", f"![clients' accuracy against images per class]({plot.name})"]
    report = output / "by-size.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def frechet(data: dict[str, Any]) -> float | None:
    """The clients' mean Fréchet distance in the last round scored."""
    return last_value(data, ("generation_frechet",))


def class_frechet(data: dict[str, Any]) -> float | None:
    """The clients' mean per-class Fréchet distance in the last round scored."""
    return last_value(data, ("generation_mean_class_frechet",))


def reference_accuracy(data: dict[str, Any]) -> float | None:
    """The reference classifier's accuracy on the clients' samples (last round scored)."""
    return last_value(data, ("generation_reference_accuracy",))
