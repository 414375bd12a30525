"""The server side of a strategy without a global model, free of Flower's APIs.

Every strategy here (synthetic-sample exchange, GMM prototypes, FedProto, local-only
training) is one :class:`ExchangeServer`: it says what each sampled client receives,
decodes and validates what clients send back, aggregates what it accepted, and may
evaluate something of its own. The legacy ``flwr.server.strategy.Strategy`` classes
(:mod:`flower_synth.strategies`) and the Message-API ones
(:mod:`flower_synth.serverapp.strategy`) are thin adapters over the same object.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from logging import WARNING
from typing import Any, Generic, TypeVar

import numpy as np
from flwr.common import Scalar
from flwr.common.logger import log

Decoded = TypeVar("Decoded")
Result = TypeVar("Result")
Instructions = dict[str, tuple[list[np.ndarray], dict[str, Scalar]]]


@dataclass(frozen=True)
class Reply:
    """What one client sent back from training, as plain values: its node's id, its
    arrays, the size of its training data and its metrics."""

    node_id: str
    arrays: list[np.ndarray]
    num_examples: int
    metrics: Mapping[str, Scalar]


@dataclass(frozen=True)
class Accepted(Generic[Decoded]):
    """A reply whose payload passed validation, with what it decoded to."""

    reply: Reply
    decoded: Decoded


class ExchangeServer(abc.ABC, Generic[Decoded]):
    """One strategy's server-side algorithm (see the module docstring)."""

    @abc.abstractmethod
    def instructions(self, server_round: int, node_ids: Sequence[str]) -> Instructions:
        """For every sampled node: the arrays it receives and its fit config entries."""

    @abc.abstractmethod
    def decode(self, reply: Reply) -> Decoded:
        """Validate and decode one reply; raise ``ValueError`` (e.g. ``PayloadError``)
        naming the problem if it is malformed."""

    @abc.abstractmethod
    def aggregate(self, server_round: int, accepted: Sequence[Accepted[Decoded]]) -> dict[str, Any]:
        """Take in the accepted replies of a round; return the round's metrics."""

    def evaluate(self, server_round: int) -> tuple[float, dict[str, Scalar]] | None:
        """Server-side evaluation of what the strategy holds (none by default)."""
        return None

    def describe(self) -> str:
        """One line naming the strategy and its main settings (for logs)."""
        return type(self).__name__


def accept(
    results: Sequence[Result],
    to_reply: Callable[[Result], Reply],
    decode: Callable[[Reply], Decoded],
) -> tuple[list[Accepted[Decoded]], int]:
    """Turn every result (as a Flower API delivers it) into a :class:`Reply` and
    decode it; returns the accepted ones and how many were rejected.

    A result that fails either step (``ValueError``: arrays that do not deserialise, a
    payload the exchange rejects) is that client's failure: it is logged with the
    reason and left out; the round goes on. Never raises for a ``ValueError``.
    """
    accepted, rejected = [], 0
    for result in results:
        try:
            reply = to_reply(result)
            accepted.append(Accepted(reply, decode(reply)))
        except ValueError as error:
            rejected += 1
            log(WARNING, "Rejected the reply of a client: %s", error)
    return accepted, rejected
