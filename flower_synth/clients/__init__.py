"""Flower ``NumPyClient`` subclasses (client side)."""

from flower_synth.clients.fedavg_client import FedAvgClient

__all__ = ["FedAvgClient"]
