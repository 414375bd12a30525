"""A run's results file: the run config plus one record per server round, rewritten as
the run goes.

Every round record holds at least :data:`ROUND_KEYS` (``null`` where a strategy has
no such figure); strategies add their own keys.
"""

from __future__ import annotations

import json
import os
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
