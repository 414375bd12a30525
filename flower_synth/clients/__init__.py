"""Flower ``NumPyClient`` subclasses (client side)."""

from flower_synth.clients.fedavg_client import FedAvgClient
from flower_synth.clients.fedproto_client import FedProtoClient
from flower_synth.clients.gmm_prototype_client import GMMPrototypeClient
from flower_synth.clients.local_only_client import LocalOnlyClient
from flower_synth.clients.prototype_client import PrototypeClient
from flower_synth.clients.synthetic_client import SyntheticSampleClient

__all__ = [
    "FedAvgClient",
    "FedProtoClient",
    "GMMPrototypeClient",
    "LocalOnlyClient",
    "PrototypeClient",
    "SyntheticSampleClient",
]
