"""flower-synth: federated learning without weight averaging, as a Flower app and library.

Strategies live in :mod:`flower_synth.strategies`, their clients in
:mod:`flower_synth.clients`, local generative models in :mod:`flower_synth.generative`.
"""

from importlib.metadata import version

__version__ = version("flower-synth")  # single source: pyproject.toml
