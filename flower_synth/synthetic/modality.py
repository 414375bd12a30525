"""How a synthetic-exchange client takes the pools it receives into its own modality."""

from __future__ import annotations

from typing import Protocol

from flwr.app import RecordDict

from flower_synth.wire.payload import SampleBatch
from flower_synth.wire.variables import CLEAN, Variables


class Modality(Protocol):
    """What a client's model has and sends, and how it takes received pools in.

    ``model_variables`` are the variables of the client's model (observed and latent),
    ``pool_variables`` those of the samples it sends (:mod:`flower_synth.wire.variables`).
    """

    model_variables: Variables
    pool_variables: Variables

    def adopt(
        self,
        received: SampleBatch,
        groups: list[tuple[Variables, slice]],
        state: RecordDict,
        seed: int,
    ) -> SampleBatch:
        """``received``, its rows carrying ``groups``' variables, as samples of the
        client's own modality (``state`` keeps what the client learns across rounds)."""
        ...


class CleanModality:
    """Clean items ``("c", "s")``: pools of clean items are taken as they are."""

    model_variables: Variables = CLEAN
    pool_variables: Variables = CLEAN

    def adopt(
        self,
        received: SampleBatch,
        groups: list[tuple[Variables, slice]],
        state: RecordDict,
        seed: int,
    ) -> SampleBatch:
        """``received`` unchanged."""
        return received
