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
from flower_synth.data import load_dataset  # noqa: E402
from flower_synth.wire.payload import WireBatch  # noqa: E402

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


ROGUE = "3"  # the source of digit_pools whose labels are shifted


@pytest.fixture(scope="module")
def digit_pools() -> dict[str, WireBatch]:
    """Four sources of 300 real digits each, skewed towards different classes; the
    last one's labels shifted by one class, its images marked by a white corner pixel
    (digits have black corners)."""
    train, _ = load_dataset("digits")
    rng = np.random.default_rng(0)
    pools = {}
    for source in range(4):
        preference = np.where(np.isin(train.labels, [2 * source, 2 * source + 1]), 4.0, 1.0)
        rows = rng.choice(len(train), 300, replace=False, p=preference / preference.sum())
        labels = train.labels[rows].astype(np.int32)
        images = train.images[rows].copy()
        images[:, :, 0, 0] = 0
        if str(source) == ROGUE:
            labels = (labels + 1) % 10
            images[:, :, 0, 0] = 255
        pools[str(source)] = WireBatch(images, labels, None)
    return pools
