"""Shared fixtures: small real data (scikit-learn digits) and Flower federations."""

from __future__ import annotations

import os

# One OpenMP thread per process, in this one and every process a test starts (flwr run,
# SuperLinks, SuperNodes, ClientApps, Ray workers inherit it): the suite runs several
# torch processes at once, and torch's threads spin-wait for cores that others hold.
# Measured on 2 cores with another job running: a small flow-matching fit took 180 s
# with two threads, 8.5 s with one. Set before torch is first imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from flwr.common import Code, FitRes, Scalar, Status, ndarrays_to_parameters  # noqa: E402
from flwr.server.client_manager import SimpleClientManager  # noqa: E402
from flwr.server.client_proxy import ClientProxy  # noqa: E402
from flwr.supercore.task_identity import TaskIdentity  # noqa: E402

from flower_synth.app.config import RunSettings  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def serverapp_identity():
    """The task identity Flower's runtime sets before a ServerApp runs.

    ``flwr.app.Message`` reads it when a strategy builds its messages, so tests that
    drive a Message-API strategy in-process need what ``run_serverapp`` would set.
    """
    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    yield
    TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved


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


def idle_federation(num_clients: int) -> tuple[SimpleClientManager, list[IdleProxy]]:
    """A client manager with ``num_clients`` registered idle clients ``node-<i>``."""
    manager = SimpleClientManager()
    proxies = [IdleProxy(f"node-{i}") for i in range(num_clients)]
    for proxy in proxies:
        manager.register(proxy)
    return manager, proxies


def fit_result(
    arrays: list[np.ndarray], metrics: dict[str, Scalar], num_examples: int = 100
) -> FitRes:
    """A successful fit result carrying ``arrays``."""
    return FitRes(
        Status(code=Code.OK, message=""), ndarrays_to_parameters(arrays), num_examples, metrics
    )
