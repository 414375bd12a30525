"""The package's three floors: the library (flower_synth.*), the Flower App
(flower_synth.app) and the comparison bench (flower_synth.bench). Imports only go down."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT

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
