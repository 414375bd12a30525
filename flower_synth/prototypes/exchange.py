"""The server's algorithm of prototype exchange, free of Flower's APIs: keep every
client's latest per-class feature summary, fuse them, broadcast the fusion."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence
from logging import WARNING
from typing import Any, Generic, NotRequired, TypedDict, TypeVar

import numpy as np
from flwr.common import Scalar
from flwr.common.logger import log

from flower_synth.exchange.checkpoint import State
from flower_synth.exchange.server import (
    HEADER_ALLOWANCE,
    Accepted,
    ExchangeServer,
    Instructions,
    Reply,
    Roster,
    reported_partition,
)
from flower_synth.prototypes.fusion import Merges, fuse_mixtures
from flower_synth.prototypes.means import ClassPrototypes, aggregate_prototypes
from flower_synth.prototypes.mixtures import ClassMixtures
from flower_synth.prototypes.wire import (
    decode_mixtures,
    decode_prototypes,
    encode_mixtures,
    encode_prototypes,
)
from flower_synth.wire.client_metrics import SIZE_CAP, within_total
from flower_synth.wire.payload import PayloadError

Summary = TypeVar("Summary")
FUSION_TAU = 0.05  # Bhattacharyya distance per dimension below which components merge
GLOBAL = "global"  # the broadcast summary's name in a checkpoint (identities have a prefix)
# A summary whose feature scale (:meth:`PrototypeExchange.scale`) exceeds this many times
# the median of the other clients' is left out of the fusion: clients that train the
# same model on the same kind of data differ in feature scale by far less.
SCALE_LIMIT = 10.0


class PrototypeExchange(ExchangeServer[tuple[int | None, Summary]], Generic[Summary]):
    """Every sampled client receives the same global summary (nothing before the first
    fusion). Each accepted summary replaces its client's previous one (by identity: the
    partition it reports, else its node, :class:`~flower_synth.exchange.server.Roster`), and
    all stored summaries are fused again, so with partial participation clients not
    sampled this round still count with their last summary. Fusing nothing (no
    summary, or only empty ones) leaves no broadcast; a fused summary that the clients
    would reject (:meth:`decode_broadcast`) is not sent and the previous one stays.
    A client whose class counts exceed its training-set size is rejected, and in fusion
    no client's count of a class weighs more than ``SIZE_CAP`` times the median of the
    clients' total counts; where the server knows how many training examples the whole
    federation holds (``total_examples``), a client whose counts exceed them is
    rejected and in fusion the clients' totals together never exceed them, the largest
    claim getting what the others leave (:func:`~flower_synth.wire.client_metrics.within_total`):
    a client that claims 1,000x its data keeps about its real share, with two or
    three clients too. A summary whose feature scale (:meth:`scale`: its means'
    and spreads' sizes) exceeds ``SCALE_LIMIT`` times the median of the other stored
    summaries' is left out of the fusion while it does (counted as
    ``outlier_summaries``): with two or three clients too, one client's huge means or
    variances cannot steer the others' features.
    No model weights travel.

    Subclasses define :meth:`decode_summary`, :meth:`fuse`, :meth:`encode`,
    :meth:`decode_broadcast`, :meth:`with_counts` and :meth:`summary_metrics`.

    Args:
        num_partitions: reported partition ids must lie below it (None: any 32-bit id).
        max_missed_rounds: drop the summary of a client asked to train that gives no
            valid answer this many rounds in a row (None: never).
        partition_handover: whether a partition whose node is gone may be taken over
            by another node; False with SuperNode authentication, where a node's id is
            its key's (:class:`~flower_synth.exchange.server.Roster`).
        total_examples: the training examples of the whole federation, where the
            server knows them (a federation over one known dataset: the app passes its
            training-set size); None: unknown, counts are bounded by the median only.
    """

    ARRAY_NAMES: tuple[str, ...] = ()  # names of the arrays :meth:`encode` returns

    def __init__(
        self,
        num_partitions: int | None = None,
        max_missed_rounds: int | None = None,
        partition_handover: bool = True,
        total_examples: int | None = None,
    ) -> None:
        if total_examples is not None and total_examples < 1:
            raise ValueError(f"total_examples must be >= 1 or None, got {total_examples}")
        self.roster = Roster(max_missed_rounds, partition_handover)
        self.total_examples = total_examples
        self.num_partitions = num_partitions
        self.summaries: dict[str, Summary] = {}
        self.global_summary: Summary | None = None
        self.asked: list[str] = []

    @abc.abstractmethod
    def decode_summary(self, reply: Reply) -> Summary:
        """Validate and decode one client's summary (``PayloadError`` if malformed)."""

    @abc.abstractmethod
    def counts(self, summary: Summary) -> np.ndarray:
        """The summary's examples per class, ``(num_classes,)``."""

    @abc.abstractmethod
    def with_counts(self, summary: Summary, counts: np.ndarray) -> Summary:
        """The summary with other examples per class (for capped fusion weights)."""

    @abc.abstractmethod
    def fuse(self, summaries: Sequence[Summary]) -> Summary:
        """The global summary of the clients' (non-empty) summaries."""

    @abc.abstractmethod
    def encode(self, summary: Summary, dtype: str | None = None) -> list[np.ndarray]:
        """A summary as arrays to send, its floats as ``dtype`` (default: the
        strategy's broadcast dtype)."""

    @abc.abstractmethod
    def decode_broadcast(self, arrays: list[np.ndarray]) -> Summary:
        """Decode broadcast arrays as a client does (``PayloadError`` if it would
        reject them)."""

    def summary_metrics(self, summary: Summary) -> dict[str, Scalar]:
        """Figures about the fused summary recorded each round (none by default)."""
        return {}

    @abc.abstractmethod
    def scale(self, summary: Summary) -> float:
        """The size of a (non-empty) summary's features: the median over its
        components of the root mean square of their means (and spreads)."""

    def consensus(self, keys: Sequence[str]) -> list[str]:
        """The identities among ``keys`` whose summary's scale is within
        ``SCALE_LIMIT`` times the median of the others' (all of them with fewer than
        two)."""
        if len(keys) < 2:
            return list(keys)
        scales = {key: self.scale(self.summaries[key]) for key in keys}
        kept = []
        for key in keys:
            others = [value for other, value in scales.items() if other != key]
            if scales[key] <= SCALE_LIMIT * float(np.median(others)):
                kept.append(key)
        return kept

    def instructions(self, server_round: int, node_ids: Sequence[str]) -> Instructions:
        """The global summary (empty in round 1) for every node."""
        self.asked = list(node_ids)
        arrays = [] if self.global_summary is None else self.encode(self.global_summary)
        return {node: (arrays, {}) for node in node_ids}

    def max_payload_bytes(self, node_id: str) -> int:
        """Room for a summary of every class at the most components, in float32."""
        return self.max_summary_bytes() + HEADER_ALLOWANCE

    @abc.abstractmethod
    def max_summary_bytes(self) -> int:
        """The most data bytes of one client's summary."""

    def decode(self, reply: Reply) -> tuple[int | None, Summary]:
        """The partition the client reports and its validated summary, whose class
        counts may not exceed its training-set size."""
        partition = reported_partition(reply.metrics, self.num_partitions)
        summary = self.decode_summary(reply)
        claimed = int(self.counts(summary).sum())
        if self.total_examples is not None and claimed > self.total_examples:
            raise PayloadError(
                f"class counts sum to {claimed}, more than the {self.total_examples} "
                "training examples the whole federation holds"
            )
        if claimed > reply.num_examples:
            raise PayloadError(
                f"class counts sum to {int(self.counts(summary).sum())}, more than the "
                f"{reply.num_examples} training examples the client reports"
            )
        self.roster.check_claim(reply.node_id, partition)
        return partition, summary

    def observe(self, connected: Sequence[str]) -> None:
        """Tell the roster which nodes are connected (a partition's owner)."""
        self.roster.observe(connected)

    def aggregate(
        self, server_round: int, accepted: Sequence[Accepted[tuple[int | None, Summary]]]
    ) -> dict[str, Any]:
        """Store the accepted summaries and fuse all stored ones."""
        departed = self.roster.departed(self.asked, [item.reply.node_id for item in accepted])
        for key in departed:
            self.summaries.pop(key, None)
        for item in accepted:
            partition, summary = item.decoded
            key, previous = self.roster.identify(item.reply.node_id, partition)
            if previous is not None:
                self.summaries.pop(previous, None)
            self.summaries[key] = summary
        metrics: dict[str, Any] = {
            "summary_clients": len(self.summaries),
            "departed_clients": len(departed),
        }
        nonempty_keys = [key for key, summary in self.summaries.items() if len(summary)]
        kept = self.consensus(nonempty_keys)
        metrics["outlier_summaries"] = len(nonempty_keys) - len(kept)
        nonempty = [self.summaries[key] for key in kept]
        if not nonempty:
            return metrics
        fused = self.fuse(self.capped(nonempty))
        try:
            self.decode_broadcast(self.encode(fused))
        except PayloadError as error:
            log(WARNING, "Round %s: fused summary not broadcast: %s", server_round, error)
            return metrics | {"broadcast_rejected": 1}
        self.global_summary = fused
        return metrics | self.summary_metrics(fused)

    def global_arrays(self) -> dict[str, np.ndarray] | None:
        """The fused summary last broadcast, by name (:attr:`ARRAY_NAMES`), None before
        the first fusion."""
        if self.global_summary is None:
            return None
        return dict(zip(self.ARRAY_NAMES, self.encode(self.global_summary), strict=True))

    def state(self) -> State:
        """Every stored summary, the broadcast one and the identities, floats as
        float32 (for a checkpoint)."""
        state = State().with_part("roster", self.roster.state())
        kept = dict(self.summaries)
        if self.global_summary is not None:
            kept[GLOBAL] = self.global_summary
        for key, summary in kept.items():
            arrays = self.encode(summary, "float32")
            named = {str(index): array for index, array in enumerate(arrays)}
            state = state.with_part(f"summary:{key}", State(named, {"arrays": len(arrays)}))
        return state

    def load_state(self, state: State) -> None:
        """Continue from :meth:`state`."""
        self.roster.load_state(state.part("roster"))
        self.summaries, self.global_summary = {}, None
        for name in state.meta:
            if not name.startswith("summary:"):
                continue
            part = state.part(name)
            summary = self.decode_broadcast(
                [part.arrays[str(index)] for index in range(part.meta["arrays"])]
            )
            key = name.removeprefix("summary:")
            if key == GLOBAL:
                self.global_summary = summary
            else:
                self.summaries[key] = summary

    def capped(self, summaries: Sequence[Summary]) -> list[Summary]:
        """The summaries with their counts trimmed to ``total_examples`` together (where
        known; :func:`~flower_synth.wire.client_metrics.within_total`) and every class
        count capped at ``SIZE_CAP`` times the median of the clients' total counts, so no
        one client's claim outweighs the others'."""
        counts = np.stack([self.counts(s) for s in summaries]).astype(np.float64)
        totals = counts.sum(axis=1)
        if self.total_examples is not None:
            allowed = within_total(totals, self.total_examples)
            counts *= np.divide(allowed, totals, out=np.ones_like(totals), where=totals > 0)[
                :, None
            ]
            totals = counts.sum(axis=1)
        median = float(np.median(totals[totals > 0])) if (totals > 0).any() else 1.0
        cap = SIZE_CAP * max(median, 1.0)
        return [
            self.with_counts(s, np.minimum(c, cap).astype(np.int64))
            for s, c in zip(summaries, counts, strict=True)
        ]


class FedProtoOptions(TypedDict):
    """FedProto's settings, shared by both strategy classes."""

    num_classes: int
    feature_dim: int
    dtype: NotRequired[str]
    num_partitions: NotRequired[int | None]
    max_missed_rounds: NotRequired[int | None]
    partition_handover: NotRequired[bool]
    total_examples: NotRequired[int | None]


class FedProtoExchange(PrototypeExchange[ClassPrototypes]):
    ARRAY_NAMES = ("labels", "means", "counts")  # as encoded by encode_prototypes

    """FedProto (Tan et al., AAAI 2022): each client uploads ``[labels, means, counts]``;
    the global prototype of a class is the count-weighted mean of the clients'
    prototypes, broadcast to every client, which adds ``lambda * ||h - p_y||^2`` to its
    cross-entropy.

    Args:
        num_classes: labels must lie in ``[0, num_classes)``.
        feature_dim: width of the feature vectors.
        dtype: float format of the broadcast, ``"float16"`` or ``"float32"``.
    """

    def __init__(
        self,
        num_classes: int,
        feature_dim: int,
        dtype: str = "float16",
        num_partitions: int | None = None,
        max_missed_rounds: int | None = None,
        partition_handover: bool = True,
        total_examples: int | None = None,
    ) -> None:
        super().__init__(num_partitions, max_missed_rounds, partition_handover, total_examples)
        self.num_classes = num_classes
        self.feature_dim = feature_dim
        self.dtype = dtype

    def describe(self) -> str:
        """The strategy's main settings."""
        return f"FedProto (feature_dim={self.feature_dim}, dtype={self.dtype!r})"

    def decode_summary(self, reply: Reply) -> ClassPrototypes:
        """Validate one client's prototypes (:func:`~flower_synth.prototypes.decode_prototypes`)."""
        return decode_prototypes(reply.arrays, self.num_classes, self.feature_dim)

    def counts(self, summary: ClassPrototypes) -> np.ndarray:
        """Examples per class."""
        return np.bincount(summary.labels, weights=summary.counts, minlength=self.num_classes)

    def with_counts(self, summary: ClassPrototypes, counts: np.ndarray) -> ClassPrototypes:
        """The prototypes with ``counts[label]`` as their counts."""
        return ClassPrototypes(summary.labels, summary.means, counts[summary.labels])

    def scale(self, summary: ClassPrototypes) -> float:
        """The median root mean square of the prototypes."""
        return float(np.median(np.sqrt((summary.means.astype(np.float64) ** 2).mean(axis=1))))

    def decode_broadcast(self, arrays: list[np.ndarray]) -> ClassPrototypes:
        """Decode as a client does."""
        return decode_prototypes(arrays, self.num_classes, self.feature_dim)

    def max_summary_bytes(self) -> int:
        """A float32 mean and two int32 values per class."""
        return self.num_classes * (4 * self.feature_dim + 8)

    def fuse(self, summaries: Sequence[ClassPrototypes]) -> ClassPrototypes:
        """Count-weighted mean per class."""
        return aggregate_prototypes(summaries)

    def encode(self, summary: ClassPrototypes, dtype: str | None = None) -> list[np.ndarray]:
        """Prototypes in the wire format."""
        return encode_prototypes(summary, dtype or self.dtype)

    def summary_metrics(self, summary: ClassPrototypes) -> dict[str, Scalar]:
        """``global_classes``: classes that have a global prototype."""
        return {"global_classes": len(summary)}


class GMMPrototypeOptions(TypedDict):
    """GMM prototypes' settings, shared by both strategy classes."""

    num_classes: int
    feature_dim: int
    covariance: NotRequired[str]
    tau: NotRequired[float]
    max_components: NotRequired[int | None]
    max_client_components: NotRequired[int]
    dtype: NotRequired[str]
    feature_radius: NotRequired[float | None]
    num_partitions: NotRequired[int | None]
    max_missed_rounds: NotRequired[int | None]
    partition_handover: NotRequired[bool]
    total_examples: NotRequired[int | None]


class GMMPrototypeExchange(PrototypeExchange[ClassMixtures]):
    ARRAY_NAMES = ("labels", "weights", "means", "covariances", "class_counts")  # encode_mixtures

    """GMM prototypes (GFPL-style): each client uploads, per class, a Gaussian mixture
    of its features with the class count ``n_c`` (``[labels, weights, means,
    covariances, class_counts]``). Per class, the server pools all clients' components
    with mass ``n_c * pi_k`` and merges the closest pair by Bhattacharyya distance
    (moment matching) while that distance per dimension is below ``tau`` or more than
    ``max_components`` remain; the fused mixtures go back to every client, which draws
    pseudo-features from them to top up the classes it lacks.

    Args:
        num_classes: labels must lie in ``[0, num_classes)``.
        feature_dim: width of the feature vectors.
        covariance: ``"diag"`` (variance vectors) or ``"full"``; payloads of the other
            kind are rejected.
        tau: Bhattacharyya distance per feature dimension below which components
            merge (0: only the cap; see :func:`~flower_synth.prototypes.fuse_components`).
        max_components: at most this many fused components per class (None: no cap).
        max_client_components: payloads with more components in a class are rejected.
        dtype: float format of the broadcast, ``"float16"`` or ``"float32"``.
        feature_radius: the radius of the sphere the clients' features lie on (the
            app's ``feature-norm``: ``sqrt(feature_dim)``); components that no mixture
            of such features has, a mean outside the ball or variances summing to more
            than the radius squared, are refused (see
            :func:`~flower_synth.prototypes.decode_mixtures`). None: features anywhere.
    """

    def __init__(
        self,
        num_classes: int,
        feature_dim: int,
        covariance: str = "diag",
        tau: float = FUSION_TAU,
        max_components: int | None = 5,
        max_client_components: int = 32,
        dtype: str = "float16",
        feature_radius: float | None = None,
        num_partitions: int | None = None,
        max_missed_rounds: int | None = None,
        partition_handover: bool = True,
        total_examples: int | None = None,
    ) -> None:
        super().__init__(num_partitions, max_missed_rounds, partition_handover, total_examples)
        if feature_radius is not None and not 0 < feature_radius < float("inf"):
            raise ValueError(f"feature_radius must be a finite number > 0, got {feature_radius}")
        if covariance not in ("diag", "full"):
            raise ValueError(f"covariance must be 'diag' or 'full', got {covariance!r}")
        if tau < 0 or (max_components is not None and max_components < 1):
            raise ValueError("tau must be >= 0 and max_components >= 1 (or None)")
        self.num_classes = num_classes
        self.feature_dim = feature_dim
        self.covariance = covariance
        self.tau = tau
        self.max_components = max_components
        self.max_client_components = max_client_components
        self.dtype = dtype
        self.feature_radius = feature_radius
        self.last_merges = Merges()

    def describe(self) -> str:
        """The strategy's main settings."""
        return (
            f"GMM prototypes (tau={self.tau}, max_components={self.max_components}, "
            f"covariance={self.covariance!r})"
        )

    def decode_summary(self, reply: Reply) -> ClassMixtures:
        """Validate one client's mixtures (see :func:`~flower_synth.prototypes.decode_mixtures`)."""
        return decode_mixtures(
            reply.arrays,
            self.num_classes,
            self.feature_dim,
            self.covariance,
            self.max_client_components,
            self.feature_radius,
        )

    def counts(self, summary: ClassMixtures) -> np.ndarray:
        """Examples behind each class's mixture."""
        return summary.class_counts

    def with_counts(self, summary: ClassMixtures, counts: np.ndarray) -> ClassMixtures:
        """The mixtures with other class counts."""
        return dataclasses.replace(summary, class_counts=counts)

    def scale(self, summary: ClassMixtures) -> float:
        """The median over components of the larger of their means' and standard
        deviations' root mean squares."""
        means = summary.means.astype(np.float64)
        variances = (
            summary.covariances
            if summary.diagonal
            else np.diagonal(summary.covariances, axis1=1, axis2=2)
        ).astype(np.float64)
        spread = np.maximum((means**2).mean(axis=1), variances.mean(axis=1))
        return float(np.median(np.sqrt(spread)))

    def decode_broadcast(self, arrays: list[np.ndarray]) -> ClassMixtures:
        """Decode as a client does (no per-class component limit)."""
        return decode_mixtures(arrays, self.num_classes, self.feature_dim, self.covariance)

    def max_summary_bytes(self) -> int:
        """``max_client_components`` float32 components per class, and the counts."""
        covariance = self.feature_dim if self.covariance == "diag" else self.feature_dim**2
        per_component = 4 + 4 + 4 * self.feature_dim + 4 * covariance
        return self.num_classes * (self.max_client_components * per_component + 4)

    def fuse(self, summaries: Sequence[ClassMixtures]) -> ClassMixtures:
        """Bhattacharyya fusion per class (see :func:`~flower_synth.prototypes.fuse_mixtures`);
        the merges it made are kept in ``last_merges`` for :meth:`summary_metrics`."""
        fused, self.last_merges = fuse_mixtures(summaries, self.tau, self.max_components)
        return fused

    def encode(self, summary: ClassMixtures, dtype: str | None = None) -> list[np.ndarray]:
        """Mixtures in the wire format."""
        return encode_mixtures(summary, dtype or self.dtype)

    def summary_metrics(self, summary: ClassMixtures) -> dict[str, Scalar]:
        """``global_components`` and ``global_classes`` of the fused mixtures, and how
        many component pairs the last fusion merged by similarity (``merged_similar``)
        and only for the cap (``merged_capped``)."""
        return {
            "global_components": len(summary),
            "global_classes": int(np.unique(summary.labels).size),
            "merged_similar": self.last_merges.similar,
            "merged_capped": self.last_merges.capped,
        }


class LocalOnlyExchange(ExchangeServer[None]):
    """Local-only training, the reference without any exchange: sampled clients train
    their own models on their own data; nothing is sent either way (a non-empty
    payload is rejected)."""

    def describe(self) -> str:
        """The strategy's name."""
        return "local-only training"

    def instructions(self, server_round: int, node_ids: Sequence[str]) -> Instructions:
        """Nothing to send."""
        return {node: ([], {}) for node in node_ids}

    def max_payload_bytes(self, node_id: str) -> int:
        """Room for an empty payload's framing only."""
        return HEADER_ALLOWANCE

    def decode(self, reply: Reply) -> None:
        """Local-only clients send nothing; anything else is rejected."""
        if reply.arrays:
            raise PayloadError(f"local-only clients send nothing, got {len(reply.arrays)} arrays")

    def aggregate(self, server_round: int, accepted: Sequence[Accepted[None]]) -> dict[str, Any]:
        """Nothing to aggregate."""
        return {}
