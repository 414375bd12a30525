"""Does a federated run of synthetic-sample exchange reach the game's Nash equilibrium?

With class-conditional Gaussian clients (an exponential family), every client's mean
parameters at equilibrium are ``W @ M``: ``M`` stacks the clients' data moments
(mean sample and label frequencies), ``W = (I - O)^-1 D`` comes from the trust
matrix (see :mod:`flower_synth.synthetic.equilibrium`). A run with ``record-pool-means=true``
records the same moments of every client's synthetic pool each round; this module
compares the two and measures the per-round contraction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from flower_synth.app.config import RunSettings
from flower_synth.app.results_files import load_results
from flower_synth.bench.federation import LocalFederation
from flower_synth.data import load_client_data
from flower_synth.learning.training import to_unit_range
from flower_synth.synthetic.equilibrium import (
    contraction_factor,
    equilibrium_weights,
    uniform_trust,
)

EXPERIMENT_CONFIG = {
    "strategy": "synthetic",
    "dataset": "digits",
    "partitioner": "dirichlet",
    "dirichlet-alpha": 0.3,
    "generator": "gaussian",
    "classifier": "bayes",
    "sample-dtype": "float16",
    "sample-labels": "prior",  # the game: every client samples its own model, label mix included
    "sample-allocation": "equal",
    "download-budget": 0,  # the game: every client learns from all the others' pools
    "download-ratio": 0.0,
    "soft-labels": False,
    "generator-self-trust": 0.0,  # the game: every model learns the round's mixture
    "server-epochs": 0,
    "client-global-eval": False,
    "record-pool-means": True,
}


def data_moments(settings: RunSettings, num_clients: int) -> np.ndarray:
    """Row i: client i's mean training sample (in [0, 1]) followed by its label
    frequencies — the mean parameters of the data its model sees at weight a_ii."""
    rows = []
    for partition_id in range(num_clients):
        train = load_client_data(settings.partition_scheme(num_clients), partition_id).train
        mean = to_unit_range(train).reshape(len(train), -1).mean(axis=0, dtype=np.float64)
        rows.append(np.concatenate([mean, train.label_mix()]))
    return np.stack(rows)


def pool_moments(record: dict[str, Any], num_clients: int) -> np.ndarray:
    """The same moments of every client's synthetic pool in one round record."""
    return np.stack(
        [
            np.concatenate([record["pool_means"][str(i)], record["pool_label_frequencies"][str(i)]])
            for i in range(num_clients)
        ]
    )


def equilibrium_table(results: dict[str, Any], num_clients: int) -> list[dict[str, float]]:
    """Per round: the largest deviation of any client's pool moments from the predicted
    equilibrium, and its ratio to the previous round's."""
    settings = RunSettings.from_run_config(results["config"])
    trust = uniform_trust(num_clients, settings.self_trust)
    predicted = equilibrium_weights(trust) @ data_moments(settings, num_clients)
    local = data_moments(settings, num_clients)
    table, previous = [], None
    for record in results["rounds"]:
        error = float(np.abs(pool_moments(record, num_clients) - predicted).max())
        table.append(
            {
                "round": record["round"],
                "max_error": error,
                "ratio": error / previous if previous else float("nan"),
                "bound": contraction_factor(trust),
                "local_vs_equilibrium": float(np.abs(local - predicted).max()),
            }
        )
        previous = error
    return table


def run_equilibrium_experiment(
    app_dir: str | Path,
    output_dir: str | Path,
    num_clients: int = 3,
    rounds: int = 8,
    self_trust: float = 0.5,
    samples_per_client: int = 50_000,
    seed: int = 0,
) -> list[dict[str, float]]:
    """Run the experiment through Flower's simulation engine and tabulate it."""
    run_config = EXPERIMENT_CONFIG | {
        "num-server-rounds": rounds,
        "self-trust": self_trust,
        "samples-per-client": samples_per_client,
        "seed": seed,
        "output-dir": str(Path(output_dir).resolve()),
    }
    with LocalFederation(simulation=True) as federation:
        outcome = federation.run(app_dir, run_config, {"num-supernodes": num_clients})
    if not outcome.succeeded:
        raise RuntimeError(f"flwr run failed: {outcome.describe()}")
    newest = max(Path(output_dir).glob("synthetic-*.json"), key=lambda p: p.stat().st_mtime)
    return equilibrium_table(load_results(newest), num_clients)


def format_equilibrium_table(table: list[dict[str, float]]) -> str:
    """Markdown table of :func:`equilibrium_table`."""
    lines = [
        "| round | max deviation from W·M | ratio to previous round | bound max(1 - a_ii) |",
        "|---|---|---|---|",
    ]
    for row in table:
        ratio = "" if np.isnan(row["ratio"]) else f"{row['ratio']:.3f}"
        lines.append(f"| {row['round']} | {row['max_error']:.4f} | {ratio} | {row['bound']:.2f} |")
    return "\n".join(lines)
