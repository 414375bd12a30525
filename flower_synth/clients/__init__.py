"""Flower ``NumPyClient`` subclasses (client side)."""

from flower_synth.clients.fedavg_client import FedAvgClient
from flower_synth.clients.synthetic_client import SyntheticSampleClient

__all__ = ["FedAvgClient", "SyntheticSampleClient"]
