"""Splitting a whole number of samples in given proportions."""

from __future__ import annotations

import numpy as np


def allocate(budget: int, weights: np.ndarray) -> np.ndarray:
    """Split ``budget`` into integer counts proportional to ``weights`` (largest
    remainder: the counts sum to ``budget`` and each is within 1 of its share)."""
    weights = np.asarray(weights, dtype=float)
    shares = budget * weights / weights.sum()
    counts = np.floor(shares).astype(int)
    remainder = budget - counts.sum()
    counts[np.argsort(counts - shares, kind="stable")[:remainder]] += 1
    return counts


def labels_in_proportion(n: int, class_counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``n`` labels, shuffled, whose class counts follow ``class_counts`` exactly
    (largest remainder): what a client generates to mirror its real label mix."""
    counts = allocate(n, class_counts)
    return rng.permutation(np.repeat(np.arange(len(counts)), counts))
