"""flower-synth: federated learning without weight averaging, as a Flower library and app.

The public names are importable from here directly (each imported on first use: ``import
flower_synth`` alone imports neither Flower nor torch) as well as from their
Flower-shaped homes: the Message-API strategies from :mod:`flower_synth.serverapp.strategy`
(the legacy ``flwr.server.strategy`` ones from :mod:`flower_synth.strategies`), the
learners and ClientApp handlers from :mod:`flower_synth.clientapp` (the legacy
``NumPyClient`` ones from :mod:`flower_synth.clients`), a client's data from
:mod:`flower_synth.data`, local generative models from :mod:`flower_synth.generative`,
differential privacy for them from :mod:`flower_synth.privacy`.
"""

from importlib import import_module
from importlib.metadata import version
from typing import Any

__version__ = version("flower-synth")  # single source: pyproject.toml

# Where the public names live: every name of a home's __all__ (None), or the ones given.
_HOMES: dict[str, tuple[str, ...] | None] = {
    "flower_synth.serverapp.strategy": None,
    "flower_synth.clientapp": None,
    "flower_synth.data": (
        "ClientData",
        "ImageDataset",
        "Normalization",
        "client_data_from_loaders",
    ),
    "flower_synth.privacy": None,
}


def _names_of(home: str) -> tuple[str, ...]:
    names = _HOMES[home]
    return tuple(import_module(home).__all__) if names is None else names


def __getattr__(name: str) -> Any:
    """A public name, imported from its home when first asked for (``__all__`` imports
    every home)."""
    if name == "__all__":
        return ["__version__", *(n for home in _HOMES for n in _names_of(home))]
    for home in _HOMES:
        if name in _names_of(home):
            return getattr(import_module(home), name)
    raise AttributeError(f"module 'flower_synth' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__getattr__("__all__")})
