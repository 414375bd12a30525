"""Flower ``Strategy`` subclasses (server side), one per file."""

from flower_synth.strategies.metered import MeteredStrategy

__all__ = ["MeteredStrategy"]
