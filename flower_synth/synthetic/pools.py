"""The server side of synthetic-sample exchange, free of Flower's server APIs: every
client's latest pool, the trust-weighted downloads, and how many samples to ask for.

Pools are keyed by a stable identity: the partition id a client reports
(``partition-<id>``), else its node id (``node-<id>``). A client that rejoins under a
new node id replaces its partition's pool instead of leaving a ghost beside it.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from flower_synth.allocation import allocate
from flower_synth.equilibrium import TRUST_MODES, check_trust_matrix
from flower_synth.payload import SampleBatch

SAMPLE_ALLOCATIONS = ("size", "equal")


def identity(node_id: str, partition_id: int | None) -> str:
    """A client's stable key: its partition when it reports one, else its node."""
    return f"partition-{partition_id}" if partition_id is not None else f"node-{node_id}"


class SyntheticPools:
    """The latest synthetic pool of every client, and what each client receives.

    Downloads never include the receiver's own pool. Sources are drawn in proportion
    to the trust weights ``a_ij`` over the pools that exist (so partial participation
    keeps the proportions exact among them), capped at ``download_budget`` samples;
    within a source, samples are drawn without replacement unless its share exceeds
    its pool.

    Args:
        sample_shape: shape of one sample.
        trust: ``"uniform"`` (others share ``1 - self_trust`` equally), ``"size"`` (in
            proportion to their training-set sizes), or a row-stochastic matrix indexed
            by partition id.
        self_trust: ``a_ii`` for ``"uniform"`` and ``"size"``.
        download_budget: samples per download; 0 sends all the other pools hold.
        seed: seeds which samples each download draws.
    """

    def __init__(
        self,
        sample_shape: tuple[int, ...],
        trust: str | np.ndarray = "uniform",
        self_trust: float = 0.5,
        download_budget: int = 0,
        seed: int = 0,
    ) -> None:
        if isinstance(trust, str) and trust not in TRUST_MODES:
            raise ValueError(f"trust must be one of {TRUST_MODES} or a matrix, got {trust!r}")
        if not isinstance(trust, str):
            trust = np.asarray(trust, dtype=float)
            check_trust_matrix(trust)
        if not 0.0 < self_trust <= 1.0:
            raise ValueError(f"self_trust must lie in (0, 1], got {self_trust}")
        if download_budget < 0:
            raise ValueError(f"download_budget must be >= 0, got {download_budget}")
        self.sample_shape = tuple(sample_shape)
        self.trust = trust
        self.self_trust = self_trust
        self.download_budget = download_budget
        self.seed = seed
        self.pools: dict[str, SampleBatch] = {}
        self.sizes: dict[str, int] = {}
        self.partition_of: dict[str, int] = {}
        self.identity_of_node: dict[str, str] = {}

    def key_of(self, node_id: str) -> str:
        """The identity of ``node_id``: the partition it last reported, else the node."""
        return self.identity_of_node.get(node_id, identity(node_id, None))

    def store(self, node_id: str, partition_id: int | None, batch: SampleBatch, size: int) -> str:
        """Keep ``batch`` as the pool of the client at ``node_id``, replacing that
        identity's previous pool; returns the identity."""
        key = identity(node_id, partition_id)
        if key != identity(node_id, None):  # stored before it reported a partition
            self.forget(identity(node_id, None))
        self.identity_of_node[node_id] = key
        self.pools[key], self.sizes[key] = batch, size
        if partition_id is not None:
            self.partition_of[key] = partition_id
        return key

    def forget(self, key: str) -> None:
        """Drop everything kept for the identity ``key``."""
        self.pools.pop(key, None)
        self.sizes.pop(key, None)
        self.partition_of.pop(key, None)

    def trust_row(self, key: str, sources: list[str]) -> tuple[float, np.ndarray]:
        """``a_ii`` of the client ``key`` and the unnormalised weights of ``sources``.

        With an explicit matrix, a client or source whose partition is not known
        (it has not reported one) gets ``self_trust`` and equal weights.
        """
        if isinstance(self.trust, np.ndarray):
            known = key in self.partition_of and all(s in self.partition_of for s in sources)
            if not known:
                return self.self_trust, np.ones(len(sources))
            row = self.trust[self.partition_of[key]]
            weights = [row[self.partition_of[s]] for s in sources]
            return float(row[self.partition_of[key]]), np.asarray(weights, dtype=float)
        if self.trust == "size":
            return self.self_trust, np.asarray([self.sizes[s] for s in sources], dtype=float)
        return self.self_trust, np.ones(len(sources))

    def download_for(self, node_id: str, server_round: int) -> tuple[SampleBatch, float]:
        """The samples the client at ``node_id`` receives this round, and its ``a_ii``."""
        key = self.key_of(node_id)
        sources = sorted((s for s in self.pools if s != key), key=self._order)
        self_trust, weights = self.trust_row(key, sources)
        keep = weights > 0
        sources, weights = [s for s, k in zip(sources, keep, strict=True) if k], weights[keep]
        if not sources:
            return SampleBatch.concatenate([], self.sample_shape), self_trust
        budget = self.download_budget or sum(len(self.pools[s]) for s in sources)
        rng = np.random.default_rng([self.seed, server_round, self.partition_of.get(key, 0)])
        parts = []
        for source, count in zip(sources, allocate(budget, weights), strict=True):
            pool = self.pools[source]
            replace = count > len(pool)
            parts.append(pool.take(rng.choice(len(pool), size=count, replace=replace)))
        return SampleBatch.concatenate(parts, self.sample_shape), self_trust

    def sample_counts(
        self, node_ids: Iterable[str], per_client: int, allocation: str = "size"
    ) -> dict[str, int]:
        """How many samples each of ``node_ids`` generates this round: ``per_client``
        each (``"equal"``), or ``per_client`` times their number split in proportion
        to the clients' training-set sizes (``"size"``; a client whose size is not
        known yet counts with the mean known size), so that the union of the pools
        follows the federation's real label mix and larger datasets speak louder."""
        node_ids = list(node_ids)
        sizes = [self.sizes.get(self.key_of(node)) for node in node_ids]
        known = [s for s in sizes if s is not None]
        if allocation == "equal" or not known:
            return dict.fromkeys(node_ids, per_client)
        mean = float(np.mean(known))
        weights = np.array([mean if s is None else s for s in sizes], dtype=float)
        counts = np.maximum(allocate(per_client * len(node_ids), weights), 1)
        return dict(zip(node_ids, counts.tolist(), strict=True))

    def union(self) -> SampleBatch:
        """All pools together, in the order of their identities."""
        return SampleBatch.concatenate(
            [self.pools[k] for k in sorted(self.pools, key=self._order)], self.sample_shape
        )

    def _order(self, key: str) -> tuple[int, str]:
        return (self.partition_of.get(key, -1), key)
