"""Message-API Flower strategies (``flwr.serverapp.strategy.Strategy``), one per file,
for projects whose ServerApp uses ``@app.main()`` and ``strategy.start(grid=...)``. The
legacy ones are in :mod:`flower_synth.strategies`; both adapt the same algorithms
(:mod:`flower_synth.exchange.server`)."""

from flower_synth.serverapp.strategy.fedproto import FedProtoStrategy
from flower_synth.serverapp.strategy.gmm_prototype import GMMPrototypeStrategy
from flower_synth.serverapp.strategy.local_only import LocalOnlyStrategy
from flower_synth.serverapp.strategy.metered import MeteredStrategy
from flower_synth.serverapp.strategy.model_free import ModelFreeStrategy
from flower_synth.serverapp.strategy.synthetic import SyntheticSampleStrategy

__all__ = [
    "FedProtoStrategy",
    "GMMPrototypeStrategy",
    "LocalOnlyStrategy",
    "MeteredStrategy",
    "ModelFreeStrategy",
    "SyntheticSampleStrategy",
]
