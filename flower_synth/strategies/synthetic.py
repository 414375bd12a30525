"""Synthetic-sample exchange: no weights travel, clients trade generated samples."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from flwr.common import (
    FitIns,
    FitRes,
    NDArrays,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
)
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy

from flower_synth.equilibrium import TRUST_MODES, check_trust_matrix
from flower_synth.payload import PayloadError, SampleBatch, encode_samples, validate_payload
from flower_synth.strategies.model_free import ModelFreeStrategy

PoolEvaluateFn = Callable[[int, SampleBatch], tuple[float, dict[str, Scalar]] | None]
PoolCallback = Callable[[int, dict[str, SampleBatch]], None]


def allocate(budget: int, weights: np.ndarray) -> np.ndarray:
    """Split ``budget`` into integer counts proportional to ``weights`` (largest remainder)."""
    shares = budget * weights / weights.sum()
    counts = np.floor(shares).astype(int)
    remainder = budget - counts.sum()
    counts[np.argsort(counts - shares, kind="stable")[:remainder]] += 1
    return counts


class SyntheticSampleStrategy(ModelFreeStrategy):
    """Federated learning by exchanging synthetic samples (Schlesinger & Flach, 2025).

    Each client owns a generative model. The server keeps the latest pool of synthetic
    samples of every client (keyed by node id) and, each round, sends every sampled
    client a mixture of the *other* clients' pools, drawn by source in proportion to
    the trust weights ``a_ij`` and capped at ``download_budget`` samples. The client
    learns from its real data (weight ``a_ii``) mixed with what it received, and
    returns fresh samples from its updated generator. No model weights travel, so
    clients may run different architectures.

    Args:
        sample_shape: shape of one sample, e.g. ``(1, 28, 28)``.
        num_classes: labels must lie in ``[0, num_classes)``.
        samples_per_client: how many samples each client generates per round.
        download_budget: samples sent to a client per round; 0 sends as many as the
            other pools hold together.
        trust: ``"uniform"`` (others share ``1 - self_trust`` equally), ``"size"``
            (in proportion to their training-set sizes), or an explicit row-stochastic
            matrix indexed by partition id (clients report ``partition_id``).
        self_trust: ``a_ii`` for ``"uniform"`` and ``"size"``.
        sample_dtype: wire format of what the server sends, ``"uint8"`` or ``"float16"``.
        max_samples_per_payload: larger client payloads are rejected (default: 4x
            ``samples_per_client``).
        evaluate_fn: server-side evaluation given the union of all pools (e.g. a
            classifier trained only on synthetic data, scored on a held-out test set).
        on_pools: called after every ``aggregate_fit`` with the pools, keyed by
            :meth:`pool_key`.
        seed: seeds which samples are drawn for each client.
        **sampling: client sampling and metric aggregation, as in
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
        max_samples_per_payload: int | None = None,
        evaluate_fn: PoolEvaluateFn | None = None,
        on_pools: PoolCallback | None = None,
        seed: int = 0,
        **sampling: Any,
    ) -> None:
        super().__init__(**sampling)
        if isinstance(trust, str) and trust not in TRUST_MODES:
            raise ValueError(f"trust must be one of {TRUST_MODES} or a matrix, got {trust!r}")
        if not isinstance(trust, str):
            check_trust_matrix(np.asarray(trust))
        if not 0.0 < self_trust <= 1.0:
            raise ValueError(f"self_trust must lie in (0, 1], got {self_trust}")
        if samples_per_client < 1 or download_budget < 0:
            raise ValueError("samples_per_client must be >= 1 and download_budget >= 0")
        self.sample_shape = tuple(sample_shape)
        self.num_classes = num_classes
        self.samples_per_client = samples_per_client
        self.download_budget = download_budget
        self.trust = trust if isinstance(trust, str) else np.asarray(trust, dtype=float)
        self.self_trust = self_trust
        self.sample_dtype = sample_dtype
        self.max_samples_per_payload = max_samples_per_payload or 4 * samples_per_client
        self.evaluate_fn = evaluate_fn
        self.on_pools = on_pools
        self.seed = seed
        self.pools: dict[str, SampleBatch] = {}
        self.sizes: dict[str, int] = {}
        self.partition_of: dict[str, int] = {}

    def __repr__(self) -> str:
        return (
            f"SyntheticSampleStrategy(samples_per_client={self.samples_per_client}, "
            f"download_budget={self.download_budget}, trust={self.trust!r})"
        )

    def pool_key(self, cid: str) -> str:
        """A pool's name in reports: its client's partition id, else its node id."""
        return str(self.partition_of.get(cid, cid))

    def trust_row(self, cid: str, sources: list[str]) -> tuple[float, np.ndarray]:
        """``a_ii`` of client ``cid`` and the unnormalised weights of ``sources``.

        With an explicit matrix, a client whose partition is not known yet (it has
        not reported one) gets ``self_trust`` and equal weights.
        """
        if isinstance(self.trust, np.ndarray):
            if cid not in self.partition_of:
                return self.self_trust, np.ones(len(sources))
            row = self.trust[self.partition_of[cid]]
            weights = [row[self.partition_of[s]] for s in sources]
            return float(row[self.partition_of[cid]]), np.asarray(weights, dtype=float)
        if self.trust == "size":
            return self.self_trust, np.asarray([self.sizes[s] for s in sources], dtype=float)
        return self.self_trust, np.ones(len(sources))

    def download_for(self, cid: str, server_round: int) -> tuple[SampleBatch, float]:
        """The samples client ``cid`` receives this round, and its ``a_ii``.

        Never includes the client's own pool. Sources are drawn in proportion to the
        trust weights; within a source, samples are drawn without replacement unless
        its share exceeds its pool.
        """
        sources = sorted(
            (s for s in self.pools if s != cid), key=lambda s: self.partition_of.get(s, 0)
        )
        self_trust, weights = self.trust_row(cid, sources)
        keep = weights > 0
        sources, weights = [s for s, k in zip(sources, keep, strict=True) if k], weights[keep]
        if not sources:
            return SampleBatch.concatenate([], self.sample_shape), self_trust
        budget = self.download_budget or sum(len(self.pools[s]) for s in sources)
        rng = np.random.default_rng([self.seed, server_round, self.partition_of.get(cid, 0)])
        parts = []
        for source, count in zip(sources, allocate(budget, weights), strict=True):
            pool = self.pools[source]
            replace = count > len(pool)
            parts.append(pool.take(rng.choice(len(pool), size=count, replace=replace)))
        return SampleBatch.concatenate(parts, self.sample_shape), self_trust

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        """Send each sampled client the others' pools (trust-weighted, within budget)
        with ``self_trust`` (a_ii), ``num_samples`` to generate and ``server_round``."""
        clients = self.sample_clients(client_manager, self.fraction_fit, self.min_fit_clients)
        instructions = []
        for client in clients:
            batch, self_trust = self.download_for(client.cid, server_round)
            arrays = (
                encode_samples(batch.samples, batch.labels, self.sample_dtype) if len(batch) else []
            )
            config: dict[str, Scalar] = {
                "server_round": server_round,
                "self_trust": self_trust,
                "num_samples": self.samples_per_client,
            }
            instructions.append((client, FitIns(ndarrays_to_parameters(arrays), config)))
        return instructions

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """Validate every payload and store the valid ones as their clients' pools.

        A malformed payload is logged and counted in ``rejected_payloads``; the
        client's previous pool stays. Returns no parameters (there is no global model).
        """
        accepted, rejected = self.accept(results, self.decode)
        for client, res, batch in accepted:
            self.pools[client.cid] = batch
            self.sizes[client.cid] = res.num_examples
            partition = res.metrics.get("partition_id")
            if isinstance(partition, int):
                self.partition_of[client.cid] = partition
        if self.on_pools is not None:
            self.on_pools(server_round, {self.pool_key(cid): p for cid, p in self.pools.items()})
        metrics: dict[str, Scalar] = {
            "rejected_payloads": rejected,
            "pool_clients": len(self.pools),
            "pool_samples": sum(len(p) for p in self.pools.values()),
        }
        return None, metrics | self.fit_metrics(accepted)

    def decode(self, arrays: NDArrays, res: FitRes) -> SampleBatch:
        """Validate one client's samples (and, with an explicit trust matrix, the
        ``partition_id`` it reports)."""
        batch = validate_payload(
            arrays, self.sample_shape, self.num_classes, self.max_samples_per_payload
        )
        partition = res.metrics.get("partition_id")
        if isinstance(self.trust, np.ndarray) and not (
            isinstance(partition, int) and 0 <= partition < len(self.trust)
        ):
            raise PayloadError(
                f"an explicit trust matrix needs metric partition_id in "
                f"[0, {len(self.trust)}), got {partition!r}"
            )
        return batch

    def evaluate(
        self, server_round: int, parameters: Parameters
    ) -> tuple[float, dict[str, Scalar]] | None:
        """Server-side evaluation on the union of the pools (None before any pool)."""
        if self.evaluate_fn is None or not self.pools:
            return None
        union = SampleBatch.concatenate(list(self.pools.values()), self.sample_shape)
        return self.evaluate_fn(server_round, union)
