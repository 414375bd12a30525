"""Summaries of experiments whose partitions lie on one axis: the data-scarce regime
(every partition ``per-class``: images per class) and partly labelled clients (every
partition sets its own ``labelled-fraction``). The clients' accuracy on the test set
and their generators' quality along the axis, mean ± std over seeds, per client, each
strategy's gain over local-only client by client, and a plot of accuracy along it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402

from flower_synth.app.config import per_partition  # noqa: E402
from flower_synth.app.results_files import load_results  # noqa: E402
from flower_synth.bench.compare import finished_results  # noqa: E402
from flower_synth.bench.experiments import Cell, ExperimentConfig  # noqa: E402
from flower_synth.bench.plotting import save_figure  # noqa: E402
from flower_synth.bench.report import mean_std  # noqa: E402

LOCAL_BASELINE = "local-only"  # what every client could do without the others

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


@dataclass(frozen=True)
class Axis:
    """What tells an experiment's partitions apart: a number per partition, named
    ``title`` in the report, written to ``<stem>.md`` and ``<stem>.png``."""

    title: str
    stem: str
    values: dict[str, float]
    log_scale: bool = True


def is_data_scarce(config: ExperimentConfig) -> bool:
    """Whether every partition of ``config`` is ``per-class`` (n images of every class)."""
    return bool(config.partitions) and all(p.partitioner == "per-class" for p in config.partitions)


def size_axis(config: ExperimentConfig) -> Axis:
    """The data-scarce axis: training images per class per client."""
    sizes = {p.name: float(p.examples_per_class) for p in config.partitions}
    return Axis("training images per class per client", "by-size", sizes)


def labelled_axis(config: ExperimentConfig) -> Axis | None:
    """The partly labelled axis: each partition's ``labelled-fraction`` (in %), when
    every partition sets one number of its own and they differ; else None."""
    fractions: dict[str, float] = {}
    for partition in config.partitions:
        value = partition.run_config.get("labelled-fraction")
        try:
            fractions[partition.name] = 100 * float(value)
        except (TypeError, ValueError):
            return None
    if len(set(fractions.values())) < 2:
        return None
    return Axis("labelled share of each client's images (%)", "by-labels", fractions)


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


def client_modalities(data: dict[str, Any]) -> dict[int, str]:
    """The modality of every client a run scored (run-config ``modality``, by partition
    id round-robin; ``clean`` where the run predates the key)."""
    kinds = per_partition(str(data["config"].get("modality", "clean")))
    return {pid: kinds[pid % len(kinds)] for pid in client_accuracies(data)}


def modality_accuracy(kind: str) -> Any:
    """The mean accuracy of a run's clients of modality ``kind`` (None without any)."""

    def value(data: dict[str, Any]) -> float | None:
        own, kinds = client_accuracies(data), client_modalities(data)
        found = [own[pid] for pid in own if kinds[pid] == kind]
        return float(np.mean(found)) if found else None

    return value


def gain_table(
    runs: Runs, partitions: Sequence[str], strategies: Sequence[str], modality: str = ""
) -> str:
    """Each strategy's gain over local-only, client by client on the same seed
    (accuracy points): the mean over clients and the smallest client's gain (both
    mean ± std over seeds), and the seeds paired; only the clients of ``modality``
    where one is given."""
    lines = [
        "| partition | strategy | mean gain | smallest client's gain | seeds |",
        "|---|---|---|---|---|",
    ]
    for partition in partitions:
        baseline = {
            seed_of(d): client_accuracies(d) for d in runs.get((partition, LOCAL_BASELINE), [])
        }
        for strategy in strategies:
            if strategy == LOCAL_BASELINE:
                continue
            means, smallest = [], []
            for data in runs.get((partition, strategy), []):
                own, base = client_accuracies(data), baseline.get(seed_of(data), {})
                kinds = client_modalities(data)
                gains = [
                    own[pid] - base[pid]
                    for pid in own
                    if pid in base and modality in ("", kinds[pid])
                ]
                if gains:
                    means.append(float(np.mean(gains)))
                    smallest.append(min(gains))
            if means:
                lines.append(
                    f"| {partition} | {strategy} | {mean_std(means, 100.0)} | "
                    f"{mean_std(smallest, 100.0)} | {len(means)} |"
                )
    return "\n".join(lines)


def seed_of(data: dict[str, Any]) -> int:
    """The seed a results file ran with."""
    return int(data["config"]["seed"])


def plot_accuracy(runs: Runs, axis_spec: Axis, strategies: Sequence[str], output: Path) -> Path:
    """The clients' accuracy (mean over clients; mean ± std over seeds) along the
    partitions' axis, one line per strategy."""
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    for strategy in strategies:
        points = []
        for partition, size in axis_spec.values.items():
            found = [last_value(d, ACCURACY_KEYS) for d in runs.get((partition, strategy), [])]
            values = [100 * v for v in found if v is not None]
            if values:
                std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
                points.append((size, float(np.mean(values)), std))
        if points:
            xs, means, stds = zip(*points, strict=True)
            axis.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=strategy)
    if axis_spec.log_scale:
        axis.set_xscale("log")
    axis.set_xlabel(axis_spec.title)
    axis.set_ylabel("clients' accuracy on the test set (%)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return save_figure(figure, output)


def write_by_size(
    config: ExperimentConfig, cells: Sequence[Cell], axis: Axis | None = None
) -> Path:
    """``<stem>.md`` and ``<stem>.png`` of ``axis`` (default: the data-scarce
    :func:`size_axis`) in the experiment's output folder (see the module docstring).
    Only finished runs count; the seeds counted are given."""
    axis = axis or size_axis(config)
    output = Path(config.output_dir).expanduser().resolve()
    runs = finished_runs(cells)
    partitions, strategies = list(axis.values), list(config.strategies)
    generating = [
        s
        for s in strategies
        if any(generator_scores(d, "frechet") for p in partitions for d in runs.get((p, s), []))
    ]
    lines = [
        f"# {config.name}: against {axis.title}",
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
    if LOCAL_BASELINE in strategies:
        lines += [
            "",
            f"## Gain over {LOCAL_BASELINE}, client by client (points)",
            "",
            gain_table(runs, partitions, strategies),
        ]
    kinds = sorted({k for rs in runs.values() for d in rs for k in client_modalities(d).values()})
    if len(kinds) > 1:
        lines += ["", "## By modality", ""]
        for kind in kinds:
            lines += [
                f"Clients on {kind} images, accuracy on the test set of that modality (%):",
                "",
                grid_table(runs, partitions, strategies, modality_accuracy(kind)),
                "",
            ]
            if LOCAL_BASELINE in strategies:
                lines += [
                    f"Their gain over {LOCAL_BASELINE} (points):",
                    "",
                    gain_table(runs, partitions, strategies, kind),
                    "",
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
    plot = plot_accuracy(runs, axis, strategies, output / f"{axis.stem}.png")
    lines += ["", f"![clients' accuracy against {axis.title}]({plot.name})"]
    report = output / f"{axis.stem}.md"
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
