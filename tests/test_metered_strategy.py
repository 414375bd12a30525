"""MeteredStrategy around flwr's FedAvg: exact byte counts and round records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from conftest import IdleProxy
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
from flwr.server.client_manager import SimpleClientManager
from flwr.server.strategy import FedAvg

from flower_synth.exchange.metering import parameters_nbytes as payload_nbytes
from flower_synth.exchange.metering import parameters_serialized_nbytes as serialized_nbytes
from flower_synth.exchange.recorder import ROUND_KEYS, RunRecorder
from flower_synth.strategies import MeteredStrategy


def test_payload_bytes_exclude_headers() -> None:
    arrays = [np.zeros((3, 4), np.float32), np.zeros(5, np.uint8)]
    parameters = ndarrays_to_parameters(arrays)
    assert payload_nbytes(parameters) == 3 * 4 * 4 + 5
    assert serialized_nbytes(parameters) > payload_nbytes(parameters)


def test_fit_bytes_are_counted_exactly_and_recorded(tmp_path: Path) -> None:
    weights = [np.ones((10, 7), np.float32), np.ones(7, np.float32)]  # 77 floats = 308 bytes
    manager = SimpleClientManager()
    proxies = [IdleProxy(f"node-{i}") for i in range(4)]
    for proxy in proxies:
        manager.register(proxy)
    recorder = RunRecorder(tmp_path / "run.json", config={"strategy": "fedavg"})
    strategy = MeteredStrategy(FedAvg(fraction_fit=0.5, min_fit_clients=1), recorder)

    instructions = strategy.configure_fit(1, ndarrays_to_parameters(weights), manager)
    assert len(instructions) == 2
    ok = Status(code=Code.OK, message="")
    results = [
        (proxy, FitRes(ok, ndarrays_to_parameters([w * (i + 1) for w in weights]), 10, {}))
        for i, (proxy, _) in enumerate(instructions)
    ]
    aggregated, _ = strategy.aggregate_fit(1, results, [RuntimeError("node lost")])

    record = json.loads((tmp_path / "run.json").read_text())["rounds"][0]
    assert set(ROUND_KEYS) <= record.keys()
    assert record["bytes_down"] == record["bytes_up"] == 2 * 308
    assert record["fit_failures"] == 1
    assert record["clients_sampled"] == 2
    assert record["seconds"] >= 0
    assert payload_nbytes(aggregated) == 308
