"""Flower ``Strategy`` subclasses (server side), one per file."""

from flower_synth.strategies.fedproto import FedProtoStrategy
from flower_synth.strategies.gmm_prototype import GMMPrototypeStrategy
from flower_synth.strategies.local_only import LocalOnlyStrategy
from flower_synth.strategies.metered import MeteredStrategy
from flower_synth.strategies.model_free import ModelFreeStrategy
from flower_synth.strategies.prototype_exchange import PrototypeExchangeStrategy
from flower_synth.strategies.synthetic import SyntheticSampleStrategy

__all__ = [
    "FedProtoStrategy",
    "GMMPrototypeStrategy",
    "LocalOnlyStrategy",
    "MeteredStrategy",
    "ModelFreeStrategy",
    "PrototypeExchangeStrategy",
    "SyntheticSampleStrategy",
]
