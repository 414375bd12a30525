"""The server side of synthetic-sample exchange, free of Flower's server APIs: every
client's latest pool, the trust-weighted downloads, and how many samples to ask for.

Pools are keyed by a stable identity (:class:`~flower_synth.exchange.server.Roster`): the
partition id a client reports, else its node id. A client that rejoins under a new node
id replaces its partition's pool instead of leaving a ghost beside it, and a client that
stops answering is dropped after ``max_missed_rounds``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from flower_synth.exchange.checkpoint import State
from flower_synth.exchange.server import Roster
from flower_synth.synthetic.allocation import allocate
from flower_synth.synthetic.equilibrium import TRUST_MODES, check_trust_matrix
from flower_synth.synthetic.learned_trust import LearnedTrust
from flower_synth.wire.client_metrics import SIZE_CAP, capped_sizes, within_total
from flower_synth.wire.payload import WireBatch
from flower_synth.wire.variables import CLEAN, Variables

SAMPLE_ALLOCATIONS = ("ratio", "size", "equal")


class Download(NamedTuple):
    """What one client receives: the samples, its ``a_ii``, and the variables of its
    rows in order (``(variables, count)`` per pool kind)."""

    batch: WireBatch
    self_trust: float
    groups: list[tuple[Variables, int]]


class SyntheticPools:
    """The latest synthetic pool of every client, and what each client receives.

    Pools are kept as they arrived (:class:`~flower_synth.wire.payload.WireBatch`: ``uint8``
    images take a quarter of float32's memory) and downloads are cut from them without
    decoding.

    Downloads never include the receiver's own pool, nor a pool with a variable the
    receiver's model lacks (:mod:`flower_synth.wire.variables`: every pool is ``("c", "s")``
    and every model has it unless its client says otherwise). Sources are drawn in proportion
    to the trust weights ``a_ij`` over the pools that exist (so partial participation
    keeps the proportions exact among them), each weight times ``age_decay`` to the
    power of its pool's age in rounds; within a source, samples are drawn without
    replacement unless its share exceeds its pool. A download holds at most
    ``download_ratio`` times the receiver's training-set size (its reported size,
    capped like every size here; the median reported size before it has reported one)
    and at most ``download_budget`` samples, so a client's download does not grow with
    the federation.

    A pool made in round ``r`` is sent in downloads up to round ``r + max_age`` and
    then dropped (:meth:`expire`): in a large federation, where a client trains every
    few rounds, no client learns from samples of a generator many rounds old without
    it being recorded (:meth:`ages`).

    Args:
        sample_shape: shape of one sample.
        trust: ``"uniform"`` (others share ``1 - self_trust`` equally), ``"size"`` (in
            proportion to their training-set sizes), ``"learned"`` (uniform, each
            source times the weight :meth:`learn_trust` gives it; a
            :class:`~flower_synth.synthetic.learned_trust.LearnedTrust` for other
            settings than its defaults), or a row-stochastic matrix indexed by
            partition id.
        self_trust: ``a_ii`` for ``"uniform"``, ``"size"`` and ``"learned"``.
        download_budget: samples per download at most; 0: no fixed cap.
        seed: seeds which samples each download draws.
        max_missed_rounds: drop the pool of a client that was asked to train and did not
            answer (or answered with a payload that was rejected) this many rounds in a
            row (None: never).
        download_ratio: samples per download at most, per example of the receiver's
            training set; 0: no such cap (with ``download_budget`` 0 too, a download
            holds all the other pools hold).
        max_age: rounds a pool is sent in after the round it was made (None: until
            its client sends a new one or departs).
        age_decay: factor on a pool's download weight per round of age (1: none).
        partition_handover: whether a partition whose node is gone may be taken over
            by another node (a SuperNode restarted without a fixed key comes back
            under a new id); False with SuperNode authentication, where a node's id is
            its key's: the first node keeps its partition for the whole run
            (:class:`~flower_synth.exchange.server.Roster`).
        total_examples: the training examples of the whole federation, where the
            server knows them (the app passes its dataset's training-set size):
            claimed sizes together never exceed them, the largest claim getting what
            the others leave (:func:`~flower_synth.wire.client_metrics.within_total`);
            None: unknown, sizes are bounded by the median only.
    """

    def __init__(
        self,
        sample_shape: tuple[int, ...],
        trust: str | np.ndarray | LearnedTrust = "uniform",
        self_trust: float = 0.5,
        download_budget: int = 0,
        seed: int = 0,
        max_missed_rounds: int | None = None,
        download_ratio: float = 0.0,
        max_age: int | None = None,
        age_decay: float = 1.0,
        partition_handover: bool = True,
        total_examples: int | None = None,
    ) -> None:
        if isinstance(trust, str) and trust == "learned":
            trust = LearnedTrust()
        self.learned = trust if isinstance(trust, LearnedTrust) else None
        if self.learned is not None:
            trust = "learned"
        if isinstance(trust, str) and trust not in TRUST_MODES:
            raise ValueError(f"trust must be one of {TRUST_MODES} or a matrix, got {trust!r}")
        if not isinstance(trust, str):
            trust = np.asarray(trust, dtype=float)
            check_trust_matrix(trust)
        if not 0.0 < self_trust <= 1.0:
            raise ValueError(f"self_trust must lie in (0, 1], got {self_trust}")
        if download_budget < 0:
            raise ValueError(f"download_budget must be >= 0, got {download_budget}")
        if not (download_ratio >= 0 and np.isfinite(download_ratio)):
            raise ValueError(f"download_ratio must be a finite number >= 0, got {download_ratio}")
        if max_age is not None and max_age < 1:
            raise ValueError(f"max_age must be >= 1 round or None, got {max_age}")
        if not 0.0 < age_decay <= 1.0:
            raise ValueError(f"age_decay must lie in (0, 1], got {age_decay}")
        if total_examples is not None and total_examples < 1:
            raise ValueError(f"total_examples must be >= 1 or None, got {total_examples}")
        self.sample_shape = tuple(sample_shape)
        self.trust = trust
        self.self_trust = self_trust
        self.download_budget = download_budget
        self.download_ratio = download_ratio
        self.max_age = max_age
        self.age_decay = age_decay
        self.seed = seed
        self.total_examples = total_examples
        self.roster = Roster(max_missed_rounds, partition_handover)
        self.pools: dict[str, WireBatch] = {}
        self.sizes: dict[str, int] = {}
        self.made: dict[str, int] = {}
        self.variables: dict[str, Variables] = {}
        self.model_variables: dict[str, Variables] = {}

    @property
    def partition_of(self) -> dict[str, int]:
        """The partition id of every identity that reported one."""
        return self.roster.partition_of

    def key_of(self, node_id: str) -> str:
        """The identity of ``node_id``: the partition it last reported, else the node."""
        return self.roster.key_of(node_id)

    def store(
        self,
        node_id: str,
        partition_id: int | None,
        batch: WireBatch,
        size: int,
        server_round: int,
        variables: Variables = CLEAN,
        model_variables: Variables = CLEAN,
    ) -> str:
        """Keep ``batch``, made in ``server_round``, as the pool of the client at
        ``node_id``, replacing that identity's previous pool, with the variables the
        pool carries and the client's model has; returns the identity."""
        key, previous = self.roster.identify(node_id, partition_id)
        if previous is not None:  # stored under its node before it reported a partition
            self.forget(previous)
        self.pools[key], self.sizes[key], self.made[key] = batch, size, server_round
        self.variables[key], self.model_variables[key] = variables, model_variables
        return key

    def forget(self, key: str) -> None:
        """Drop everything kept for the identity ``key``."""
        self.pools.pop(key, None)
        self.sizes.pop(key, None)
        self.made.pop(key, None)
        self.variables.pop(key, None)
        self.model_variables.pop(key, None)
        self.roster.forget(key)
        if self.learned is not None:
            self.learned.forget(key)

    def ages(self, server_round: int) -> dict[str, int]:
        """Every pool's age in ``server_round``: rounds since the round it was made."""
        return {key: server_round - made for key, made in self.made.items()}

    def expire(self, server_round: int) -> list[str]:
        """At the end of ``server_round``, drop the pools too old to be sent in the
        next round (``max_age``); returns their identities. The clients stay known."""
        if self.max_age is None:
            return []
        old = [key for key, age in self.ages(server_round + 1).items() if age > self.max_age]
        for key in old:
            del self.pools[key], self.made[key]
        return old

    def drop_departed(self, asked: Sequence[str], answered: Sequence[str]) -> list[str]:
        """Forget the pools of clients that have now missed ``max_missed_rounds`` rounds
        (see :meth:`~flower_synth.exchange.server.Roster.departed`); returns their identities."""
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
            capped = self.bounded_sizes()
            return self.self_trust, np.asarray([capped[s] for s in sources], dtype=float)
        return self.self_trust, np.asarray([self.learned_weight(s) for s in sources])

    def bounded_sizes(self) -> dict[str, float]:
        """Every known training-set size as the server lets it weigh: together at most
        ``total_examples`` where known, each at most ``SIZE_CAP`` times the median."""
        sizes = list(self.sizes.values())
        if self.total_examples is not None:
            sizes = within_total(sizes, self.total_examples)
        return dict(zip(self.sizes, capped_sizes(sizes), strict=True))

    def learned_weight(self, key: str) -> float:
        """The weight learnt for the source ``key`` (1 unless ``trust`` is learned)."""
        return 1.0 if self.learned is None else self.learned.weight(key)

    def learn_trust(self, num_classes: int) -> dict[str, float]:
        """With learned trust: judge the pools held now, each kind (variables) among
        its own, and move the sources' weights
        (:meth:`~flower_synth.synthetic.learned_trust.LearnedTrust.update`); returns
        the round's agreement by identity (nothing without learned trust)."""
        if self.learned is None:
            return {}
        agreement: dict[str, float] = {}
        for variables in sorted(set(map(self.variables_of, self.pools))):
            kind = {k: p for k, p in self.pools.items() if self.variables_of(k) == variables}
            agreement |= self.learned.update(kind, num_classes)
        return agreement

    def download_for(self, node_id: str, server_round: int) -> Download:
        """What the client at ``node_id`` receives this round (see the class), its rows
        grouped by the variables their pools carry."""
        key = self.key_of(node_id)
        model = set(self.model_variables.get(key, CLEAN))
        sources = sorted(
            (s for s in self.pools if s != key and model.issuperset(self.variables_of(s))),
            key=lambda s: (self.variables_of(s), *self._order(s)),
        )
        self_trust, weights = self.trust_row(key, sources)
        keep = weights > 0
        sources, weights = [s for s, k in zip(sources, keep, strict=True) if k], weights[keep]
        if not sources:
            return Download(WireBatch.concatenate([], self.sample_shape), self_trust, [])
        ages = np.asarray([self.ages(server_round)[s] for s in sources], float)
        weights = weights * self.age_decay ** (ages - ages.min())  # relative: no underflow
        budget = self.download_size(key, sum(len(self.pools[s]) for s in sources))
        rng = np.random.default_rng([self.seed, server_round, self.partition_of.get(key, 0)])
        parts, groups = [], []
        for source, count in zip(sources, allocate(budget, weights), strict=True):
            pool = self.pools[source]
            replace = count > len(pool)
            parts.append(pool.take(rng.choice(len(pool), size=count, replace=replace)))
            variables = self.variables_of(source)
            if groups and groups[-1][0] == variables:
                groups[-1] = (variables, groups[-1][1] + int(count))
            elif count:
                groups.append((variables, int(count)))
        return Download(WireBatch.concatenate(parts, self.sample_shape), self_trust, groups)

    def variables_of(self, key: str) -> Variables:
        """The variables the pool of ``key`` carries."""
        return self.variables.get(key, CLEAN)

    def download_size(self, key: str, available: int) -> int:
        """Samples the client ``key`` receives when the other pools hold ``available``:
        at most ``download_budget`` and ``download_ratio`` times its training-set size
        (see the class)."""
        size = available
        if self.download_budget:
            size = min(size, self.download_budget)
        if self.download_ratio and self.sizes:
            capped = self.bounded_sizes()
            own = capped.get(key, float(np.median(list(capped.values()))))
            size = min(size, max(1, round(self.download_ratio * own)))
        return size

    def sample_counts(
        self, node_ids: Iterable[str], per_client: int, allocation: str = "size"
    ) -> dict[str, int]:
        """How many samples each of ``node_ids`` generates this round, at most:
        ``per_client`` each (``"equal"``, and ``"ratio"``, where the client generates
        a share of its own training-set size up to that cap), or ``per_client`` times
        their number split in proportion to the clients' training-set sizes
        (``"size"``; a client whose size is not known yet counts with the mean known
        size), so that the union of the pools follows the federation's real label mix
        and larger datasets speak louder."""
        node_ids = list(node_ids)
        sizes = [self.sizes.get(self.key_of(node)) for node in node_ids]
        known = [s for s in sizes if s is not None]
        if allocation in ("equal", "ratio") or not known:
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
        meta = {
            "sizes": dict(self.sizes),
            "made": dict(self.made),
            "variables": {key: ",".join(v) for key, v in self.variables.items()},
            "model_variables": {key: ",".join(v) for key, v in self.model_variables.items()},
        }
        state = State(meta=meta).with_part("roster", self.roster.state())
        if self.learned is not None:
            state = state.with_part("learned_trust", self.learned.state())
        for key, pool in self.pools.items():
            arrays = {"samples": pool.samples, "labels": pool.labels}
            if pool.probabilities is not None:
                arrays["probabilities"] = pool.probabilities
            state = state.with_part(f"pool:{key}", State(arrays))
        return state

    def load_state(self, state: State) -> None:
        """Continue from :meth:`state`."""
        self.roster.load_state(state.part("roster"))
        if self.learned is not None and state.has_part("learned_trust"):
            self.learned.load_state(state.part("learned_trust"))
        self.sizes = {key: int(size) for key, size in state.meta.get("sizes", {}).items()}
        self.made = {key: int(made) for key, made in state.meta.get("made", {}).items()}
        for name in ("variables", "model_variables"):
            kept = {key: tuple(v.split(",")) for key, v in state.meta.get(name, {}).items()}
            setattr(self, name, kept)
        self.pools = {}
        for name in state.meta:
            if name.startswith("pool:"):
                arrays = state.part(name).arrays
                key = name.removeprefix("pool:")
                self.pools[key] = WireBatch(
                    arrays["samples"], arrays["labels"], arrays.get("probabilities")
                )
                self.made.setdefault(key, 0)  # a checkpoint from before pools had ages

    def _order(self, key: str) -> tuple[int, str]:
        return (self.partition_of.get(key, -1), key)
