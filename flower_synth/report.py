"""The comparison report: one Markdown table per partition, plots, unfinished cells."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flower_synth.compare import finished_results
from flower_synth.experiments import Cell, ExperimentConfig
from flower_synth.plotting import plot_strategies
from flower_synth.results import load_results, summarize

BASELINE = "fedavg"  # seconds per round are also given relative to this strategy


def megabytes_to_target(data: dict[str, Any], target: float) -> float | None:
    """Cumulative MB exchanged (down + up) until the first round whose global accuracy
    reaches ``target``; None if no round does."""
    cumulative = 0.0
    for record in data["rounds"]:
        cumulative += ((record.get("bytes_down") or 0) + (record.get("bytes_up") or 0)) / 1e6
        if (record.get("global_accuracy") or 0.0) >= target:
            return cumulative
    return None


def mean_std(values: Sequence[float], scale: float = 1.0, digits: int = 2) -> str:
    """``mean ± sample std`` of ``values`` times ``scale``; the mean alone for one
    value; ``n/a`` for none."""
    if not values:
        return "n/a"
    scaled = [scale * v for v in values]
    mean = f"{statistics.fmean(scaled):.{digits}f}"
    return f"{mean} ± {statistics.stdev(scaled):.{digits}f}" if len(scaled) > 1 else mean


def strategy_figures(runs: Sequence[dict[str, Any]], target: float) -> dict[str, Any]:
    """Per-seed figures of one strategy on one partition (``runs``: results files)."""
    summaries = [summarize(data) for data in runs]

    def present(key: str) -> list[float]:
        return [s[key] for s in summaries if s[key] is not None]

    return {
        "final": present("final_global_accuracy"),
        "best": present("best_global_accuracy"),
        "personalized": present("final_personalized_accuracy"),
        "total_mb": present("total_mb"),
        "to_target": [megabytes_to_target(data, target) for data in runs],
        "seconds": present("seconds_per_round"),
        "peak_rss": [
            data["measurements"]["peak_rss_mb"]
            for data in runs
            if "peak_rss_mb" in data.get("measurements", {})
        ],
    }


def partition_table(
    figures: dict[str, dict[str, Any]], planned: dict[str, int], target: float
) -> str:
    """The Markdown table of one partition (``figures`` by strategy, in row order;
    ``planned``: runs each strategy should have)."""
    baseline = figures.get(BASELINE, {}).get("seconds") or []
    baseline_seconds = statistics.fmean(baseline) if baseline else None
    lines = [
        f"| strategy | runs | final global acc % | best global acc % | personalized acc % "
        f"| total MB | MB to {100 * target:g} % | s / round | vs {BASELINE} | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for strategy, f in figures.items():
        reached = [mb for mb in f["to_target"] if mb is not None]
        to_target = (
            f"{mean_std(reached, digits=1)} ({len(reached)}/{len(f['to_target'])})"
            if reached
            else ("not reached" if f["to_target"] else "n/a")
        )
        ratio = (
            f"{statistics.fmean(f['seconds']) / baseline_seconds:.2f}x"
            if f["seconds"] and baseline_seconds
            else "n/a"
        )
        peak = f"{max(f['peak_rss']):.0f}" if f["peak_rss"] else "n/a"
        cells = [
            strategy,
            f"{len(f['final'])}/{planned[strategy]}",
            mean_std(f["final"], 100),
            mean_std(f["best"], 100),
            mean_std(f["personalized"], 100),
            mean_std(f["total_mb"]),
            to_target,
            mean_std(f["seconds"], digits=1),
            ratio,
            peak,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(config: ExperimentConfig, cells: Sequence[Cell]) -> Path:
    """``report.md`` (and one PNG per partition) in the experiment's output folder,
    from the finished results files of ``cells``; cells without one are listed as
    unfinished, never filled in. Returns the report's path."""
    output = Path(config.output_dir).expanduser().resolve()
    lines = [
        f"# {config.name}",
        "",
        f"{config.dataset}, {config.num_clients} clients, fraction-fit {config.fraction_fit:g}, "
        f"{config.rounds} rounds, {config.local_epochs} local epochs. Accuracies are "
        "mean ± sample std over seeds; global accuracy is the global model on the "
        "dataset's test set (for strategies without a global model: the mean of the "
        "clients' own models on it); personalized accuracy is the mean over clients of "
        "their model on their local test split; MB count array bytes sent both ways; "
        "s / round is the median round after the first (which also starts Ray and loads "
        "data); peak RSS sums every process of the run.",
    ]
    unfinished = []
    for partition in dict.fromkeys(cell.partition for cell in cells):
        runs: dict[str, list[dict[str, Any]]] = {}
        planned: dict[str, int] = {}
        for cell in (c for c in cells if c.partition == partition):
            planned[cell.strategy] = planned.get(cell.strategy, 0) + 1
            runs.setdefault(cell.strategy, [])
            path = finished_results(cell)
            if path is None:
                unfinished.append(cell.name)
            else:
                runs[cell.strategy].append(load_results(path))
        figures = {s: strategy_figures(r, config.target_accuracy) for s, r in runs.items()}
        finished = {s: r for s, r in runs.items() if r}
        lines += [
            "",
            f"## {partition}",
            "",
            partition_table(figures, planned, config.target_accuracy),
        ]
        if finished:
            plot = plot_strategies(finished, output / f"{partition}.png")
            lines += ["", f"![{partition}: accuracy vs round and vs cumulative MB]({plot.name})"]
    lines += ["", "## Unfinished runs", ""]
    lines += [f"- {name}" for name in unfinished] or ["None: every planned run finished."]
    report = output / "report.md"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(lines) + "\n")
    return report
