"""Saving a metered run after every completed round and continuing it: what both API
adapters' ``MeteredStrategy`` keep, in one place."""

from __future__ import annotations

from collections.abc import Mapping
from logging import INFO

import numpy as np
from flwr.common.logger import log

from flower_synth.exchange.checkpoint import Checkpoint, Snapshot, State, Stateful
from flower_synth.exchange.recorder import RunRecorder


class RoundCheckpoints:
    """The state after every completed round in ``checkpoint`` (the round, the global
    arrays by name, ``strategy``'s state where it is
    :class:`~flower_synth.exchange.checkpoint.Stateful`, and the results ``recorder``
    holds so far), and the way back to it.

    Args:
        checkpoint: the file (None: nothing is saved and nothing resumes).
        recorder: the run's results.
        strategy: the wrapped strategy.
    """

    def __init__(
        self, checkpoint: Checkpoint | None, recorder: RunRecorder, strategy: object
    ) -> None:
        self.checkpoint = checkpoint
        self.recorder = recorder
        self.strategy = strategy

    def resume(self) -> tuple[int, dict[str, np.ndarray]]:
        """The last completed round (0: nothing saved, or a damaged checkpoint, set
        aside by :meth:`~flower_synth.exchange.checkpoint.Checkpoint.load_or_set_aside`) and the
        global arrays after it; the strategy's state and the results so far are
        restored."""
        if self.checkpoint is None or not self.checkpoint.exists():
            return 0, {}
        snapshot = self.checkpoint.load_or_set_aside()
        if snapshot is None:
            return 0, {}
        state = snapshot.state
        if isinstance(self.strategy, Stateful):
            self.strategy.load_state(state.part("strategy"))
        arrays = state.part("arrays").arrays
        names = state.meta.get("array_names", [])
        self.recorder.restore(state.meta["results"], resumed_after=snapshot.server_round)
        log(INFO, "Resuming after round %s from %s", snapshot.server_round, self.checkpoint.path)
        return snapshot.server_round, {name: arrays[name] for name in names}

    def save(self, server_round: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Checkpoint the state after ``server_round`` with the global ``arrays``."""
        if self.checkpoint is None:
            return
        names = list(arrays)
        state = State(meta={"array_names": names, "results": self.recorder.as_dict()})
        state = state.with_part("arrays", State(dict(arrays)))
        if isinstance(self.strategy, Stateful):
            state = state.with_part("strategy", self.strategy.state())
        self.checkpoint.save(Snapshot(server_round, state))
