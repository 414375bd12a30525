"""The data-scarce experiment (simulations/scarce.yaml) end to end on digits: clients
of four capacities with n images of every class, local-only vs synthetic exchange,
generation quality scored on the server."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import PROJECT_ROOT
from omegaconf import OmegaConf

from flower_synth.app.results_files import load_results
from flower_synth.bench.cli import main

pytestmark = pytest.mark.slow


def scarce_on_digits(tmp_path: Path) -> Path:
    """The shipped experiment, shrunk: digits, 5 images per class per client, 2 rounds."""
    config = OmegaConf.load(PROJECT_ROOT / "simulations" / "scarce.yaml")
    config.output_dir = str(tmp_path / "scarce")
    config.dataset = "digits"
    config.rounds = 2
    config.partitions = [
        {"name": "n5", "partitioner": "per-class", "examples_per_class": 5, "seeds": [0]}
    ]
    config.run_config["client-global-eval-every"] = 1
    config.run_config["learning-rate"] = 0.05
    kept = ("local-only", "synthetic", "synthetic@symvae")
    config.strategies = {key: config.strategies[key] for key in kept}
    path = tmp_path / "scarce.yaml"
    OmegaConf.save(config, path)
    return path


def test_data_scarce_experiment_scores_clients_and_their_generators(tmp_path: Path) -> None:
    experiment = scarce_on_digits(tmp_path)
    assert main(["compare", str(experiment), "--app-dir", str(PROJECT_ROOT)]) == 0
    results = {
        path.parent.parent.name: load_results(path)
        for path in (tmp_path / "scarce").rglob("*.json")
    }
    assert sorted(results) == ["local-only", "synthetic", "synthetic@symvae"]
    for strategy, data in results.items():
        assert data["finished"], strategy
        assert data["config"]["examples-per-class"] == 5
        final = data["rounds"][-1]
        per_client = [final[f"clients_global_accuracy_client_{pid}"] for pid in range(4)]
        assert min(per_client) > 0.2, (strategy, per_client)  # chance is 0.1
        assert final["clients_global_accuracy"] == pytest.approx(sum(per_client) / 4)
    for strategy in ("synthetic", "synthetic@symvae"):
        final = results[strategy]["rounds"][-1]
        scores = final["generation_quality_by_client"]
        assert sorted(scores) == ["0", "1", "2", "3"]
        for score in scores.values():
            assert score["frechet"] > 0
            assert 0.0 <= score["reference_accuracy"] <= 1.0
            assert len([k for k in score if k.startswith("frechet_class_")]) == 10
        assert final["generation_reference_accuracy"] > 0.2, strategy
