"""The comparison report: one Markdown table per partition, plots, unfinished cells."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flower_synth.app.results_files import load_results
from flower_synth.bench.compare import finished_results
from flower_synth.bench.experiments import Cell, ExperimentConfig
from flower_synth.bench.plotting import plot_strategies
from flower_synth.bench.results import summarize

BASELINE = "fedavg"  # seconds per round are also given relative to this strategy
BASELINE_MARGIN = 0.05  # "MB to fedavg - 5": bytes until the baseline's final accuracy minus this


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
        "runs": runs,
        "final": present("final_global_accuracy"),
        "best": present("best_global_accuracy"),
        "personalized": present("final_personalized_accuracy"),
        "clients_global": present("final_clients_global_accuracy"),
        "clients_uncorrected": present("final_clients_global_uncorrected"),
        "agreement": present("final_label_agreement"),
        "mb_per_round": present("mb_per_round"),
        "total_mb": present("total_mb"),
        "to_target": [megabytes_to_target(data, target) for data in runs],
        "seconds": present("seconds_per_round"),
        "timed": [
            (summary["seconds_per_round"], data.get("measurements", {}).get("machine"))
            for summary, data in zip(summaries, runs, strict=True)
            if summary["seconds_per_round"] is not None
        ],
        "peak_rss": [
            data["measurements"]["peak_rss_mb"]
            for data in runs
            if "peak_rss_mb" in data.get("measurements", {})
        ],
    }


def reach(megabytes: list[float | None]) -> str:
    """``mean ± std (reached/runs)`` of the MB each run needed, ``not reached`` if none
    did, ``n/a`` without runs."""
    reached = [mb for mb in megabytes if mb is not None]
    if reached:
        return f"{mean_std(reached, digits=1)} ({len(reached)}/{len(megabytes)})"
    return "not reached" if megabytes else "n/a"


def partition_table(
    figures: dict[str, dict[str, Any]], planned: dict[str, int], target: float
) -> str:
    """The Markdown table of one partition (``figures`` by strategy, in row order;
    ``planned``: runs each strategy should have).

    "MB to fedavg - 5" counts the bytes until a run's global accuracy first reaches the
    baseline's final accuracy (mean over its seeds) minus :data:`BASELINE_MARGIN`.
    "vs fedavg" divides seconds per round by the baseline's on the same machine
    (:func:`speed_ratio`)."""
    baseline_final = figures.get(BASELINE, {}).get("final") or []
    near_baseline = statistics.fmean(baseline_final) - BASELINE_MARGIN if baseline_final else None
    lines = [
        f"| strategy | runs | final global acc % | best global acc % | personalized acc % "
        f"| clients' own global acc % | MB / round | total MB | MB to {100 * target:g} % "
        f"| MB to {BASELINE} - {100 * BASELINE_MARGIN:g} | s / round | vs {BASELINE} "
        "| peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for strategy, f in figures.items():
        to_baseline = (
            reach([megabytes_to_target(data, near_baseline) for data in f["runs"]])
            if near_baseline is not None
            else "n/a"
        )
        ratio = speed_ratio(f["timed"], figures.get(BASELINE, {}).get("timed") or [])
        peak = f"{max(f['peak_rss']):.0f}" if f["peak_rss"] else "n/a"
        cells = [
            strategy,
            f"{len(f['final'])}/{planned[strategy]}",
            mean_std(f["final"], 100),
            mean_std(f["best"], 100),
            mean_std(f["personalized"], 100),
            mean_std(f["clients_global"], 100),
            mean_std(f["mb_per_round"]),
            mean_std(f["total_mb"]),
            reach(f["to_target"]),
            to_baseline,
            mean_std(f["seconds"], digits=1),
            ratio,
            peak,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def speed_ratio(
    timed: Sequence[tuple[float, str | None]], baseline: Sequence[tuple[float, str | None]]
) -> str:
    """Mean over runs of seconds per round divided by the baseline's mean on the same
    machine (``timed``: ``(seconds, machine)`` per run); runs with no baseline run on
    their machine, or with no machine recorded, are left out: seconds measured on
    different machines never share a ratio. ``n/a`` if no run is left."""
    by_machine: dict[str, list[float]] = {}
    for seconds, machine in baseline:
        if machine is not None:
            by_machine.setdefault(machine, []).append(seconds)
    ratios = [
        seconds / statistics.fmean(by_machine[machine])
        for seconds, machine in timed
        if machine in by_machine
    ]
    return f"{statistics.fmean(ratios):.2f}x" if ratios else "n/a"


def samples_table(figures: dict[str, dict[str, Any]]) -> str | None:
    """For strategies that exchange samples: label agreement (share of samples whose
    soft label's top class is the class they were generated for) and the clients' own
    models on the global test set with and without prior correction (final rounds,
    mean ± std over seeds); None if no strategy reports label agreement."""
    rows = {strategy: f for strategy, f in figures.items() if f["agreement"]}
    if not rows:
        return None
    lines = [
        "| strategy | label agreement % | clients' own global acc %, prior-corrected "
        "| uncorrected |",
        "|---|---|---|---|",
    ]
    for strategy, f in rows.items():
        cells = [
            mean_std(f["agreement"], 100),
            mean_std(f["clients_global"], 100),
            mean_std(f["clients_uncorrected"], 100),
        ]
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


PHASES = (
    "configure_train",
    "train_replies",
    "aggregate_train",
    "configure_evaluate",
    "evaluate_replies",
    "aggregate_evaluate",
    "server_evaluate",
    "other",
)


def median_phases(data: dict[str, Any]) -> dict[str, float]:
    """Median over the rounds after the first of every recorded phase of a round and
    of every ``clients_*_seconds`` figure (the clients' own timers, summed per round)."""
    rounds = data["rounds"][1:] or data["rounds"]
    values: dict[str, list[float]] = {}
    for record in rounds:
        for phase, seconds in (record.get("phases") or {}).items():
            values.setdefault(phase, []).append(seconds)
        for key, seconds in record.items():
            if key.startswith("clients_") and key.endswith("_seconds") and seconds is not None:
                values.setdefault(key.removeprefix("clients_"), []).append(seconds)
    return {key: statistics.median(v) for key, v in values.items()}


def time_table(figures: dict[str, dict[str, Any]]) -> str | None:
    """Where a round's time goes, per strategy (mean over runs of the median round):
    the server's phases (``train_replies`` and ``evaluate_replies`` are the waits for
    the clients: their work and the transport) and the clients' own timers summed over
    the clients of a round; None if no run recorded phases."""
    medians = {
        strategy: [median_phases(data) for data in f["runs"]] for strategy, f in figures.items()
    }
    columns = [p for p in PHASES if any(p in m for ms in medians.values() for m in ms)]
    clients = sorted({k for ms in medians.values() for m in ms for k in m if k not in PHASES})
    if not columns:
        return None
    header = columns + [f"clients: {key.removesuffix('_seconds')}" for key in clients]
    lines = [
        "| strategy (s / round) | " + " | ".join(header) + " |",
        "|---|" + "---|" * len(header),
    ]
    for strategy, ms in medians.items():
        if not any(ms):
            continue
        cells = [mean_std([m[k] for m in ms if k in m], digits=2) for k in columns + clients]
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
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
        "their model on their local test split; clients' own global accuracy is the mean "
        "of the clients' own models on the global test set (prior-corrected where the "
        "strategy corrects it); MB count array bytes sent both ways, and 'MB to fedavg - "
        "5' counts them until a run's global accuracy reaches FedAvg's final accuracy "
        "minus 5 points; s / round is the median round after the first (which also "
        "starts Ray and loads data), and 'vs fedavg' divides it by FedAvg's on the same "
        "machine only ('n/a' where FedAvg was not timed on the machine a run was); peak "
        "RSS sums every process of the run.",
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
        samples = samples_table(figures)
        if samples is not None:
            lines += ["", samples]
        timing = time_table(figures)
        if timing is not None:
            lines += ["", "Where a round's time goes:", "", timing]
        if finished:
            plot = plot_strategies(finished, output / f"{partition}.png")
            lines += ["", f"![{partition}: accuracy vs round and vs cumulative MB]({plot.name})"]
    lines += ["", "## Unfinished runs", ""]
    lines += [f"- {name}" for name in unfinished] or ["None: every planned run finished."]
    report = output / "report.md"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(lines) + "\n")
    return report
