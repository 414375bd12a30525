"""Per-run results files: the run config plus one record per server round.

File name: ``<output-dir>/<strategy>-<dataset>-<partitioner>-seed<seed>-<YYYYmmdd-HHMMSS>.json``.
Every round record holds at least :data:`ROUND_KEYS` (``null`` where a strategy has
no such figure); strategies add their own keys.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

ROUND_KEYS = (
    "round",
    "global_accuracy",
    "global_loss",
    "personalized_accuracy",
    "bytes_down",
    "bytes_up",
    "seconds",
)


def results_file_prefix(strategy: str, dataset: str, partitioner: str, seed: int) -> str:
    """What the file names of runs with these settings begin with."""
    return f"{strategy}-{dataset}-{partitioner}-seed{seed}-"


def results_file_name(strategy: str, dataset: str, partitioner: str, seed: int) -> str:
    """The file name a run with these settings writes (timestamped, so runs never clash)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{results_file_prefix(strategy, dataset, partitioner, seed)}{stamp}.json"


class RunRecorder:
    """Collects round metrics and rewrites the JSON file after every update.

    Rewriting on each update keeps the file current while a run is in progress and
    loses at most the round in flight if the process dies. Round 0 (evaluation of
    the initial model, before any training) is stored under ``initial``. The file says
    ``"finished": false`` until :meth:`finish` marks the run done, so a run that crashed
    (even in its last round) never looks complete. A run continued from a checkpoint
    (:meth:`restore`) lists the rounds after which it was resumed under ``resumed``.
    """

    def __init__(self, path: str | Path, config: dict[str, Any]) -> None:
        self.path = Path(path)
        self.config = dict(config)
        self.initial: dict[str, Any] = {}
        self.rounds: list[dict[str, Any]] = []
        self.finished = False
        self.resumed: list[int] = []

    def update(self, server_round: int, **values: Any) -> dict[str, Any]:
        """Merge ``values`` into the record of ``server_round``, save, return the record."""
        if server_round == 0:
            record = self.initial
        else:
            if not self.rounds or self.rounds[-1]["round"] != server_round:
                self.rounds.append({key: None for key in ROUND_KEYS} | {"round": server_round})
            record = self.rounds[-1]
        record.update(values)
        self.save()
        return record

    def restore(self, data: dict[str, Any], resumed_after: int) -> None:
        """Continue the records ``data`` (what :meth:`as_dict` returned when round
        ``resumed_after`` was complete), dropping any later round, and save."""
        self.initial = dict(data.get("initial", {}))
        self.rounds = [r for r in data.get("rounds", []) if r["round"] <= resumed_after]
        self.resumed = [*data.get("resumed", []), resumed_after]
        self.finished = False
        self.save()

    def finish(self) -> None:
        """Mark the run done (every round ran and the strategy returned) and save."""
        self.finished = True
        self.save()

    def as_dict(self) -> dict[str, Any]:
        """The file's content."""
        return {
            "config": self.config,
            "finished": self.finished,
            "resumed": self.resumed,
            "initial": self.initial,
            "rounds": self.rounds,
        }

    def save(self) -> None:
        """Write the file atomically."""
        write_json_atomically(self.path, self.as_dict())


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON to a temporary file, then rename it onto ``path``, so a
    reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(data, indent=1, default=float))
    os.replace(temporary, path)


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a results file written by :class:`RunRecorder`."""
    data = json.loads(Path(path).read_text())
    if not {"config", "rounds"} <= data.keys():
        raise ValueError(f"{path} is not a flower-synth results file (no 'config'/'rounds')")
    return data


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
