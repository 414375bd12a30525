"""Flower ``Strategy`` subclasses (server side), one per file."""

from flower_synth.strategies.metered import MeteredStrategy
from flower_synth.strategies.synthetic import SyntheticSampleStrategy

__all__ = ["MeteredStrategy", "SyntheticSampleStrategy"]
