"""The scale summary (experiments whose partitions differ in their number of clients):
what a round costs against the size of the federation, every strategy beside FedAvg on
the same machine, and a plot of seconds and bytes per round against the clients."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402

from flower_synth.bench.by_size import finished_runs  # noqa: E402
from flower_synth.bench.experiments import Cell, ExperimentConfig  # noqa: E402
from flower_synth.bench.plotting import save_figure  # noqa: E402
from flower_synth.bench.report import BASELINE, mean_std  # noqa: E402
from flower_synth.bench.results import summarize  # noqa: E402


def clients_of(config: ExperimentConfig) -> dict[str, int]:
    """The number of clients of every partition, by name."""
    return {p.name: p.num_clients or config.num_clients for p in config.partitions}


Costs = dict[tuple[str, str], list[dict[str, Any]]]  # (partition, strategy) -> round_costs


def is_scale_experiment(config: ExperimentConfig) -> bool:
    """Whether the partitions of ``config`` differ in their number of clients."""
    return len(set(clients_of(config).values())) > 1


def round_costs(data: dict[str, Any]) -> dict[str, float | None]:
    """One run's cost per round after the first: median and mean seconds, MB (down +
    up), the final global accuracy, the pools' mean and largest age in the last round
    (synthetic exchange); peak RSS where measured."""
    timed = [r["seconds"] for r in data["rounds"][1:] if r.get("seconds") is not None]
    summary = summarize(data)
    last = data["rounds"][-1] if data["rounds"] else {}
    return {
        "age_mean": last.get("pool_age_mean"),
        "age_max": last.get("pool_age_max"),
        "median_s": statistics.median(timed) if timed else None,
        "mean_s": statistics.fmean(timed) if timed else None,
        "mb": summary["mb_per_round"],
        "accuracy": summary["final_global_accuracy"],
        "peak_rss": data.get("measurements", {}).get("peak_rss_mb"),
        "machine": data.get("measurements", {}).get("machine"),
    }


def figure_of(costs: Sequence[dict[str, Any]], key: str) -> list[float]:
    """``key`` of every run's :func:`round_costs`, where present."""
    return [c[key] for c in costs if c[key] is not None]


def ratio_to_baseline(costs: Costs, partition: str, strategy: str, key: str) -> str:
    """Mean of ``key`` over the strategy's runs divided by FedAvg's on the same
    partition, only between runs timed on one machine (any machine for bytes)."""
    own, base = costs.get((partition, strategy), []), costs.get((partition, BASELINE), [])
    if key != "mb":
        machines = {c["machine"] for c in base} - {None}
        own = [c for c in own if c["machine"] in machines]
        base = [c for c in base if c["machine"] in machines]
    mine, theirs = figure_of(own, key), figure_of(base, key)
    if not mine or not theirs:
        return "n/a"
    return f"{statistics.fmean(mine) / statistics.fmean(theirs):.2f}x"


def cost_table(costs: Costs, clients: dict[str, int], strategies: Sequence[str]) -> str:
    """One row per (partition, strategy): clients, seconds per round (median and mean
    of rounds 2 on), their ratios to FedAvg, MB per round and its ratio, peak RSS,
    final global accuracy and the pools' ages in the last round; mean ± std over
    seeds."""
    lines = [
        f"| clients | strategy | s / round (median) | vs {BASELINE} | s / round (mean) "
        f"| vs {BASELINE} | MB / round | vs {BASELINE} | peak RSS MB | final global acc % "
        "| pool age mean / max |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for partition, count in clients.items():
        for strategy in strategies:
            found = costs.get((partition, strategy), [])
            if not found:
                continue
            peaks = figure_of(found, "peak_rss")
            row = [
                str(count),
                strategy,
                mean_std(figure_of(found, "median_s"), digits=1),
                ratio_to_baseline(costs, partition, strategy, "median_s"),
                mean_std(figure_of(found, "mean_s"), digits=1),
                ratio_to_baseline(costs, partition, strategy, "mean_s"),
                mean_std(figure_of(found, "mb")),
                ratio_to_baseline(costs, partition, strategy, "mb"),
                f"{max(peaks):.0f}" if peaks else "n/a",
                mean_std(figure_of(found, "accuracy"), 100),
                f"{mean_std(figure_of(found, 'age_mean'), digits=1)} / "
                f"{mean_std(figure_of(found, 'age_max'), digits=0)}",
            ]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot_costs(
    costs: Costs, clients: dict[str, int], strategies: Sequence[str], output: Path
) -> Path:
    """Median seconds per round and MB per round against the number of clients, one
    line per strategy."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for strategy in strategies:
        for axis, key in zip(axes, ("median_s", "mb"), strict=True):
            points = [
                (count, statistics.fmean(values))
                for partition, count in clients.items()
                if (values := figure_of(costs.get((partition, strategy), []), key))
            ]
            if points:
                xs, ys = zip(*points, strict=True)
                axis.plot(xs, ys, marker="o", label=strategy)
    for axis, label in zip(axes, ("seconds per round (median)", "MB per round"), strict=True):
        axis.set_xscale("log")
        axis.set_xlabel("clients in the federation")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    return save_figure(figure, output)


def write_by_clients(config: ExperimentConfig, cells: Sequence[Cell]) -> Path:
    """``by-clients.md`` and ``by-clients.png`` in the experiment's output folder (see
    the module docstring). Only finished runs count."""
    output = Path(config.output_dir).expanduser().resolve()
    costs = {cell: list(map(round_costs, runs)) for cell, runs in finished_runs(cells).items()}
    clients, strategies = clients_of(config), list(config.strategies)
    plot = plot_costs(costs, clients, strategies, output / "by-clients.png")
    lines = [
        f"# {config.name}: against the number of clients",
        "",
        "Rounds after the first (round 1 also starts Ray and loads data); mean ± sample "
        f"std over seeds. Ratios to {BASELINE} divide means over runs on the same "
        "partition, seconds only between runs timed on the same machine.",
        "",
        cost_table(costs, clients, strategies),
        "",
        f"![cost per round against the number of clients]({plot.name})",
    ]
    report = output / "by-clients.md"
    report.write_text("\n".join(lines) + "\n")
    return report
