"""FedProto (Tan et al., AAAI 2022) as a legacy Flower ``Strategy``."""

from __future__ import annotations

from typing import Unpack

from flower_synth.exchange.options import split_options
from flower_synth.prototypes.exchange import FedProtoExchange, FedProtoOptions
from flower_synth.strategies.model_free import LegacySampling, ModelFreeStrategy


class FedProtoStrategyOptions(FedProtoOptions, LegacySampling):
    """The keyword arguments of :class:`FedProtoStrategy`."""


class FedProtoStrategy(ModelFreeStrategy):
    """Federated prototype learning with one mean feature per class, for
    ``ServerApp(server_fn=...)`` projects.

    The algorithm and its options (``num_classes``, ``feature_dim``, ``dtype``) are those
    of :class:`~flower_synth.prototypes.exchange.FedProtoExchange`; sampling and
    aggregation options as in :class:`~flower_synth.strategies.model_free.ModelFreeStrategy`.
    """

    exchange: FedProtoExchange

    def __init__(self, **options: Unpack[FedProtoStrategyOptions]) -> None:
        algorithm, sampling = split_options(options, FedProtoOptions)
        super().__init__(FedProtoExchange(**algorithm), **sampling)
