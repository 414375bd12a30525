"""Legacy Flower ``Strategy`` classes (``flwr.server.strategy``), one per file, for
projects with ``ServerApp(server_fn=...)``; the Message-API ones are in
:mod:`flower_synth.serverapp.strategy`. Both adapt the same algorithms
(:mod:`flower_synth.exchange.server`)."""

from flower_synth.strategies.fedproto import FedProtoStrategy
from flower_synth.strategies.gmm_prototype import GMMPrototypeStrategy
from flower_synth.strategies.local_only import LocalOnlyStrategy
from flower_synth.strategies.metered import MeteredStrategy
from flower_synth.strategies.model_free import ModelFreeStrategy
from flower_synth.strategies.synthetic import SyntheticSampleStrategy

__all__ = [
    "FedProtoStrategy",
    "GMMPrototypeStrategy",
    "LocalOnlyStrategy",
    "MeteredStrategy",
    "ModelFreeStrategy",
    "SyntheticSampleStrategy",
]
