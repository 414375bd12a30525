"""Experiment definitions (YAML read with omegaconf) and their expansion into cells.

An experiment is a grid: partitions (each with its seeds) x strategies. Each cell is
one run: a Flower simulation (`flwr run` with run-config and federation-config
overrides) or, for ``centralized``, one model trained on the pooled client data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING, OmegaConf

from flower_synth.app.config import STRATEGIES, RunSettings
from flower_synth.bench.centralized import CENTRALIZED
from flower_synth.data.partition import PARTITIONERS

EXPERIMENT_STRATEGIES = (*STRATEGIES, CENTRALIZED)


@dataclass
class PartitionSpec:
    """One way of splitting the data over the clients, run with every seed in ``seeds``."""

    name: str = MISSING
    partitioner: str = "dirichlet"
    alpha: float = 0.5  # dirichlet
    classes_per_client: int = 2  # pathological
    imbalance: float = 1.0  # long-tailed training set first (imbalance factor; 1: none)
    examples_per_class: int = 0  # per-class: examples of every class on every client
    seeds: list[int] = field(default_factory=lambda: [0])
    num_clients: int = 0  # clients of this partition's runs (0: the experiment's)
    # run-config overrides for this partition's cells (e.g. more local epochs where
    # clients hold less data); the strategies' own overrides come after them
    run_config: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExperimentConfig:
    """The schema of ``simulations/*.yaml`` (unknown keys and wrong types are errors).

    ``strategies`` maps each strategy to its own run-config overrides; a key
    ``NAME@VARIANT`` (e.g. ``synthetic@hard-labels``) is one more run of strategy
    ``NAME`` with other overrides, with a folder and a report row of its own (for
    ablations). ``run_config`` applies to every Flower run and ``federation`` to every
    federation config (e.g. ``client-resources-num-cpus``). ``output_dir`` holds one
    folder per cell, ``report.md`` and the plots.
    """

    name: str = "experiment"
    output_dir: str = "runs/experiment"
    dataset: str = "fashion-mnist"
    num_clients: int = 10
    rounds: int = 30
    fraction_fit: float = 1.0
    local_epochs: int = 2
    target_accuracy: float = 0.8
    timeout_minutes: float = 120.0
    partitions: list[PartitionSpec] = field(default_factory=list)
    strategies: dict[str, dict[str, Any]] = field(default_factory=dict)
    run_config: dict[str, Any] = field(default_factory=dict)
    federation: dict[str, Any] = field(default_factory=dict)


def base_strategy(key: str) -> str:
    """The strategy an experiment's strategy key runs: ``NAME`` of ``NAME@VARIANT``."""
    return key.split("@", 1)[0]


@dataclass(frozen=True)
class Cell:
    """One run of the grid. ``strategy`` is the experiment's key (``NAME`` or
    ``NAME@VARIANT``); :attr:`base` the strategy it runs."""

    partition: str
    strategy: str
    seed: int
    run_config: dict[str, Any]
    federation_config: dict[str, Any]
    directory: Path

    @property
    def name(self) -> str:
        """``<partition>/<strategy>/seed<seed>``, also the cell's folder below the output."""
        return f"{self.partition}/{self.strategy}/seed{self.seed}"

    @property
    def base(self) -> str:
        """The strategy this cell runs (``centralized`` or a run-config strategy)."""
        return base_strategy(self.strategy)

    @property
    def settings(self) -> RunSettings:
        """The run config as typed settings (a centralized cell keeps FedAvg's SGD)."""
        strategy = "fedavg" if self.base == CENTRALIZED else self.base
        return RunSettings.from_run_config(self.run_config | {"strategy": strategy})


def load_experiment(path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read an experiment YAML onto the schema and apply omegaconf dotlist overrides
    (``rounds=3``, ``strategies.synthetic.samples-per-client=200``); validates."""
    schema = OmegaConf.structured(ExperimentConfig)
    merged = OmegaConf.merge(schema, OmegaConf.load(path), OmegaConf.from_dotlist(list(overrides)))
    config: ExperimentConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    validate(config)
    return config


def validate(config: ExperimentConfig) -> None:
    """Reject unknown strategies and partitioners, duplicate partition names, and
    run-config keys or values that the app would refuse."""
    unknown = sorted(k for k in config.strategies if base_strategy(k) not in EXPERIMENT_STRATEGIES)
    if unknown:
        raise ValueError(
            f"unknown strategies {unknown}; choose from {EXPERIMENT_STRATEGIES} "
            "(a variant is NAME@VARIANT)"
        )
    names = [p.name for p in config.partitions]
    if len(set(names)) != len(names):
        raise ValueError(f"partition names must be unique, got {names}")
    for partition in config.partitions:
        if partition.num_clients < 0:
            raise ValueError(
                f"partition {partition.name!r}: num_clients must be >= 0 (0: the "
                f"experiment's), got {partition.num_clients}"
            )
        if partition.partitioner not in PARTITIONERS:
            raise ValueError(
                f"partition {partition.name!r}: unknown partitioner {partition.partitioner!r}; "
                f"choose one of {PARTITIONERS}"
            )
    known = set(RunSettings().to_run_config())
    for cell in expand(config):
        unknown_keys = sorted(set(cell.run_config) - known)
        if unknown_keys:
            raise ValueError(
                f"{cell.name}: unknown run-config keys {unknown_keys}; the app's keys are "
                f"listed under [tool.flwr.app.config] in pyproject.toml"
            )
        cell.settings  # noqa: B018 - raises on a bad value


def partition_run_config(partition: PartitionSpec) -> dict[str, Any]:
    """The run-config keys that select ``partition``."""
    keys: dict[str, Any] = {"partitioner": partition.partitioner}
    if partition.partitioner == "dirichlet":
        keys["dirichlet-alpha"] = float(partition.alpha)
    if partition.partitioner == "pathological":
        keys["classes-per-client"] = int(partition.classes_per_client)
    if partition.partitioner == "per-class":
        keys["examples-per-class"] = int(partition.examples_per_class)
    if partition.imbalance != 1:
        keys["imbalance-factor"] = float(partition.imbalance)
    return keys


def expand(
    config: ExperimentConfig,
    strategies: Sequence[str] | None = None,
    partitions: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
) -> list[Cell]:
    """Every (partition, seed, strategy) cell, optionally restricted to some
    strategies, partitions and seeds, in a stable order: partition, seed, strategy."""
    cells = []
    output = Path(config.output_dir).expanduser().resolve()
    for partition in config.partitions:
        if partitions and partition.name not in partitions:
            continue
        for seed in partition.seeds:
            if seeds and seed not in seeds:
                continue
            for strategy, overrides in config.strategies.items():
                if strategies and strategy not in strategies:
                    continue
                directory = output / partition.name / strategy / f"seed{seed}"
                run_config = (
                    {
                        "dataset": config.dataset,
                        "num-server-rounds": config.rounds,
                        "fraction-fit": float(config.fraction_fit),
                        "local-epochs": config.local_epochs,
                        "seed": int(seed),
                    }
                    | partition_run_config(partition)
                    | dict(config.run_config)
                    | dict(partition.run_config)
                    | dict(overrides or {})
                    | {"strategy": base_strategy(strategy), "output-dir": str(directory)}
                )
                clients = partition.num_clients or config.num_clients
                federation = {"num-supernodes": clients} | dict(config.federation)
                cells.append(
                    Cell(partition.name, strategy, int(seed), run_config, federation, directory)
                )
    return cells
