"""The package's three floors: the library (flower_synth.*), the Flower App
(flower_synth.app) and the comparison bench (flower_synth.bench). Imports only go down."""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT
from flwr.cli.build import build_fab_from_disk
from flwr.common.constant import FAB_MAX_SIZE

PACKAGE = PROJECT_ROOT / "flower_synth"
FLOORS = {"library": 0, "app": 1, "bench": 2}


def floor_of(module: str) -> str:
    """The floor a dotted module name below flower_synth belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ("app", "bench") else "library"


def imports_of(path: Path) -> set[str]:
    """Every flower_synth module ``path`` imports (absolute imports only are used)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] == "flower_synth"}


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_imports_only_go_down(path: Path) -> None:
    module = ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
    own = FLOORS[floor_of(module)]
    upward = [name for name in imports_of(path) if FLOORS[floor_of(name)] > own]
    assert not upward, f"{module} ({floor_of(module)}) imports a higher floor: {upward}"


def test_every_floor_exists_and_names_its_flower_roles() -> None:
    for role in ("app/server_app.py", "app/client_app.py", "bench/cli.py"):
        assert (PACKAGE / role).is_file(), role
    assert len(MODULES) > 40  # the walk found the package


def test_the_package_root_holds_few_modules() -> None:
    assert len(list(PACKAGE.glob("*.py"))) <= 8


def test_the_library_floor_imports_none_of_the_extras() -> None:
    """Importing every strategy, client, learner and generator (both APIs) leaves the App's
    and the bench's dependencies unimported (tests/test_install.py checks it without them
    installed)."""
    code = (
        "import sys, flower_synth.serverapp.strategy, flower_synth.strategies, "
        "flower_synth.clientapp, flower_synth.clients, flower_synth.generative, flower_synth.data\n"
        "from flower_synth import SyntheticSampleStrategy, SyntheticLearner, Normalization\n"
        "print(' '.join(sorted(m for m in sys.modules if '.' not in m)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    imported = set(out.stdout.split())
    extras = {"datasets", "flwr_datasets", "omegaconf", "matplotlib", "torchvision", "ray"}
    assert not imported & extras


def test_a_missing_extra_is_named_with_the_install_command() -> None:
    from flower_synth.extras import require_extra

    with pytest.raises(ImportError, match=r"pip install 'flower-synth\[bench\]'"):
        require_extra("bench", "the bench", ("json", "no_such_module_here"))


def test_the_flower_app_bundle_holds_the_package_alone() -> None:
    """`flwr run` packs the project into a FAB (Flower refuses one over 10 MB): it must
    hold the package, not the committed results under docs/."""
    fab = build_fab_from_disk(PROJECT_ROOT)
    names = zipfile.ZipFile(io.BytesIO(fab)).namelist()
    assert {name.split("/")[0] for name in names} == {"flower_synth", "pyproject.toml", ".info"}
    assert "flower_synth/app/server_app.py" in names
    assert len(fab) < FAB_MAX_SIZE / 4
