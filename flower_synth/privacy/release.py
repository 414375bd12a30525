"""Counts released with the Gaussian mechanism: what a private client says of its label
mix."""

from __future__ import annotations

import numpy as np

from flower_synth.privacy.dp_sgd import PrivacyLedger

# Standard deviation of the noise on each released class count. One training example
# changes one count by 1 (L2 sensitivity 1): a single release at this noise costs
# little of a budget of a few epsilon, and hundreds of examples a class hardly notice it.
LABEL_COUNT_NOISE = 20.0


def release_counts(
    counts: np.ndarray, ledger: PrivacyLedger, rng: np.random.Generator
) -> np.ndarray:
    """``counts`` with Gaussian noise of :data:`LABEL_COUNT_NOISE` added, clipped at 0
    (post-processing; all ones should every count clip), and the release spent in
    ``ledger``."""
    noisy = np.asarray(counts, dtype=np.float64) + rng.normal(0.0, LABEL_COUNT_NOISE, len(counts))
    ledger.spend(LABEL_COUNT_NOISE, 1.0, 1)
    noisy = np.clip(noisy, 0.0, None)
    return noisy if noisy.sum() > 0 else np.ones_like(noisy)
