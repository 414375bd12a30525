"""The server's algorithm of synthetic-sample exchange, free of Flower's APIs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, NotRequired, TypedDict

import numpy as np
from flwr.common import Scalar
from torch import nn

from flower_synth.exchange.checkpoint import State, Stateful
from flower_synth.exchange.server import (
    HEADER_ALLOWANCE,
    Accepted,
    ExchangeServer,
    Instructions,
    Reply,
    reported_partition,
)
from flower_synth.learning.normalization import Normalization
from flower_synth.synthetic.learned_trust import LearnedTrust
from flower_synth.synthetic.pools import SAMPLE_ALLOCATIONS, SyntheticPools
from flower_synth.synthetic.server_classifier import PooledClassifier, PoolLearner
from flower_synth.wire.deflate import check_compression
from flower_synth.wire.input_normalization import most_reported, reported_normalization
from flower_synth.wire.payload import (
    PayloadError,
    WireBatch,
    compressed,
    max_payload_bytes,
    validate_wire,
)
from flower_synth.wire.variables import (
    CLEAN,
    Variables,
    check_model_has,
    describe_groups,
    pool_variables,
    variables_code,
    variables_of_code,
)

PoolCallback = Callable[[int, dict[str, WireBatch], dict[str, Mapping[str, Scalar]]], None]


class ClientPool(NamedTuple):
    """A reply as the server keeps it: the partition its client reports, its samples,
    the variables they carry, the variables the client's model has and how that
    model's inputs are normalised (None: not reported)."""

    partition: int | None
    batch: WireBatch
    variables: Variables = CLEAN
    model_variables: Variables = CLEAN
    normalization: Normalization | None = None


class SyntheticOptions(TypedDict):
    """The algorithm's settings, shared by both strategy classes (see
    :class:`SyntheticExchange`)."""

    sample_shape: tuple[int, ...]
    num_classes: int
    samples_per_client: NotRequired[int]
    sample_ratio: NotRequired[float]
    download_budget: NotRequired[int]
    download_ratio: NotRequired[float]
    trust: NotRequired[str | np.ndarray | LearnedTrust]
    self_trust: NotRequired[float]
    sample_dtype: NotRequired[str]
    sample_allocation: NotRequired[str]
    soft_label_top_k: NotRequired[int]
    compression: NotRequired[str]
    pool_max_age: NotRequired[int | None]
    pool_age_decay: NotRequired[float]
    server_classifier: NotRequired[PoolLearner | nn.Module | None]
    on_pools: NotRequired[PoolCallback | None]
    seed: NotRequired[int]
    num_partitions: NotRequired[int | None]
    max_missed_rounds: NotRequired[int | None]
    partition_handover: NotRequired[bool]
    total_examples: NotRequired[int | None]


class SyntheticExchange(ExchangeServer[ClientPool]):
    """Synthetic-sample exchange (Schlesinger & Flach, 2025), the server's part.

    It keeps the latest pool of synthetic samples of every client
    (:class:`~flower_synth.synthetic.pools.SyntheticPools`, keyed by the partition id a
    client reports) and, each round, sends every sampled client a mixture of the
    *other* clients' pools, drawn by source in proportion to the trust weights ``a_ij``,
    soft labels included, with ``self_trust`` (``a_ii``) and ``num_samples`` in its
    config.

    What a round costs a client does not grow with the federation: by default a client
    generates ``sample_ratio`` times its training-set size in samples, at most
    ``samples_per_client`` (``sample_allocation="ratio"``: the config carries the cap as
    ``num_samples`` and the ratio as ``sample_ratio``), and receives at most
    ``download_ratio`` times its training-set size, at most ``download_budget``; pools
    older than ``pool_max_age`` rounds are no longer sent. Payloads travel deflated
    (``compression``). Every payload is validated
    (:func:`~flower_synth.wire.payload.validate_wire`: arrays, dtypes, shapes, labels,
    values, soft labels, at most the samples asked for). The accepted pools of a round
    go to ``server_classifier`` (a
    :class:`~flower_synth.synthetic.server_classifier.PoolLearner`, e.g.
    :class:`~flower_synth.synthetic.server_classifier.PooledClassifier`), whose
    evaluation is the strategy's server-side evaluation.

    Clients on different modalities share the exchange (:mod:`flower_synth.wire.variables`):
    a client says which variables its pool carries and its model has (metrics
    ``pool_variables`` and ``model_variables``,
    :func:`~flower_synth.wire.variables.variables_code`; both ``(c, s)`` when it says nothing),
    receives only pools whose variables its model has, with config ``pool_variables``
    naming its rows' variables, and the server classifier learns from ``("c", "s")``
    pools only.

    Args:
        sample_shape: shape of one sample, e.g. ``(1, 28, 28)``.
        num_classes: labels must lie in ``[0, num_classes)``.
        samples_per_client: samples asked of a client per round: at most (``"ratio"``
            and ``"equal"`` allocation) or on average (``"size"``).
        sample_ratio: with ``"ratio"`` allocation, samples per example of the client's
            training set.
        download_budget: samples sent to a client per round at most; 0: no fixed cap.
        download_ratio: samples sent to a client per round at most, per example of its
            training set; 0: no such cap (with ``download_budget`` 0, as many as the
            other pools hold together).
        trust: ``"uniform"``, ``"size"``, ``"learned"`` (or a
            :class:`~flower_synth.synthetic.learned_trust.LearnedTrust`: every source's
            weight in the downloads and in the server classifier's samples learnt
            each round from how its pool agrees with the others') or an explicit
            row-stochastic matrix indexed by partition id (see
            :class:`~flower_synth.synthetic.pools.SyntheticPools`).
        self_trust: ``a_ii`` for ``"uniform"``, ``"size"`` and ``"learned"``.
        sample_dtype: wire format of what the server sends, ``"uint8"`` or ``"float16"``.
        sample_allocation: ``"ratio"`` (``sample_ratio`` of the client's own
            training-set size, capped), ``"size"`` (a client's share of
            ``samples_per_client`` times the sampled clients follows its training-set
            size) or ``"equal"`` (``samples_per_client`` each).
        soft_label_top_k: send only the top ``k`` soft labels per sample (0: all).
        compression: ``"deflate"`` or ``"none"``: how downloads travel (replies are
            taken either way).
        pool_max_age: rounds a pool is sent in after the round it was made (None:
            until its client replaces it or departs).
        pool_age_decay: factor on a pool's download weight per round of its age.
        server_classifier: learns from each round's pools; its evaluation is the
            strategy's and its weights are the strategy's ``Result.arrays``. A plain
            torch module (your model) is wrapped in a
            :class:`~flower_synth.synthetic.server_classifier.PooledClassifier` with
            ``num_classes`` and no test set of its own: score it with ``evaluate_fn``.
        on_pools: called after every round with the pools and the accepted clients'
            fit metrics, both keyed by identity.
        seed: seeds which samples are drawn for each client.
        num_partitions: reported partition ids must lie below it (None: any 32-bit id).
        max_missed_rounds: drop the pool of a client asked to train that gives no valid
            answer this many rounds in a row (None: never).
        partition_handover: as :class:`~flower_synth.synthetic.pools.SyntheticPools`
            takes it (False with SuperNode authentication).
        total_examples: the training examples of the whole federation, where the
            server knows them: a client claiming more is refused, and sizes weigh as
            :class:`~flower_synth.synthetic.pools.SyntheticPools` bounds them.
    """

    def __init__(
        self,
        sample_shape: tuple[int, ...],
        num_classes: int,
        *,
        samples_per_client: int = 1000,
        sample_ratio: float = 0.2,
        download_budget: int = 3000,
        download_ratio: float = 0.6,
        trust: str | np.ndarray | LearnedTrust = "uniform",
        self_trust: float = 0.5,
        sample_dtype: str = "uint8",
        sample_allocation: str = "ratio",
        soft_label_top_k: int = 0,
        compression: str = "deflate",
        pool_max_age: int | None = 20,
        pool_age_decay: float = 1.0,
        server_classifier: PoolLearner | nn.Module | None = None,
        on_pools: PoolCallback | None = None,
        seed: int = 0,
        num_partitions: int | None = None,
        max_missed_rounds: int | None = None,
        partition_handover: bool = True,
        total_examples: int | None = None,
    ) -> None:
        if samples_per_client < 1:
            raise ValueError(f"samples_per_client must be >= 1, got {samples_per_client}")
        if sample_allocation not in SAMPLE_ALLOCATIONS:
            raise ValueError(
                f"sample_allocation must be one of {SAMPLE_ALLOCATIONS}, got {sample_allocation!r}"
            )
        if sample_allocation == "ratio" and not 0 < sample_ratio < float("inf"):
            raise ValueError(f"sample_ratio must be a finite number > 0, got {sample_ratio}")
        check_compression(compression)
        self.pools = SyntheticPools(
            sample_shape,
            trust,
            self_trust,
            download_budget,
            seed,
            max_missed_rounds,
            download_ratio=download_ratio,
            max_age=pool_max_age,
            age_decay=pool_age_decay,
            partition_handover=partition_handover,
            total_examples=total_examples,
        )
        self.num_partitions = num_partitions
        self.num_classes = num_classes
        self.samples_per_client = samples_per_client
        self.sample_ratio = sample_ratio
        self.compression = compression
        self.sample_dtype = sample_dtype
        self.sample_allocation = sample_allocation
        self.soft_label_top_k = soft_label_top_k
        if isinstance(server_classifier, nn.Module):
            server_classifier = PooledClassifier(server_classifier, num_classes=num_classes)
        self.server_classifier = server_classifier
        self.on_pools = on_pools
        self.seed = seed
        self.requested: dict[str, int] = {}

    def describe(self) -> str:
        """The strategy's main settings."""
        return (
            f"synthetic-sample exchange (samples_per_client={self.samples_per_client}, "
            f"sample_allocation={self.sample_allocation!r}, sample_ratio={self.sample_ratio}, "
            f"download_budget={self.pools.download_budget}, "
            f"download_ratio={self.pools.download_ratio}, trust={self.pools.trust!r})"
        )

    def instructions(self, server_round: int, node_ids: Sequence[str]) -> Instructions:
        """Every node's download of the others' pools, its ``self_trust`` and
        ``num_samples`` (and ``sample_ratio`` with ``"ratio"`` allocation)."""
        self.requested = self.pools.sample_counts(
            node_ids, self.samples_per_client, self.sample_allocation
        )
        instructions: Instructions = {}
        for node in node_ids:
            batch, self_trust, groups = self.pools.download_for(node, server_round)
            arrays = []
            if len(batch):
                arrays = batch.converted(self.sample_dtype).arrays(self.soft_label_top_k)
            config: dict[str, Scalar] = {
                "self_trust": self_trust,
                "num_samples": self.requested[node],
            }
            if any(variables != CLEAN for variables, _ in groups):
                config["pool_variables"] = describe_groups(groups)
            if self.sample_allocation == "ratio":
                config["sample_ratio"] = self.sample_ratio
            instructions[node] = (compressed(arrays, self.compression), config)
        return instructions

    def observe(self, connected: Sequence[str]) -> None:
        """Tell the pools' roster which nodes are connected (a partition's owner)."""
        self.pools.roster.observe(connected)

    def max_payload_bytes(self, node_id: str) -> int:
        """The most bytes a client's reply may carry: the samples it was asked for as
        float16 with full float16 soft labels and int32 labels, plus headers (deflate
        can only shrink such a payload, or grow it by a few bytes)."""
        cap = self.requested.get(node_id, self.samples_per_client)
        data = max_payload_bytes(cap, self.pools.sample_shape, self.num_classes)
        return data + HEADER_ALLOWANCE

    def decode(self, reply: Reply) -> ClientPool:
        """The client's samples (at most what it was asked for), the partition id it
        reports and the variables of its pool and model (a pool its own model lacks is
        refused)."""
        cap = self.requested.get(reply.node_id, self.samples_per_client)
        shape = self.pools.sample_shape
        total = self.pools.total_examples
        if total is not None and reply.num_examples > total:
            raise PayloadError(
                f"claims {reply.num_examples} training examples, more than the {total} "
                "the whole federation holds"
            )
        batch = validate_wire(reply.arrays, shape, self.num_classes, cap)
        partition = reported_partition(reply.metrics, self.num_partitions)
        trust = self.pools.trust
        if isinstance(trust, np.ndarray) and (partition is None or partition >= len(trust)):
            raise PayloadError(
                f"an explicit trust matrix needs metric partition_id in "
                f"[0, {len(trust)}), got {partition!r}"
            )
        metrics = reply.metrics
        code = metrics.get("pool_variables", variables_code(CLEAN))
        variables = pool_variables(variables_of_code(code, "pool_variables"))
        model = variables_of_code(metrics.get("model_variables", code), "model_variables")
        check_model_has(variables, model, "its own client")
        normalization = reported_normalization(metrics, shape[0])
        self.pools.roster.check_claim(reply.node_id, partition)
        return ClientPool(partition, batch, variables, model, normalization)

    def aggregate(
        self, server_round: int, accepted: Sequence[Accepted[ClientPool]]
    ) -> dict[str, Any]:
        """Keep every accepted batch as its client's pool and let the server classifier
        learn from them (in the order of the clients' identities, so a run does not
        depend on the order replies arrive in); returns the pools' figures and the
        classifier's metrics."""
        departed = self.pools.drop_departed(
            list(self.requested), [item.reply.node_id for item in accepted]
        )
        arrived, client_metrics = {}, {}
        for item in accepted:
            partition, batch, variables, model, _ = item.decoded
            reply = item.reply
            key = self.pools.store(
                reply.node_id,
                partition,
                batch,
                reply.num_examples,
                server_round,
                variables,
                model,
            )
            arrived[key] = batch
            client_metrics[key] = reply.metrics
        expired = self.pools.expire(server_round)
        agreement = self.pools.learn_trust(self.num_classes)
        ages = list(self.pools.ages(server_round).values()) or [0]
        counts = self.pools.label_counts(self.num_classes)
        shares = counts / max(int(counts.sum()), 1)
        metrics: dict[str, Any] = {
            "departed_clients": len(departed),
            "expired_pools": len(expired),
            "pool_age_mean": float(np.mean(ages)),
            "pool_age_max": int(max(ages)),
            "pool_clients": len(self.pools.pools),
            "pool_samples": int(counts.sum()),
            "pool_class_share_min": float(shares.min()),
            "pool_class_share_max": float(shares.max()),
        }
        if self.pools.learned is not None:
            metrics |= self.trust_metrics(agreement)
        if isinstance(self.server_classifier, PooledClassifier):
            reports = [item.decoded.normalization for item in accepted]
            self.server_classifier.follow(most_reported(reports))
        if self.server_classifier is not None:
            clean = [key for key in sorted(arrived) if self.pools.variables_of(key) == CLEAN]
            batches = [self.trusted_part(key, arrived[key], server_round) for key in clean]
            metrics |= self.server_classifier.learn(server_round, batches)
        if self.on_pools is not None:
            self.on_pools(server_round, dict(self.pools.pools), client_metrics)
        return metrics

    def trusted_part(self, key: str, batch: WireBatch, server_round: int) -> WireBatch:
        """What the server classifier learns of the pool ``batch`` of ``key``: all of
        it, or with learned trust a random share the size of the source's weight."""
        weight = self.pools.learned_weight(key)
        if weight >= 1.0:
            return batch
        rng = np.random.default_rng([self.seed, server_round, len(batch)])
        kept = rng.choice(len(batch), size=round(weight * len(batch)), replace=False)
        return batch.take(np.sort(kept))

    def trust_metrics(self, agreement: Mapping[str, float]) -> dict[str, Scalar]:
        """The learned weights' least and mean over the pools held, how many sources
        weigh less than half, and the least and median agreement of this round."""
        weights = [self.pools.learned_weight(key) for key in self.pools.pools] or [1.0]
        metrics: dict[str, Scalar] = {
            "learned_trust_min": float(min(weights)),
            "learned_trust_mean": float(np.mean(weights)),
            "distrusted_sources": sum(weight < 0.5 for weight in weights),
        }
        if agreement:
            metrics["agreement_min"] = float(min(agreement.values()))
            metrics["agreement_median"] = float(np.median(list(agreement.values())))
        return metrics

    def global_arrays(self) -> dict[str, np.ndarray] | None:
        """The server classifier's weights (None without one or before it trained)."""
        if self.server_classifier is None:
            return None
        return self.server_classifier.global_arrays()

    def evaluate(self, server_round: int) -> tuple[float, dict[str, Scalar]] | None:
        """The server classifier's evaluation (None without one, or before it learnt)."""
        if self.server_classifier is None:
            return None
        return self.server_classifier.evaluate(server_round)

    def state(self) -> State:
        """The pools and their bookkeeping, and the server classifier's state where it
        has one (:class:`~flower_synth.exchange.checkpoint.Stateful`)."""
        state = State().with_part("pools", self.pools.state())
        if isinstance(self.server_classifier, Stateful):
            state = state.with_part("server_classifier", self.server_classifier.state())
        return state

    def load_state(self, state: State) -> None:
        """Continue from :meth:`state`."""
        self.pools.load_state(state.part("pools"))
        if isinstance(self.server_classifier, Stateful) and state.has_part("server_classifier"):
            self.server_classifier.load_state(state.part("server_classifier"))
