"""Where the Flower App writes its results files, and reading them back.

File name: ``<output-dir>/<strategy>-<dataset>-<partitioner>-seed<seed>-<YYYYmmdd-HHMMSS>.json``
(written by :class:`~flower_synth.exchange.recorder.RunRecorder`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


def results_file_prefix(strategy: str, dataset: str, partitioner: str, seed: int) -> str:
    """What the file names of runs with these settings begin with."""
    return f"{strategy}-{dataset}-{partitioner}-seed{seed}-"


def results_file_name(strategy: str, dataset: str, partitioner: str, seed: int) -> str:
    """The file name a run with these settings writes (timestamped, so runs never clash)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{results_file_prefix(strategy, dataset, partitioner, seed)}{stamp}.json"


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a results file written by :class:`RunRecorder`."""
    data = json.loads(Path(path).read_text())
    if not {"config", "rounds"} <= data.keys():
        raise ValueError(f"{path} is not a flower-synth results file (no 'config'/'rounds')")
    return data
