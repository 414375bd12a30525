"""Synthetic-sample exchange as a Message-API Flower ``Strategy``: no weights travel,
clients trade generated samples."""

from __future__ import annotations

from typing import Unpack

from flower_synth.exchange.options import split_options
from flower_synth.serverapp.strategy.model_free import MessageSampling, ModelFreeStrategy
from flower_synth.synthetic.server import SyntheticExchange, SyntheticOptions


class SyntheticStrategyOptions(SyntheticOptions, MessageSampling):
    """The keyword arguments of :class:`SyntheticSampleStrategy`."""


class SyntheticSampleStrategy(ModelFreeStrategy):
    """Federated learning by exchanging synthetic samples (Schlesinger & Flach, 2025),
    for ``ServerApp`` projects with ``@app.main()``.

    The algorithm and its options (``sample_shape``, ``num_classes``,
    ``samples_per_client``, ``download_budget``, ``trust``, ``self_trust``,
    ``server_classifier``, ...) are those of
    :class:`~flower_synth.synthetic.server.SyntheticExchange`; client sampling, config
    functions and metric aggregation are named as in flwr's Message-API ``FedAvg`` (see
    :class:`~flower_synth.serverapp.strategy.model_free.ModelFreeStrategy`).
    """

    exchange: SyntheticExchange

    def __init__(self, **options: Unpack[SyntheticStrategyOptions]) -> None:
        algorithm, sampling = split_options(options, SyntheticOptions)
        super().__init__(SyntheticExchange(**algorithm), **sampling)
