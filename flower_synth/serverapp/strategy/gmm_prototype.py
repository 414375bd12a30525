"""GMM prototypes (GFPL-style) as a Message-API Flower ``Strategy``."""

from __future__ import annotations

from typing import Unpack

from flower_synth.exchange.options import split_options
from flower_synth.prototypes.exchange import GMMPrototypeExchange, GMMPrototypeOptions
from flower_synth.serverapp.strategy.model_free import MessageSampling, ModelFreeStrategy


class GMMPrototypeStrategyOptions(GMMPrototypeOptions, MessageSampling):
    """The keyword arguments of :class:`GMMPrototypeStrategy`."""


class GMMPrototypeStrategy(ModelFreeStrategy):
    """Federated prototype learning with Gaussian-mixture prototypes fused by
    Bhattacharyya distance, for ``ServerApp`` projects with ``@app.main()``.

    The algorithm and its options (``num_classes``, ``feature_dim``, ``covariance``,
    ``tau``, ``max_components``, ...) are those of
    :class:`~flower_synth.prototypes.exchange.GMMPrototypeExchange`; sampling and
    aggregation options as in
    :class:`~flower_synth.serverapp.strategy.model_free.ModelFreeStrategy`.
    """

    exchange: GMMPrototypeExchange

    def __init__(self, **options: Unpack[GMMPrototypeStrategyOptions]) -> None:
        algorithm, sampling = split_options(options, GMMPrototypeOptions)
        super().__init__(GMMPrototypeExchange(**algorithm), **sampling)
