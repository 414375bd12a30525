"""The comparison runner: run every cell of an experiment that has no results yet."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flower_synth.app.config import (
    BEFORE_KEY_EXISTED,
    BOOKKEEPING_KEYS,
    RunSettings,
    keys_not_read_by,
)
from flower_synth.app.results_files import load_results
from flower_synth.bench.centralized import CENTRALIZED, run_centralized
from flower_synth.bench.experiments import Cell
from flower_synth.bench.federation import LocalFederation
from flower_synth.bench.machine import machine_id
from flower_synth.bench.memory import PeakRSS
from flower_synth.bench.results import add_measurements
from flower_synth.exchange.metering import ROUND_MARKER

CellRunner = Callable[[Cell], None]


def matches(config: dict[str, Any], cell: Cell) -> bool:
    """Whether a results file's ``config`` is the cell's full run config, defaults
    included (``BOOKKEEPING_KEYS`` aside, and the keys the cell's strategy never reads,
    :func:`~flower_synth.app.config.keys_not_read_by`). A key the file lacks (written before the
    key existed) matches if the cell sets it to what runs did then: its default, or its
    entry in ``BEFORE_KEY_EXISTED`` where the default changed with the key."""
    defaults = RunSettings().to_run_config() | BEFORE_KEY_EXISTED
    expected = cell.settings.to_run_config() | {"strategy": cell.base}
    ignored = set(BOOKKEEPING_KEYS) | keys_not_read_by(cell.base)
    return all(
        config.get(key, defaults[key]) == value
        for key, value in expected.items()
        if key not in ignored
    )


def rounds_every_client_failed(data: dict[str, Any]) -> list[int]:
    """The rounds of a results file in which every sampled client failed (or was
    rejected): a run with such a round learnt nothing then and is a failed run."""
    return [
        record["round"]
        for record in data["rounds"]
        if (record.get("clients_sampled") or 0) > 0
        and (record.get("fit_failures") or 0) >= record["clients_sampled"]
    ]


def finished_results(cell: Cell) -> Path | None:
    """The newest results file in the cell's folder that belongs to this cell, holds
    every round and was marked finished by its ServerApp, or None. Interrupted or
    crashed runs leave unfinished files, which are ignored."""
    rounds = cell.run_config["num-server-rounds"]
    for path in sorted(cell.directory.glob("*.json"), reverse=True):
        try:
            data = load_results(path)
        except ValueError:
            continue
        complete = len(data["rounds"]) >= rounds and data.get("finished", True)
        if matches(data["config"], cell) and complete:
            return path
    return None


@dataclass
class FlowerCellRunner:
    """Runs a cell through Flower's simulation engine: ``flwr run`` against a SuperLink
    of its own (started and stopped by process id for every cell), then stores the
    peak resident memory of all its processes, the wall time and the machine it ran on in
    the results file. Runs go with ``resume=true``: a cell whose earlier run stopped
    part-way continues from its checkpoint (the measurements then cover the part run
    last).

    Args:
        app_dir: the Flower app (this project's folder).
        timeout_minutes: a cell still running after this is abandoned.
        on_line: receives every line of the streamed Flower log.
    """

    app_dir: Path
    timeout_minutes: float = 120.0
    on_line: Callable[[str], None] | None = None

    def __call__(self, cell: Cell) -> None:
        """Run ``cell``; raises ``RuntimeError`` if Flower reports a failure."""
        started = time.perf_counter()
        if cell.base == CENTRALIZED:
            with PeakRSS(lambda: [os.getpid()]) as memory:
                path = run_centralized(cell.settings, cell.federation_config["num-supernodes"])
        else:
            with (
                LocalFederation(simulation=True) as fed,
                PeakRSS(fed.processes.pids) as memory,
            ):
                outcome = fed.run(
                    self.app_dir,
                    cell.run_config | {"resume": True},
                    cell.federation_config,
                    timeout=60 * self.timeout_minutes,
                    on_line=self.on_line,
                )
            if not outcome.succeeded:
                raise RuntimeError(f"{cell.name} failed: {outcome.describe()}")
            path = finished_results(cell)
            if path is None:
                raise RuntimeError(f"{cell.name} ended without a complete results file")
            lost = rounds_every_client_failed(load_results(path))
            if lost:
                raise RuntimeError(f"{cell.name}: every client failed in rounds {lost}")
        add_measurements(
            path,
            peak_rss_mb=memory.peak_bytes / 2**20,
            wall_seconds=time.perf_counter() - started,
            machine=machine_id(),
        )


@dataclass(frozen=True)
class CellOutcome:
    """What happened to one cell in a sweep: ``done`` (already there), ``ran``, ``failed``."""

    cell: Cell
    status: str
    seconds: float = 0.0
    error: str = ""


def run_sweep(
    cells: Sequence[Cell],
    run_cell: CellRunner,
    log: Callable[[str], None] = print,
) -> list[CellOutcome]:
    """Run, in order, every cell without a finished results file; report progress
    through ``log``. A failing cell is logged and the sweep goes on."""
    outcomes = []
    for index, cell in enumerate(cells, start=1):
        prefix = f"[{index}/{len(cells)}] {cell.name}"
        if finished_results(cell) is not None:
            log(f"{prefix}: results exist, skipped")
            outcomes.append(CellOutcome(cell, "done"))
            continue
        log(f"{prefix}: running")
        started = time.perf_counter()
        try:
            run_cell(cell)
        except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as error:
            log(f"{prefix}: FAILED: {error}")
            outcomes.append(CellOutcome(cell, "failed", time.perf_counter() - started, str(error)))
            continue
        seconds = time.perf_counter() - started
        log(f"{prefix}: finished in {seconds:.0f} s")
        outcomes.append(CellOutcome(cell, "ran", seconds))
    return outcomes


def round_progress(log: Callable[[str], None]) -> Callable[[str], None]:
    """An ``on_line`` callback that passes only the per-round summaries to ``log``."""

    def on_line(line: str) -> None:
        if ROUND_MARKER in line:
            log("    " + line[line.index(ROUND_MARKER) + len(ROUND_MARKER) :].strip())

    return on_line
