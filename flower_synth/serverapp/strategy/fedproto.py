"""FedProto (Tan et al., AAAI 2022) as a Message-API Flower ``Strategy``."""

from __future__ import annotations

from typing import Unpack

from flower_synth.exchange.options import split_options
from flower_synth.prototypes.exchange import FedProtoExchange, FedProtoOptions
from flower_synth.serverapp.strategy.model_free import MessageSampling, ModelFreeStrategy


class FedProtoStrategyOptions(FedProtoOptions, MessageSampling):
    """The keyword arguments of :class:`FedProtoStrategy`."""


class FedProtoStrategy(ModelFreeStrategy):
    """Federated prototype learning with one mean feature per class, for
    ``ServerApp`` projects with ``@app.main()``.

    The algorithm and its options (``num_classes``, ``feature_dim``, ``dtype``) are those
    of :class:`~flower_synth.prototypes.exchange.FedProtoExchange`; sampling and
    aggregation options as in
    :class:`~flower_synth.serverapp.strategy.model_free.ModelFreeStrategy`.
    """

    exchange: FedProtoExchange

    def __init__(self, **options: Unpack[FedProtoStrategyOptions]) -> None:
        algorithm, sampling = split_options(options, FedProtoOptions)
        super().__init__(FedProtoExchange(**algorithm), **sampling)
