"""The server side of synthetic-sample exchange, free of Flower's server APIs: every
client's latest pool, the trust-weighted downloads, and how many samples to ask for.

Pools are keyed by a stable identity (:class:`~flower_synth.exchange.Roster`): the
partition id a client reports, else its node id. A client that rejoins under a new node
id replaces its partition's pool instead of leaving a ghost beside it, and a client that
stops answering is dropped after ``max_missed_rounds``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from flower_synth.allocation import allocate
from flower_synth.checkpoint import State
from flower_synth.equilibrium import TRUST_MODES, check_trust_matrix
from flower_synth.exchange import SIZE_CAP, Roster, capped_sizes
from flower_synth.payload import WireBatch

SAMPLE_ALLOCATIONS = ("size", "equal")


class SyntheticPools:
    """The latest synthetic pool of every client, and what each client receives.

    Pools are kept as they arrived (:class:`~flower_synth.payload.WireBatch`: ``uint8``
    images take a quarter of float32's memory) and downloads are cut from them without
    decoding.

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
        max_missed_rounds: drop the pool of a client that was asked to train and did not
            answer (or answered with a payload that was rejected) this many rounds in a
            row (None: never).
    """

    def __init__(
        self,
        sample_shape: tuple[int, ...],
        trust: str | np.ndarray = "uniform",
        self_trust: float = 0.5,
        download_budget: int = 0,
        seed: int = 0,
        max_missed_rounds: int | None = None,
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
        self.roster = Roster(max_missed_rounds)
        self.pools: dict[str, WireBatch] = {}
        self.sizes: dict[str, int] = {}

    @property
    def partition_of(self) -> dict[str, int]:
        """The partition id of every identity that reported one."""
        return self.roster.partition_of

    def key_of(self, node_id: str) -> str:
        """The identity of ``node_id``: the partition it last reported, else the node."""
        return self.roster.key_of(node_id)

    def store(self, node_id: str, partition_id: int | None, batch: WireBatch, size: int) -> str:
        """Keep ``batch`` as the pool of the client at ``node_id``, replacing that
        identity's previous pool; returns the identity."""
        key, previous = self.roster.identify(node_id, partition_id)
        if previous is not None:  # stored under its node before it reported a partition
            self.forget(previous)
        self.pools[key], self.sizes[key] = batch, size
        return key

    def forget(self, key: str) -> None:
        """Drop everything kept for the identity ``key``."""
        self.pools.pop(key, None)
        self.sizes.pop(key, None)
        self.roster.forget(key)

    def drop_departed(self, asked: Sequence[str], answered: Sequence[str]) -> list[str]:
        """Forget the pools of clients that have now missed ``max_missed_rounds`` rounds
        (see :meth:`~flower_synth.exchange.Roster.departed`); returns their identities."""
        gone = self.roster.departed(asked, answered)
        for key in gone:
            self.forget(key)
        return gone

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
            known = list(self.sizes.values())
            capped = dict(zip(self.sizes, capped_sizes(known), strict=True))
            return self.self_trust, np.asarray([capped[s] for s in sources], dtype=float)
        return self.self_trust, np.ones(len(sources))

    def download_for(self, node_id: str, server_round: int) -> tuple[WireBatch, float]:
        """The samples the client at ``node_id`` receives this round, and its ``a_ii``."""
        key = self.key_of(node_id)
        sources = sorted((s for s in self.pools if s != key), key=self._order)
        self_trust, weights = self.trust_row(key, sources)
        keep = weights > 0
        sources, weights = [s for s, k in zip(sources, keep, strict=True) if k], weights[keep]
        if not sources:
            return WireBatch.concatenate([], self.sample_shape), self_trust
        budget = self.download_budget or sum(len(self.pools[s]) for s in sources)
        rng = np.random.default_rng([self.seed, server_round, self.partition_of.get(key, 0)])
        parts = []
        for source, count in zip(sources, allocate(budget, weights), strict=True):
            pool = self.pools[source]
            replace = count > len(pool)
            parts.append(pool.take(rng.choice(len(pool), size=count, replace=replace)))
        return WireBatch.concatenate(parts, self.sample_shape), self_trust

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
        mean = float(np.mean(capped_sizes(known)))
        cap = SIZE_CAP * max(float(np.median(known)), 1.0)
        weights = np.array([mean if s is None else min(s, cap) for s in sizes], dtype=float)
        counts = np.maximum(allocate(per_client * len(node_ids), weights), 1)
        return dict(zip(node_ids, counts.tolist(), strict=True))

    def label_counts(self, num_classes: int) -> np.ndarray:
        """Samples per class over all pools together (the server's union)."""
        counts = np.zeros(num_classes, dtype=np.int64)
        for pool in self.pools.values():
            counts += np.bincount(pool.labels, minlength=num_classes)
        return counts

    def state(self) -> State:
        """Every pool, training-set size and identity (for a checkpoint)."""
        state = State(meta={"sizes": dict(self.sizes)}).with_part("roster", self.roster.state())
        for key, pool in self.pools.items():
            arrays = {"samples": pool.samples, "labels": pool.labels}
            if pool.probabilities is not None:
                arrays["probabilities"] = pool.probabilities
            state = state.with_part(f"pool:{key}", State(arrays))
        return state

    def load_state(self, state: State) -> None:
        """Continue from :meth:`state`."""
        self.roster.load_state(state.part("roster"))
        self.sizes = {key: int(size) for key, size in state.meta.get("sizes", {}).items()}
        self.pools = {}
        for name in state.meta:
            if name.startswith("pool:"):
                arrays = state.part(name).arrays
                self.pools[name.removeprefix("pool:")] = WireBatch(
                    arrays["samples"], arrays["labels"], arrays.get("probabilities")
                )

    def _order(self, key: str) -> tuple[int, str]:
        return (self.partition_of.get(key, -1), key)
