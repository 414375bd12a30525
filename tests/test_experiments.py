"""Experiment YAML, dotlist overrides and grid expansion."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import PROJECT_ROOT
from omegaconf.errors import ConfigKeyError, ValidationError

from flower_synth.bench.experiments import expand, load_experiment

GRID = """
name: grid
output_dir: {output}
dataset: digits
num_clients: 4
rounds: 3
partitions:
  - {{name: iid, partitioner: iid, seeds: [0]}}
  - {{name: dir, partitioner: dirichlet, alpha: 0.3, seeds: [0, 1]}}
  - {{name: path, partitioner: pathological, classes_per_client: 3, seeds: [5]}}
strategies:
  fedavg: {{}}
  gmm-prototype: {{gmm-components: 2}}
  centralized: {{}}
run_config: {{learning-rate: 0.05}}
federation: {{client-resources-num-cpus: 1}}
"""


@pytest.fixture
def grid_file(tmp_path: Path) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(GRID.format(output=tmp_path / "out"))
    return path


def test_grid_expands_partitions_seeds_and_strategies(grid_file: Path, tmp_path: Path) -> None:
    cells = expand(load_experiment(grid_file))
    assert len(cells) == (1 + 2 + 1) * 3
    assert [c.name for c in cells[:4]] == [
        "iid/fedavg/seed0",
        "iid/gmm-prototype/seed0",
        "iid/centralized/seed0",
        "dir/fedavg/seed0",
    ]
    gmm = next(c for c in cells if c.name == "dir/gmm-prototype/seed1")
    assert gmm.run_config == {
        "dataset": "digits",
        "num-server-rounds": 3,
        "fraction-fit": 1.0,
        "local-epochs": 2,
        "seed": 1,
        "partitioner": "dirichlet",
        "dirichlet-alpha": 0.3,
        "learning-rate": 0.05,
        "gmm-components": 2,
        "strategy": "gmm-prototype",
        "output-dir": str(tmp_path / "out" / "dir" / "gmm-prototype" / "seed1"),
    }
    assert gmm.federation_config == {"num-supernodes": 4, "client-resources-num-cpus": 1}
    pathological = next(c for c in cells if c.partition == "path")
    assert pathological.run_config["classes-per-client"] == 3
    assert "dirichlet-alpha" not in pathological.run_config
    assert next(c for c in cells if c.strategy == "centralized").settings.strategy == "fedavg"


def test_dotlist_overrides_and_filters(grid_file: Path) -> None:
    config = load_experiment(
        grid_file, ["rounds=7", "num_clients=6", "strategies.gmm-prototype.fusion-tau=0.5"]
    )
    cells = expand(config, strategies=["gmm-prototype"], partitions=["dir"])
    assert [c.name for c in cells] == ["dir/gmm-prototype/seed0", "dir/gmm-prototype/seed1"]
    only_seed_one = expand(config, strategies=["gmm-prototype"], partitions=["dir"], seeds=[1])
    assert [c.name for c in only_seed_one] == ["dir/gmm-prototype/seed1"]
    assert cells[0].run_config["num-server-rounds"] == 7
    assert cells[0].run_config["fusion-tau"] == 0.5
    assert cells[0].federation_config["num-supernodes"] == 6


@pytest.mark.parametrize(
    ("override", "error", "message"),
    [
        ("rounds=many", ValidationError, "rounds"),
        ("colour=red", ConfigKeyError, "colour"),
        ("strategies.fedsgd={}", ValueError, "unknown strategies"),
        ("strategies.fedavg.learning-rate=-1", ValueError, "learning-rate"),
        ("strategies.fedavg.no-such-key=1", ValueError, "unknown run-config keys"),
    ],
)
def test_bad_experiments_are_named(grid_file: Path, override, error, message) -> None:
    with pytest.raises(error, match=message):
        load_experiment(grid_file, [override])


def test_shipped_experiments_load() -> None:
    shipped = [
        ("fmnist", 60),
        ("demo", 7),
        ("scale", 6),
        ("gmm-ablation", 15),
        ("long-tail", 16),
        ("scarce", 132),
        ("generators", 8),
        ("dirichlet-0.1-seeds", 5),
    ]
    for name, cells in shipped:
        config = load_experiment(PROJECT_ROOT / "simulations" / f"{name}.yaml")
        assert len(expand(config)) == cells
    fmnist = load_experiment(PROJECT_ROOT / "simulations" / "fmnist.yaml")
    seeds = expand(load_experiment(PROJECT_ROOT / "simulations" / "dirichlet-0.1-seeds.yaml"))
    # the sweep's cells on further seeds: the same settings but the seed and the output
    for cell in seeds:
        twin = expand(fmnist, strategies=[cell.strategy], partitions=["dirichlet-0.1"])[0]
        own, sweep = (
            {key: value for key, value in c.run_config.items() if key not in ("seed", "output-dir")}
            for c in (cell, twin)
        )
        assert own == sweep and cell.seed not in (0, 1)
    assert fmnist.rounds == 30 and fmnist.local_epochs == 2 and fmnist.num_clients == 10
    long_tail = expand(load_experiment(PROJECT_ROOT / "simulations" / "long-tail.yaml"))
    assert {cell.run_config["imbalance-factor"] for cell in long_tail} == {10.0, 100.0}
    ablation = expand(load_experiment(PROJECT_ROOT / "simulations" / "gmm-ablation.yaml"))
    assert all(cell.settings.validation for cell in ablation)
    scarce = expand(load_experiment(PROJECT_ROOT / "simulations" / "scarce.yaml"))
    assert {cell.settings.examples_per_class for cell in scarce} == {10, 50, 100, 500}
    # per-partition overrides: every client's round is 5,000 draws whatever its size
    assert {
        cell.settings.examples_per_class * 10 * cell.settings.local_epochs for cell in scarce
    } == {5000}
    assert {cell.settings.capacity for cell in scarce if cell.base == "synthetic"} == {
        "0.25,0.5,0.75,1"
    }
    generators = expand(load_experiment(PROJECT_ROOT / "simulations" / "generators.yaml"))
    flows = [cell.settings for cell in generators if "flow" in cell.name]
    assert {s.generator for s in flows} == {"flow"} and {
        s.fresh_sample_fraction for s in flows
    } == {0.25}
    assert {s.generator_epoch_scale for s in flows} == {1.0, 0.2}


def test_a_variant_is_one_more_run_of_its_strategy(grid_file: Path, tmp_path: Path) -> None:
    config = load_experiment(grid_file, ["strategies.gmm-prototype@no-dr={dr-lambda: 0.0}"])
    cells = expand(config, strategies=["gmm-prototype@no-dr"], partitions=["iid"])
    (variant,) = cells
    assert variant.name == "iid/gmm-prototype@no-dr/seed0"
    assert variant.base == "gmm-prototype" and variant.settings.strategy == "gmm-prototype"
    assert variant.run_config["strategy"] == "gmm-prototype"
    assert variant.run_config["dr-lambda"] == 0.0
    assert variant.directory == tmp_path / "out" / "iid" / "gmm-prototype@no-dr" / "seed0"
    with pytest.raises(ValueError, match="a variant is NAME@VARIANT"):
        load_experiment(grid_file, ["strategies.fedsgd@fast={}"])


def test_partition_overrides_come_after_the_experiments_and_before_the_strategys(
    tmp_path: Path,
) -> None:
    path = tmp_path / "scarce.yaml"
    path.write_text(
        """
dataset: digits
local_epochs: 2
partitions:
  - {name: few, partitioner: per-class, examples_per_class: 3, run_config: {local-epochs: 40}}
  - {name: many, partitioner: per-class, examples_per_class: 30}
strategies: {fedavg: {}, local-only: {local-epochs: 7}}
run_config: {local-epochs: 4, learning-rate: 0.05}
"""
    )
    epochs = {
        (cell.partition, cell.strategy): cell.run_config["local-epochs"]
        for cell in expand(load_experiment(path))
    }
    assert epochs == {
        ("few", "fedavg"): 40,
        ("few", "local-only"): 7,
        ("many", "fedavg"): 4,
        ("many", "local-only"): 7,
    }
