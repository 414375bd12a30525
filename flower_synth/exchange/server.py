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
import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from logging import WARNING
from typing import Any, Generic, TypeVar

import numpy as np
from flwr.common import Scalar
from flwr.common.logger import log

from flower_synth.exchange.checkpoint import State
from flower_synth.wire.client_metrics import (
    check_report,
    is_integer,
)
from flower_synth.wire.payload import PayloadError

Decoded = TypeVar("Decoded")
Result = TypeVar("Result")
Instructions = dict[str, tuple[list[np.ndarray], dict[str, Scalar]]]


NPY_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}
HEADER_ALLOWANCE = 4096  # bytes of array headers a payload may carry besides its data
MAX_PARTITIONS = 2**31 - 1


@dataclass(frozen=True)
class Reply:
    """What one client sent back from training, as plain values: its node's id, its
    arrays, the size of its training data and its metrics.

    Validated on construction, the one place every training reply of either Flower API
    passes: its count and metrics through
    :func:`~flower_synth.wire.client_metrics.check_report` (a count outside
    ``[0, MAX_EXAMPLES]``, a metric that is not one finite number in its documented
    range is malformed). Raises :class:`~flower_synth.wire.payload.PayloadError` naming
    the problem.
    """

    node_id: str
    arrays: list[np.ndarray]
    num_examples: int
    metrics: Mapping[str, Scalar]

    def __post_init__(self) -> None:
        check_report(self.num_examples, self.metrics)


def reported_partition(metrics: Mapping[str, Scalar], num_partitions: int | None) -> int | None:
    """The ``partition_id`` a client reports (None if it reports none).

    Raises:
        PayloadError: if it is not an integer in ``[0, num_partitions)`` (``num_partitions``
            None: ``[0, MAX_PARTITIONS]``).
    """
    partition = metrics.get("partition_id")
    if partition is None:
        return None
    bound = MAX_PARTITIONS + 1 if num_partitions is None else num_partitions
    if not is_integer(partition) or not 0 <= partition < bound:
        raise PayloadError(
            f"metric partition_id must be an integer in [0, {bound}), got {partition!r}"
        )
    return partition


class Roster:
    """Stable identities of clients, and their departure.

    A client's identity is the partition it reports (``partition-<id>``), else its node
    (``node-<id>``): a client that rejoins under a new node id keeps its identity, so
    what the server keeps for it is replaced, never duplicated. A partition belongs to
    the node that first claimed it: another node's claim is refused
    (:meth:`check_claim`) while that node is connected (:meth:`observe`); once it is
    gone (a SuperNode restarted under a new id), the new node takes the partition over.
    Without ``handover`` a partition never changes hands: the first node whose claim
    was accepted keeps it for the whole run, connected or not, departed or not. That
    is the rule for deployments with SuperNode authentication, where the SuperLink
    gives a node the id of its registered public key: a SuperNode restarted with its
    key comes back under its id, and a node with another key cannot take its
    partition while it is away.
    An identity that was asked to train and did not answer in ``max_missed_rounds``
    rounds in a row is dropped (None: never); clients not sampled miss nothing.
    """

    def __init__(self, max_missed_rounds: int | None = None, handover: bool = True) -> None:
        if max_missed_rounds is not None and max_missed_rounds < 1:
            raise ValueError(f"max_missed_rounds must be >= 1 or None, got {max_missed_rounds}")
        self.max_missed_rounds = max_missed_rounds
        self.handover = handover
        self.owners: dict[str, str] = {}  # without handover: each partition's first node
        self.identity_of_node: dict[str, str] = {}
        self.partition_of: dict[str, int] = {}
        self.missed: dict[str, int] = {}
        self.connected: set[str] | None = None  # None: not told, every holder counts
        self.claims: dict[str, str] = {}  # this round's first claim of each identity

    def observe(self, connected: Sequence[str]) -> None:
        """A new round: the nodes connected now (the adapters pass Flower's)."""
        self.connected = set(connected)
        self.claims = {}

    def check_claim(self, node_id: str, partition_id: int | None) -> None:
        """Accept ``node_id``'s claim of ``partition_id`` for this round, or raise
        :class:`~flower_synth.wire.payload.PayloadError` if another connected node
        holds that partition (or claimed it first this round)."""
        if partition_id is None:
            return
        key = f"partition-{partition_id}"
        owner = self.owners.get(key, node_id)
        if owner != node_id:
            raise PayloadError(
                f"node {node_id} claims partition {partition_id}, which belongs to node "
                f"{owner} for the whole run (partition-handover is off)"
            )
        holders = {n for n, k in self.identity_of_node.items() if k == key}
        holders |= {self.claims[key]} if key in self.claims else set()
        for holder in sorted(holders - {node_id}):
            if self.connected is None or holder in self.connected:
                raise PayloadError(
                    f"node {node_id} claims partition {partition_id}, which node {holder} "
                    f"holds; refused while that node is connected"
                )
        self.claims[key] = node_id

    def key_of(self, node_id: str) -> str:
        """The identity of ``node_id``: the partition it last reported, else the node."""
        return self.identity_of_node.get(node_id, f"node-{node_id}")

    def identify(self, node_id: str, partition_id: int | None) -> tuple[str, str | None]:
        """Record that ``node_id`` is ``partition_id``; returns its identity and the
        identity it had before under this node, if that was another (now merged)."""
        key = f"partition-{partition_id}" if partition_id is not None else f"node-{node_id}"
        previous = self.identity_of_node.get(node_id, f"node-{node_id}")
        for other in [n for n, k in self.identity_of_node.items() if k == key and n != node_id]:
            del self.identity_of_node[other]  # a node gone: its partition changes hands
        self.identity_of_node[node_id] = key
        if partition_id is not None:
            self.partition_of[key] = partition_id
            if not self.handover:
                self.owners.setdefault(key, node_id)
        self.missed[key] = 0
        return key, (previous if previous != key else None)

    def departed(self, asked: Sequence[str], answered: Sequence[str]) -> list[str]:
        """Identities of the ``asked`` nodes that did not answer and have now missed
        ``max_missed_rounds`` rounds in a row; they are forgotten."""
        if self.max_missed_rounds is None:
            return []
        gone = []
        for node in set(asked) - set(answered):
            key = self.key_of(node)
            self.missed[key] = self.missed.get(key, 0) + 1
            if self.missed[key] >= self.max_missed_rounds:
                gone.append(key)
                self.forget(key)
        return gone

    def forget(self, key: str) -> None:
        """Drop an identity (and the nodes that carried it)."""
        self.partition_of.pop(key, None)
        self.missed.pop(key, None)
        for node in [n for n, k in self.identity_of_node.items() if k == key]:
            del self.identity_of_node[node]

    def state(self) -> State:
        """Identities, partitions, missed rounds and owners (for a checkpoint)."""
        meta = {
            "identity_of_node": dict(self.identity_of_node),
            "partition_of": dict(self.partition_of),
            "missed": dict(self.missed),
            "owners": dict(self.owners),
        }
        return State(meta=meta)

    def load_state(self, state: State) -> None:
        """Continue from :meth:`state`."""
        self.identity_of_node = dict(state.meta.get("identity_of_node", {}))
        self.partition_of = {k: int(v) for k, v in state.meta.get("partition_of", {}).items()}
        self.missed = {k: int(v) for k, v in state.meta.get("missed", {}).items()}
        self.owners = dict(state.meta.get("owners", {}))


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

    @abc.abstractmethod
    def max_payload_bytes(self, node_id: str) -> int:
        """The most serialised bytes a reply of ``node_id`` may carry; a larger one is
        rejected before any of it is decoded."""

    def evaluate(self, server_round: int) -> tuple[float, dict[str, Scalar]] | None:
        """Server-side evaluation of what the strategy holds (none by default)."""
        return None

    def global_arrays(self) -> dict[str, np.ndarray] | None:
        """What the strategy offers as its global model, as named arrays (the server
        classifier's weights, the fused prototypes); None where it has none yet. The
        adapters return it as the round's aggregated ``ArrayRecord`` / ``Parameters``,
        so that Flower's ``Result.arrays`` and ``evaluate_fn`` see it."""
        return None

    def observe(self, connected: Sequence[str]) -> None:
        """A round starts with these nodes connected (the adapters call it before
        :meth:`instructions`); exchanges that keep identities pass it to their
        :class:`Roster`."""

    def describe(self) -> str:
        """One line naming the strategy and its main settings (for logs)."""
        return type(self).__name__

    def state(self) -> State:
        """What the exchange keeps between rounds (for a checkpoint; nothing by default)."""
        return State()

    def load_state(self, state: State) -> None:
        """Continue from :meth:`state` (a checkpoint of an earlier run)."""


def counts_in_evaluation(num_examples: object, metrics: Mapping[str, Scalar]) -> bool:
    """Whether a node's evaluation enters the round's figures, the same for both
    adapters: it scored a positive number of local test examples, or it reports a
    ``global_accuracy`` (a trained node without a local test split). A node that has not
    trained yet reports 0 examples and no global accuracy and is left out."""
    return (is_integer(num_examples) and int(num_examples) > 0) or "global_accuracy" in metrics


def check_tensors(tensors: Sequence[bytes]) -> None:
    """``PayloadError`` unless every serialised ``.npy`` tensor has a header that
    parses, a numeric dtype, and exactly the data bytes its shape announces: checked
    before deserialising, so a header announcing terabytes or a pickled object array is
    refused without allocating or unpickling anything."""
    for index, tensor in enumerate(tensors):
        handle = io.BytesIO(tensor)
        try:
            reader = NPY_HEADER_READERS[np.lib.format.read_magic(handle)]
            shape, _, dtype = reader(handle)
        except (ValueError, OSError, SyntaxError, KeyError, TypeError) as error:
            raise PayloadError(f"array {index} is not a .npy tensor ({error})") from None
        if dtype.hasobject or dtype.kind not in "biuf":
            raise PayloadError(f"array {index} has dtype {dtype}; only numbers are accepted")
        announced = math.prod(shape) * dtype.itemsize
        present = len(tensor) - handle.tell()
        if announced != present:
            raise PayloadError(
                f"array {index} announces {announced} bytes of data but carries {present}"
            )


def check_payload_size(node_id: str, serialized: int, limit: int) -> None:
    """``PayloadError`` if a reply's ``serialized`` bytes exceed its ``limit``: checked
    before anything is deserialised, so a client cannot make the server allocate what
    it announces."""
    if serialized > limit:
        raise PayloadError(
            f"node {node_id} sent {serialized} bytes; this strategy accepts at most {limit}"
        )


def screened(
    results: Sequence[Result], check: Callable[[Result], object], stage: str
) -> tuple[list[Result], list[Result]]:
    """The ``results`` that pass ``check`` (which raises on a bad one) and those that do
    not, each of the latter logged with the reason: a client's bad report is its own
    failure, left out of what ``stage`` aggregates."""
    passed, failed = [], []
    for result in results:
        try:
            check(result)
        except Exception as error:  # noqa: BLE001 - a client's bad reply never crashes the server
            failed.append(result)
            log(
                WARNING, "%s: rejected a client's reply: %s: %s", stage, type(error).__name__, error
            )
        else:
            passed.append(result)
    return passed, failed


def accept(
    results: Sequence[Result],
    to_reply: Callable[[Result], Reply],
    decode: Callable[[Reply], Decoded],
) -> tuple[list[Accepted[Decoded]], int]:
    """Turn every result (as a Flower API delivers it) into a :class:`Reply` and
    decode it; returns the accepted ones and how many were rejected.

    A result that fails either step, with any exception (arrays that do not
    deserialise, malformed metrics, a payload the exchange rejects), is that client's
    failure: it is logged with the reason and left out; the round goes on.
    """
    accepted, rejected = [], 0
    for result in results:
        try:
            reply = to_reply(result)
            accepted.append(Accepted(reply, decode(reply)))
        except Exception as error:  # noqa: BLE001 - a client's bad reply never crashes the server
            rejected += 1
            log(WARNING, "Rejected the reply of a client: %s: %s", type(error).__name__, error)
    return accepted, rejected
