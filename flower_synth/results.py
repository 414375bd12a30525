"""Per-run results files: the run config plus one record per server round.

File name: ``<output-dir>/<strategy>-<dataset>-<partitioner>-seed<seed>-<YYYYmmdd-HHMMSS>.json``.
Every round record holds at least :data:`ROUND_KEYS` (``null`` where a strategy has
no such figure); strategies add their own keys.
"""

from __future__ import annotations

import json
import os
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


def results_file_name(strategy: str, dataset: str, partitioner: str, seed: int) -> str:
    """The file name a run with these settings writes (timestamped, so runs never clash)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{strategy}-{dataset}-{partitioner}-seed{seed}-{stamp}.json"


class RunRecorder:
    """Collects round metrics and rewrites the JSON file after every update.

    Rewriting on each update keeps the file current while a run is in progress and
    loses at most the round in flight if the process dies. Round 0 (evaluation of
    the initial model, before any training) is stored under ``initial``.
    """

    def __init__(self, path: str | Path, config: dict[str, Any]) -> None:
        self.path = Path(path)
        self.config = dict(config)
        self.initial: dict[str, Any] = {}
        self.rounds: list[dict[str, Any]] = []

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

    def as_dict(self) -> dict[str, Any]:
        """The file's content."""
        return {"config": self.config, "initial": self.initial, "rounds": self.rounds}

    def save(self) -> None:
        """Write the file atomically (write a temporary file, then rename)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(self.as_dict(), indent=1, default=float))
        os.replace(temporary, self.path)


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a results file written by :class:`RunRecorder`."""
    data = json.loads(Path(path).read_text())
    if not {"config", "rounds"} <= data.keys():
        raise ValueError(f"{path} is not a flower-synth results file (no 'config'/'rounds')")
    return data
