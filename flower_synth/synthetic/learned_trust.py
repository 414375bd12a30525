"""Trust learned per source from evidence (``trust='learned'``).

Every round each pool is judged by the others: its samples are classified by the
nearest class mean of the *other* sources' pools (each source's class mean counted
once, weighted by that source's current trust, so neither volume nor a distrusted
source sways the judge), and the share of its samples whose label that judge
confirms is the pool's *agreement*. Honest pools of one federation agree about as
much as the judge is accurate on their classes (0.3-0.8 on Fashion-MNIST's real
images under Dirichlet(0.1) skew, 0.65-0.7 without skew); a pool whose labels do not
say what its samples show agrees far less (flipped labels: 0.00-0.04). A source's
weight follows its agreement relative to the median source's: full at ``full`` of
the median or more, none at ``floor`` or less, linear between. Weight is lost at once
and regained slowly (an exponential average with factor ``smoothing``), so one bad
round costs a source its influence at once and an honest source that had a poor round
(a first round's barely trained generator) returns within a few.

In the game's terms (:mod:`flower_synth.synthetic.equilibrium`) the learned weights
scale the off-diagonal entries ``a_ij`` of every row before renormalisation: the
equilibrium is that of the honest sources' sub-game, and a source at weight 0 is a
client outside the federation, whose pool nobody learns from.

What it cannot see: a pool whose labels agree with what its samples show but whose
samples are of no use (e.g. few, blurred or class-imbalanced ones), soft labels that
disagree with the hard ones, and sources whose classes no other source holds (their
samples are not judged, and their weight stays as it was).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from flower_synth.exchange.checkpoint import State
from flower_synth.wire.payload import SampleBatch, WireBatch

JUDGE_PASSES = 2  # judge, reweigh the judges by the result, judge again


class LearnedTrust:
    """The learned weight of every source (identity), from the agreement of its pool
    with the other sources' pools (see the module).

    Args:
        full: relative agreement (a source's over the median source's) from which a
            source has full weight.
        floor: relative agreement at or below which a source has no weight.
        smoothing: share of a round's evidence in a rising weight (a falling weight
            follows the evidence at once).
        min_judged: samples a pool must have judged (of classes another source holds)
            for its agreement to count as evidence.
    """

    def __init__(
        self,
        full: float = 0.5,
        floor: float = 0.2,
        smoothing: float = 0.5,
        min_judged: int = 10,
    ) -> None:
        if not 0.0 <= floor < full:
            raise ValueError(f"need 0 <= floor < full, got floor={floor}, full={full}")
        if not 0.0 < smoothing <= 1.0:
            raise ValueError(f"smoothing must lie in (0, 1], got {smoothing}")
        if min_judged < 1:
            raise ValueError(f"min_judged must be >= 1, got {min_judged}")
        self.full = full
        self.floor = floor
        self.smoothing = smoothing
        self.min_judged = min_judged
        self.weights: dict[str, float] = {}
        self.agreement: dict[str, float] = {}

    def weight(self, key: str) -> float:
        """The learned weight of the source ``key`` (1 until there is evidence)."""
        return self.weights.get(key, 1.0)

    def forget(self, key: str) -> None:
        """Drop what was learnt of ``key`` (a departed client starts afresh)."""
        self.weights.pop(key, None)
        self.agreement.pop(key, None)

    def update(self, pools: Mapping[str, WireBatch], num_classes: int) -> dict[str, float]:
        """Judge every pool of ``pools`` (pools of one kind: the same variables) by the
        others' and move the sources' weights; returns this round's agreement of every
        pool that could be judged."""
        decoded = {key: pool.decode() for key, pool in pools.items()}
        means = {key: class_means(batch, num_classes) for key, batch in decoded.items()}
        weights = {key: self.weight(key) for key in pools}
        agreement: dict[str, float] = {}
        targets: dict[str, float] = {}
        for _ in range(JUDGE_PASSES):
            agreement = {}
            judges = Judges(means, weights)
            for key, batch in decoded.items():
                judged = judges.agreement_without(key, batch.samples, batch.labels)
                if judged is not None and judged[1] >= self.min_judged:
                    agreement[key] = judged[0]
            targets = self.targets(agreement)
            weights = {key: min(self.weight(key), targets.get(key, 1.0)) for key in pools}
        for key, target in targets.items():
            before = self.weight(key)
            rising = (1.0 - self.smoothing) * before + self.smoothing * target
            self.weights[key] = target if target < before else rising
        self.agreement.update(agreement)
        return agreement

    def targets(self, agreement: Mapping[str, float]) -> dict[str, float]:
        """The weight each judged source's agreement earns (see the module)."""
        if not agreement:
            return {}
        median = float(np.median(list(agreement.values())))
        if median <= 0:
            return dict.fromkeys(agreement, 1.0)
        relative = {key: value / median for key, value in agreement.items()}
        span = self.full - self.floor
        return {
            key: float(np.clip((r - self.floor) / span, 0.0, 1.0)) for key, r in relative.items()
        }

    def state(self) -> State:
        """The weights and the last agreement of every source (for a checkpoint)."""
        return State(meta={"weights": dict(self.weights), "agreement": dict(self.agreement)})

    def load_state(self, state: State) -> None:
        """Continue from :meth:`state`."""
        self.weights = {k: float(v) for k, v in state.meta.get("weights", {}).items()}
        self.agreement = {k: float(v) for k, v in state.meta.get("agreement", {}).items()}


def class_means(batch: SampleBatch, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The mean sample of every class of ``batch`` (flattened, ``(C, D)``) and which
    classes it holds."""
    flat = batch.samples.reshape(len(batch.samples), -1).astype(np.float64)
    counts = np.bincount(batch.labels, minlength=num_classes)
    sums = np.eye(num_classes)[batch.labels].T @ flat
    held = counts > 0
    sums[held] /= counts[held, None]
    return sums, held


class Judges:
    """The class means of every source weighted by its trust, summed once, so that
    the judge of each source (the others' means) is the sum without its own."""

    def __init__(
        self, means: Mapping[str, tuple[np.ndarray, np.ndarray]], weights: Mapping[str, float]
    ) -> None:
        self.parts = {
            key: (centres * (weights[key] * held)[:, None], weights[key] * held)
            for key, (centres, held) in means.items()
        }
        self.total = sum(part[0] for part in self.parts.values())
        self.mass = sum(part[1] for part in self.parts.values())

    def agreement_without(
        self, key: str, samples: np.ndarray, labels: np.ndarray
    ) -> tuple[float, int] | None:
        """The share of ``samples`` whose nearest class mean of the sources other than
        ``key`` is their label, over the samples of classes those hold with some
        weight, and how many those are (None: none)."""
        own_total, own_mass = self.parts[key]
        mass = self.mass - own_mass
        judged_classes = mass > 1e-12
        rows = judged_classes[labels]
        if not rows.any():
            return None
        centres = (self.total - own_total)[judged_classes] / mass[judged_classes, None]
        flat = samples[rows].reshape(int(rows.sum()), -1).astype(np.float64)
        distances = (centres**2).sum(axis=1)[None, :] - 2 * flat @ centres.T
        nearest = np.flatnonzero(judged_classes)[distances.argmin(axis=1)]
        return float((nearest == labels[rows]).mean()), int(rows.sum())
