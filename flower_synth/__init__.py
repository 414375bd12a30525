"""flower-synth: federated learning without weight averaging, as a Flower library and app.

The public names are importable from here directly (each on first use, so that importing
a strategy does not import the torch models of the clients) as well as from their
Flower-shaped homes: the Message-API strategies from :mod:`flower_synth.serverapp.strategy`
(the legacy ``flwr.server.strategy`` ones from :mod:`flower_synth.strategies`), the
learners and ClientApp handlers from :mod:`flower_synth.clientapp` (the legacy
``NumPyClient`` ones from :mod:`flower_synth.clients`), a client's data from
:mod:`flower_synth.data`, local generative models from :mod:`flower_synth.generative`.
"""

from importlib import import_module
from importlib.metadata import version
from typing import Any

__version__ = version("flower-synth")  # single source: pyproject.toml

_HOMES = {
    "flower_synth.serverapp.strategy": (
        "FedProtoStrategy",
        "GMMPrototypeStrategy",
        "LocalOnlyStrategy",
        "MeteredStrategy",
        "ModelFreeStrategy",
        "SyntheticSampleStrategy",
    ),
    "flower_synth.clientapp": (
        "ClassifierTraining",
        "CleanModality",
        "CompositedModality",
        "FedAvgLearner",
        "FedProtoLearner",
        "GMMPrototypeLearner",
        "LocalOnlyLearner",
        "Modality",
        "SyntheticLearner",
        "SyntheticSampleHooks",
        "evaluate_reply",
        "learner_app",
        "message_config",
        "train_reply",
    ),
    "flower_synth.data": (
        "ClientData",
        "ImageDataset",
        "Normalization",
        "client_data_from_loaders",
    ),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    """A public name, imported from its home when first asked for."""
    if name in _HOME_OF:
        return getattr(import_module(_HOME_OF[name]), name)
    raise AttributeError(f"module 'flower_synth' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME_OF])


__all__ = ["__version__", *_HOME_OF]
