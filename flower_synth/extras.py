"""The optional parts of the package and the extras that install what they need."""

from __future__ import annotations

from importlib.util import find_spec


def require_extra(extra: str, part: str, modules: tuple[str, ...]) -> None:
    """Raise an ``ImportError`` naming the extra to install when one of ``modules`` is
    missing, before a deep import fails with a bare ``No module named ...``."""
    missing = [module for module in modules if find_spec(module) is None]
    if missing:
        raise ImportError(
            f"{part} needs {', '.join(missing)}, which the library alone does not install: "
            f"pip install 'flower-synth[{extra}]'"
        )
