"""The library installs beside a Flower project's own stack: its wheel, installed with
its core dependencies only (ranges, no pins: here with torch 2.13 where `make test`
pins 2.14) into a fresh virtual environment, imports both strategy families and runs a
two-round Message-API app of each, without the App's and bench's dependencies."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow

CORE = {"flwr", "torch", "numpy", "scipy", "scikit-learn"}
NOT_CORE = ("datasets", "flwr_datasets", "omegaconf", "matplotlib", "torchvision", "ray")
TORCH = "torch==2.13.0"  # not make test's 2.14.1; a CPU build lies on this machine's disk


def requirements(wheel: Path) -> list[str]:
    """The wheel's Requires-Dist lines."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(name).decode()
    return [
        line.split(":", 1)[1].strip()
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:")
    ]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(PROJECT_ROOT),
        ],
        check=True,
    )
    return next(out.glob("flower_synth-*.whl"))


def test_core_requirements_are_ranges_and_the_rest_are_extras(wheel: Path) -> None:
    core = [r for r in requirements(wheel) if "extra ==" not in r]
    names = {r.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip() for r in core}
    assert names == CORE, core
    assert not any("==" in r for r in core), core
    extras = {r.split("extra ==")[1].strip(" '\"") for r in requirements(wheel) if "extra ==" in r}
    assert {"app", "bench", "dev"} <= extras


def test_the_wheel_alone_runs_both_strategies_in_a_fresh_environment(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel), TORCH], check=True)
    installed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    names = {p["name"].lower().replace("_", "-") for p in json.loads(installed)}
    assert not names & {
        "datasets",
        "flwr-datasets",
        "omegaconf",
        "matplotlib",
        "torchvision",
        "ray",
    }
    run = subprocess.run(
        [str(python), str(PROJECT_ROOT / "tests" / "apps" / "core_only_app.py")],
        cwd=tmp_path,  # not the project root: the installed wheel is what gets imported
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    outcome = json.loads(run.stdout.strip().splitlines()[-1])
    assert not set(NOT_CORE) & set(outcome["modules"])
    synthetic, gmm = outcome["synthetic"], outcome["gmm"]
    assert synthetic["rounds"] == gmm["rounds"] == 2
    # Result.arrays hold the server classifier (the user's model) and the fused mixtures
    assert synthetic["arrays"] == {
        "1.weight": [64, 64],
        "1.bias": [64],
        "3.weight": [10, 64],
        "3.bias": [10],
    }
    assert set(gmm["arrays"]) == {"labels", "weights", "means", "covariances", "class_counts"}
    assert gmm["arrays"]["means"][1] == 32
    # evaluate_fn scored the initial arrays and the server classifier after every round
    assert len(synthetic["central_accuracy"]) == 3
    assert synthetic["central_accuracy"][1:] != synthetic["central_accuracy"][:1] * 2
    # the clients learnt from the user's DataLoaders (chance is 0.1)
    assert synthetic["client_accuracy"] > 0.3 and gmm["client_accuracy"] > 0.3
