"""Partly labelled clients: a client that knows the labels of some of its images."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from flower_synth.data.client_data import ClientData

LABEL_STREAM = 0x1ABE1  # keeps the draw of labelled rows apart from the partition's draws


def labelled_count(num_images: int, fraction: float) -> int:
    """How many of ``num_images`` keep their labels at ``fraction``: the nearest whole
    number, at least 1 (a client with images knows at least one label)."""
    check_labelled_fraction(fraction)
    if num_images == 0:
        return 0
    return max(1, round(fraction * num_images))


def check_labelled_fraction(fraction: float) -> None:
    """Refuse a labelled fraction outside (0, 1]."""
    if not (math.isfinite(fraction) and 0.0 < fraction <= 1.0):
        raise ValueError(
            f"labelled-fraction must lie in (0, 1] (1: every label known, 0.01: one in a "
            f"hundred), got {fraction}"
        )


def hide_labels(data: ClientData, fraction: float, seed: int) -> ClientData:
    """``data`` with only :func:`labelled_count` of its training images labelled,
    drawn uniformly at random with ``seed`` (not stratified: a client does not choose
    which of its images someone labelled); the others move to ``unlabelled``, in their
    original order. The local test split stays labelled: it is how the client is
    scored. ``fraction = 1`` returns ``data`` unchanged."""
    kept = labelled_count(len(data.train), fraction)
    if kept == len(data.train):
        return data
    rng = np.random.default_rng([seed, LABEL_STREAM])
    keep = np.zeros(len(data.train), dtype=bool)
    keep[rng.choice(len(data.train), kept, replace=False)] = True
    hidden = data.train.images[~keep]
    if data.unlabelled is not None:
        hidden = np.concatenate([data.unlabelled, hidden])
    return replace(data, train=data.train.subset(np.flatnonzero(keep)), unlabelled=hidden)
