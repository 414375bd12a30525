"""LocalFederation never leaves its SuperLink behind, even when interrupted while starting."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from flower_synth.bench.federation import LocalFederation
from flower_synth.bench.processes import ProcessGroup


def test_interrupt_while_starting_stops_the_superlink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[subprocess.Popen] = []
    original_start = ProcessGroup.start

    def recording_start(self: ProcessGroup, *args: object, **kwargs: object) -> subprocess.Popen:
        process = original_start(self, *args, **kwargs)
        started.append(process)
        return process

    def interrupted(self: LocalFederation) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(ProcessGroup, "start", recording_start)
    monkeypatch.setattr(LocalFederation, "_healthy", interrupted)
    federation = LocalFederation(simulation=True, workdir=tmp_path)
    try:
        with pytest.raises(KeyboardInterrupt), federation:
            pytest.fail("the federation must not start")
        assert len(started) == 1
        assert started[0].poll() is not None
        assert federation.processes.pids() == set()
    finally:  # if an assertion failed, stop what this test started, by pid
        leftover = ProcessGroup()
        leftover.processes = started
        leftover.stop()
