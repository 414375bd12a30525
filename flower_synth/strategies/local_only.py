"""Local-only training as a legacy Flower ``Strategy``: the reference without any exchange."""

from __future__ import annotations

from typing import Unpack

from flower_synth.prototypes.exchange import LocalOnlyExchange
from flower_synth.strategies.model_free import LegacySampling, ModelFreeStrategy


class LocalOnlyStrategy(ModelFreeStrategy):
    """Every round, sampled clients train their own models on their own data; nothing
    is sent either way (:class:`~flower_synth.prototypes.exchange.LocalOnlyExchange`).
    Evaluation is the clients' own, as for the other strategies without a global model,
    so runs compare on the same figures. Options as in
    :class:`~flower_synth.strategies.model_free.ModelFreeStrategy`.
    """

    def __init__(self, **sampling: Unpack[LegacySampling]) -> None:
        super().__init__(LocalOnlyExchange(), **sampling)
