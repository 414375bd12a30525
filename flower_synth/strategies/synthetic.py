"""Synthetic-sample exchange as a legacy Flower ``Strategy``: no weights travel,
clients trade generated samples."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from flwr.common import (
    FitIns,
    FitRes,
    Metrics,
    NDArrays,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
)
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy

from flower_synth.payload import PayloadError, SampleBatch, encode_samples, validate_payload
from flower_synth.strategies.model_free import ModelFreeStrategy
from flower_synth.synthetic.pools import SAMPLE_ALLOCATIONS, SyntheticPools
from flower_synth.synthetic.server_classifier import PoolLearner

PoolCallback = Callable[[int, dict[str, SampleBatch], dict[str, Metrics]], None]


def reported_partition(metrics: Metrics) -> int | None:
    """The ``partition_id`` a client reports, or None if it reports none.

    Raises:
        PayloadError: if it is not a non-negative integer.
    """
    partition = metrics.get("partition_id")
    if partition is None:
        return None
    if isinstance(partition, bool) or not isinstance(partition, int) or partition < 0:
        raise PayloadError(f"metric partition_id must be an integer >= 0, got {partition!r}")
    return partition


class SyntheticSampleStrategy(ModelFreeStrategy):
    """Federated learning by exchanging synthetic samples (Schlesinger & Flach, 2025).

    Each client owns a generative model. The server keeps the latest pool of synthetic
    samples of every client (:class:`~flower_synth.synthetic.pools.SyntheticPools`,
    keyed by the partition id a client reports) and, each round, sends every sampled
    client a mixture of the *other* clients' pools, drawn by source in proportion to
    the trust weights ``a_ij`` and capped at ``download_budget`` samples, soft labels
    included. It asks each client for its share of ``samples_per_client`` times the
    number of sampled clients (``sample_allocation``). The client learns from its real
    data (weight ``a_ii``) mixed with what it received, and returns fresh samples from
    its updated generator. No model weights travel, so clients may run different
    architectures.

    Every payload is validated (:func:`~flower_synth.payload.validate_payload`: arrays,
    dtypes, shapes, labels, values, soft labels, at most the samples asked for) and a
    bad one counts as that client's failure while the round goes on. The accepted
    pools of a round go to ``server_classifier`` (a
    :class:`~flower_synth.synthetic.server_classifier.PoolLearner`, e.g.
    :class:`~flower_synth.synthetic.server_classifier.PooledClassifier`), whose
    evaluation is the strategy's server-side evaluation.

    Args:
        sample_shape: shape of one sample, e.g. ``(1, 28, 28)``.
        num_classes: labels must lie in ``[0, num_classes)``.
        samples_per_client: samples asked of a client per round, on average.
        download_budget: samples sent to a client per round; 0 sends as many as the
            other pools hold together.
        trust: ``"uniform"``, ``"size"`` or an explicit row-stochastic matrix indexed by
            partition id (see :class:`~flower_synth.synthetic.pools.SyntheticPools`).
        self_trust: ``a_ii`` for ``"uniform"`` and ``"size"``.
        sample_dtype: wire format of what the server sends, ``"uint8"`` or ``"float16"``.
        sample_allocation: ``"size"`` (a client's share follows its training-set size)
            or ``"equal"`` (``samples_per_client`` each).
        soft_label_top_k: send only the top ``k`` soft labels per sample (0: all).
        server_classifier: learns from each round's pools; its evaluation is the
            strategy's.
        on_pools: called after every ``aggregate_fit`` with the pools and the accepted
            clients' fit metrics, both keyed by identity.
        seed: seeds which samples are drawn for each client.
        **sampling: client sampling, metric aggregation and config functions, as in
            :class:`~flower_synth.strategies.model_free.ModelFreeStrategy`.
    """

    def __init__(
        self,
        *,
        sample_shape: tuple[int, ...],
        num_classes: int,
        samples_per_client: int = 1000,
        download_budget: int = 0,
        trust: str | np.ndarray = "uniform",
        self_trust: float = 0.5,
        sample_dtype: str = "uint8",
        sample_allocation: str = "size",
        soft_label_top_k: int = 0,
        server_classifier: PoolLearner | None = None,
        on_pools: PoolCallback | None = None,
        seed: int = 0,
        **sampling: Any,
    ) -> None:
        super().__init__(**sampling)
        if samples_per_client < 1:
            raise ValueError(f"samples_per_client must be >= 1, got {samples_per_client}")
        if sample_allocation not in SAMPLE_ALLOCATIONS:
            raise ValueError(
                f"sample_allocation must be one of {SAMPLE_ALLOCATIONS}, got {sample_allocation!r}"
            )
        self.pools = SyntheticPools(sample_shape, trust, self_trust, download_budget, seed)
        self.num_classes = num_classes
        self.samples_per_client = samples_per_client
        self.sample_dtype = sample_dtype
        self.sample_allocation = sample_allocation
        self.soft_label_top_k = soft_label_top_k
        self.server_classifier = server_classifier
        self.on_pools = on_pools
        self.requested: dict[str, int] = {}

    def __repr__(self) -> str:
        return (
            f"SyntheticSampleStrategy(samples_per_client={self.samples_per_client}, "
            f"download_budget={self.pools.download_budget}, trust={self.pools.trust!r})"
        )

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one sample."""
        return self.pools.sample_shape

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        """Send each sampled client the others' pools (trust-weighted, within budget)
        with ``self_trust`` (a_ii), ``num_samples`` to generate and ``server_round``."""
        clients = self.sample_clients(client_manager, self.fraction_fit, self.min_fit_clients)
        self.requested = self.pools.sample_counts(
            [client.cid for client in clients], self.samples_per_client, self.sample_allocation
        )
        instructions = []
        for client in clients:
            batch, self_trust = self.pools.download_for(client.cid, server_round)
            arrays = []
            if len(batch):
                arrays = encode_samples(
                    batch.samples,
                    batch.labels,
                    self.sample_dtype,
                    batch.probabilities,
                    self.soft_label_top_k,
                )
            config = self.fit_config(
                server_round, self_trust=self_trust, num_samples=self.requested[client.cid]
            )
            instructions.append((client, FitIns(ndarrays_to_parameters(arrays), config)))
        return instructions

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """Validate every payload, store the valid ones as their clients' pools, and
        let the server classifier learn from them.

        A malformed payload is logged and counted in ``rejected_payloads``; the
        client's previous pool stays. Returns no parameters (there is no global model).
        """
        accepted, rejected = self.accept(results, self.decode)
        arrived, client_metrics = [], {}
        for client, res, (partition, batch) in accepted:
            key = self.pools.store(client.cid, partition, batch, res.num_examples)
            arrived.append(batch)
            client_metrics[key] = res.metrics
        union = self.pools.union()
        shares = np.bincount(union.labels, minlength=self.num_classes) / max(len(union), 1)
        metrics: dict[str, Scalar] = {
            "rejected_payloads": rejected,
            "pool_clients": len(self.pools.pools),
            "pool_samples": len(union),
            "pool_class_share_min": float(shares.min()),
            "pool_class_share_max": float(shares.max()),
        }
        if self.server_classifier is not None:
            metrics |= self.server_classifier.learn(server_round, arrived)
        if self.on_pools is not None:
            self.on_pools(server_round, dict(self.pools.pools), client_metrics)
        return None, metrics | self.fit_metrics(accepted)

    def decode(
        self, client: ClientProxy, arrays: NDArrays, res: FitRes
    ) -> tuple[int | None, SampleBatch]:
        """Validate one client's payload (at most the samples it was asked for) and the
        ``partition_id`` it reports; return both."""
        cap = self.requested.get(client.cid, self.samples_per_client)
        batch = validate_payload(arrays, self.sample_shape, self.num_classes, cap)
        partition = reported_partition(res.metrics)
        trust = self.pools.trust
        if isinstance(trust, np.ndarray) and (partition is None or partition >= len(trust)):
            raise PayloadError(
                f"an explicit trust matrix needs metric partition_id in "
                f"[0, {len(trust)}), got {partition!r}"
            )
        return partition, batch

    def evaluate(
        self, server_round: int, parameters: Parameters
    ) -> tuple[float, dict[str, Scalar]] | None:
        """The server classifier's evaluation (None without one, or before it learnt)."""
        if self.server_classifier is None:
            return None
        return self.server_classifier.evaluate(server_round)
