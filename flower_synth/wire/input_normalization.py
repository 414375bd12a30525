"""The input normalisation a client reports with its samples, so that a server
classifier given none takes its inputs as the clients' models do: metrics
``input_mean_<c>`` and ``input_std_<c>`` for every channel ``c``, validated here."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

from flwr.common import Scalar

from flower_synth.learning.normalization import Normalization
from flower_synth.wire.payload import PayloadError

MEAN_KEY = "input_mean_"
STD_KEY = "input_std_"
BOUND = 1e4  # no transform of images in [0, 1] needs a mean or std beyond this


def normalization_metrics(normalization: Normalization, channels: int) -> dict[str, float]:
    """``input_mean_<c>`` and ``input_std_<c>`` of ``normalization`` for ``channels``."""
    mean, std = normalization.channel_values(channels)
    values = {f"{MEAN_KEY}{c}": float(v) for c, v in enumerate(mean)}
    return values | {f"{STD_KEY}{c}": float(v) for c, v in enumerate(std)}


def is_normalization_key(key: str) -> bool:
    """Whether a metric says how the client's inputs are normalised (not a measure)."""
    return key.startswith((MEAN_KEY, STD_KEY))


def reported_normalization(metrics: Mapping[str, Scalar], channels: int) -> Normalization | None:
    """The normalisation a client reports (None: it reports none).

    Raises:
        PayloadError: a channel is missing or extra, or a value is not a finite number
            within ``BOUND`` (a std must be > 0).
    """
    keys = {key for key in metrics if is_normalization_key(key)}
    if not keys:
        return None
    expected = {f"{name}{c}" for name in (MEAN_KEY, STD_KEY) for c in range(channels)}
    if keys != expected:
        raise PayloadError(
            f"input normalisation metrics {sorted(keys)} do not name the {channels} channels "
            f"of the samples: send {sorted(expected)}"
        )
    values = {}
    for key in expected:
        value = metrics[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PayloadError(f"metric {key} must be a number, got {value!r}")
        if not math.isfinite(value) or abs(value) > BOUND:
            raise PayloadError(f"metric {key} must be finite and within {BOUND:g}, got {value!r}")
        if key.startswith(STD_KEY) and value <= 0:
            raise PayloadError(f"metric {key} is a standard deviation: > 0, got {value!r}")
        values[key] = float(value)
    return Normalization(
        tuple(values[f"{MEAN_KEY}{c}"] for c in range(channels)),
        tuple(values[f"{STD_KEY}{c}"] for c in range(channels)),
    )


def most_reported(reports: Sequence[Normalization | None]) -> Normalization | None:
    """The normalisation most clients report (ties: the smallest means, then stds, so
    the outcome does not depend on the order replies arrive in); None if none reports."""
    counts = Counter(report for report in reports if report is not None)
    if not counts:
        return None
    return min(counts, key=lambda n: (-counts[n], n.mean, n.std))
