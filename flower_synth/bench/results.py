"""Figures measured outside a run, and the headline figures of a run's results file."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from flower_synth.app.results_files import load_results
from flower_synth.exchange.recorder import write_json_atomically


def add_measurements(path: str | Path, **measurements: Any) -> None:
    """Store figures measured outside the run (peak memory, wall time) in the results
    file under ``measurements``."""
    path = Path(path)
    data = load_results(path)
    data["measurements"] = data.get("measurements", {}) | measurements
    write_json_atomically(path, data)


def summarize(data: dict[str, Any]) -> dict[str, Any]:
    """Headline figures of one run (``data`` as returned by :func:`load_results`).

    ``seconds_per_round`` is the median over the rounds after the first (round 1 also
    pays for starting Ray and loading data), or round 1's time if it is the only one.
    ``final_*`` figures are the last round that has them (clients may score the global
    test set only every few rounds).
    """
    rounds = data["rounds"]

    def last(key: str) -> Any:
        values = [r[key] for r in rounds if r.get(key) is not None]
        return values[-1] if values else None

    accuracies = [r["global_accuracy"] for r in rounds if r.get("global_accuracy") is not None]
    timed = [r["seconds"] for r in rounds if r.get("seconds") is not None]
    steady = timed[1:] or timed
    exchanged = [(r.get("bytes_down") or 0) + (r.get("bytes_up") or 0) for r in rounds]
    return {
        "strategy": data["config"].get("strategy"),
        "rounds": len(rounds),
        "final_global_accuracy": last("global_accuracy"),
        "best_global_accuracy": max(accuracies) if accuracies else None,
        "final_personalized_accuracy": last("personalized_accuracy"),
        "final_clients_global_accuracy": last("clients_global_accuracy"),
        "final_clients_global_uncorrected": last("clients_global_accuracy_uncorrected"),
        "final_label_agreement": last("label_agreement"),
        "mb_per_round": sum(exchanged) / len(exchanged) / 1e6 if exchanged else None,
        "total_mb": sum(exchanged) / 1e6,
        "seconds_per_round": statistics.median(steady) if steady else None,
    }


def format_summary_table(summaries: list[dict[str, Any]]) -> str:
    """A Markdown table of :func:`summarize` outputs."""

    def cell(value: Any, scale: float = 1.0, digits: int = 2) -> str:
        return "n/a" if value is None else f"{value * scale:.{digits}f}"

    lines = [
        "| strategy | rounds | final global acc % | best global acc % | personalized acc % "
        "| MB / round | total MB | s / round |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        lines.append(
            f"| {s['strategy']} | {s['rounds']} | {cell(s['final_global_accuracy'], 100)} "
            f"| {cell(s['best_global_accuracy'], 100)} "
            f"| {cell(s['final_personalized_accuracy'], 100)} "
            f"| {cell(s['mb_per_round'])} | {cell(s['total_mb'], digits=1)} "
            f"| {cell(s['seconds_per_round'], digits=1)} |"
        )
    return "\n".join(lines)
