"""Shared fixtures: small real data (scikit-learn digits) and Flower federations."""

from __future__ import annotations

from pathlib import Path

import pytest
from flwr.server.client_proxy import ClientProxy

from flower_synth.config import RunSettings

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def digits_settings(tmp_path: Path) -> RunSettings:
    """Settings for fast runs on scikit-learn's digits (always available)."""
    return RunSettings(
        dataset="digits",
        partitioner="dirichlet",
        dirichlet_alpha=0.5,
        local_epochs=5,
        learning_rate=0.05,
        output_dir=str(tmp_path / "results"),
    )


class IdleProxy(ClientProxy):
    """A registered client that is never contacted (the test plays its part)."""

    def get_properties(self, ins, timeout, group_id):  # pragma: no cover - unused
        raise NotImplementedError

    def get_parameters(self, ins, timeout, group_id):  # pragma: no cover - unused
        raise NotImplementedError

    def fit(self, ins, timeout, group_id):  # pragma: no cover - unused
        raise NotImplementedError

    def evaluate(self, ins, timeout, group_id):  # pragma: no cover - unused
        raise NotImplementedError

    def reconnect(self, ins, timeout, group_id):  # pragma: no cover - unused
        raise NotImplementedError
