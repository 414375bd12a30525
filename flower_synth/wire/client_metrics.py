"""What a client reports besides its payload, validated in one place: its example count
and its metrics.

Every reply of either Flower API passes :func:`check_report` before anything aggregates
it (the strategies' adapters for training and evaluation replies, and the metering
wrappers around any strategy, flwr's ``FedAvg`` included). A reply that fails is that
client's failure: logged with the reason, never aggregated, never the server's crash.

A count is an integer in ``[0, MAX_EXAMPLES]``. A metric is one finite number (a bool
counts as a number; a list, a string or bytes does not), within the range its name
documents (:func:`metric_range`): accuracies, ``label_agreement`` and ``*_auc`` in
[0, 1], ``*_seconds``, ``dp_epsilon`` and ``*_ratio`` >= 0, counts and identities
(:data:`COUNT_KEYS`) integers >= 0; any other metric a finite number. Where counts
weigh a figure, each is capped at ``SIZE_CAP`` times the median of the round's
(:func:`capped_sizes`): a client that claims a vast test set cannot make its own
accuracy the round's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from flwr.common import Scalar

from flower_synth.wire.payload import PayloadError

MAX_EXAMPLES = 2**31 - 1  # a training-set size beyond any int32 count is a lie
SIZE_CAP = 10.0  # a reported size counts at most this many times the round's median
COUNT_KEYS = frozenset(
    {
        "partition_id",
        "client_rounds",
        "fresh_start",
        "pseudo_labelled",
        "pseudo_features",
        "generated_samples",
        "pool_variables",
        "model_variables",
    }
)


def is_integer(value: object) -> bool:
    """An int (numpy's included) that is not a bool."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def metric_range(key: str) -> tuple[float, float, bool]:
    """The documented range of metric ``key``: lowest, highest, and whether it must be
    an integer."""
    if key in COUNT_KEYS:
        return 0.0, float(MAX_EXAMPLES), True
    if "accuracy" in key or key == "label_agreement" or key.endswith("_auc"):
        return 0.0, 1.0, False
    if key.endswith(("_seconds", "_ratio")) or key == "dp_epsilon":
        return 0.0, math.inf, False
    return -math.inf, math.inf, False


def check_num_examples(value: object) -> int:
    """``value`` as a count of examples; :class:`PayloadError` unless it is an integer in
    ``[0, MAX_EXAMPLES]``."""
    if not is_integer(value) or not 0 <= int(value) <= MAX_EXAMPLES:  # type: ignore[call-overload]
        raise PayloadError(f"num_examples must be an integer in [0, {MAX_EXAMPLES}], got {value!r}")
    return int(value)  # type: ignore[call-overload]


def check_metric(key: str, value: object) -> Scalar:
    """``value`` as metric ``key``; :class:`PayloadError` naming the key, the value and
    the range unless it is one finite number in :func:`metric_range` ``(key)``."""
    if not isinstance(key, str):
        raise PayloadError(f"a metric name must be text, got {key!r}")
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if not isinstance(value, int | float | np.integer | np.floating):
        raise PayloadError(
            f"metric {key!r} must be one number, got {type(value).__name__} {value!r:.80}"
        )
    low, high, integer = metric_range(key)
    if integer and not is_integer(value):
        raise PayloadError(f"metric {key!r} must be an integer >= 0, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise PayloadError(
            f"metric {key!r} must be a finite number in [{low}, {high}], got {value!r}"
        )
    return int(value) if integer else value.item() if isinstance(value, np.generic) else value


def check_metrics(metrics: Mapping[str, object]) -> dict[str, Scalar]:
    """Every metric through :func:`check_metric`, as a plain dict."""
    return {key: check_metric(key, value) for key, value in metrics.items()}


def check_report(
    num_examples: object, metrics: Mapping[str, object], loss: object = 0.0
) -> tuple[int, dict[str, Scalar]]:
    """A reply's count and metrics (and a legacy evaluation's ``loss``, a finite number)
    validated: the one check every reply passes before aggregation."""
    if isinstance(loss, bool) or not isinstance(loss, int | float | np.number):
        raise PayloadError(f"loss must be one finite number, got {loss!r:.80}")
    if not math.isfinite(float(loss)):
        raise PayloadError(f"loss must be a finite number, got {loss!r}")
    return check_num_examples(num_examples), check_metrics(metrics)


def capped_sizes(sizes: Sequence[float]) -> np.ndarray:
    """Reported sizes, each capped at :data:`SIZE_CAP` times the median of the positive
    ones: a client that claims a vast data set cannot take over a weighted figure, the
    download shares or the sample quota."""
    sizes = np.asarray(sizes, dtype=float)
    positive = sizes[sizes > 0]
    if positive.size == 0:
        return sizes
    return np.minimum(sizes, SIZE_CAP * max(float(np.median(positive)), 1.0))


def within_total(sizes: Sequence[float], total: float) -> np.ndarray:
    """Reported sizes trimmed so that together they do not exceed ``total``, the
    training examples the whole federation holds where the server knows them: the
    smaller claims are taken as they are and the largest get what those leave. Honest
    claims never sum to more than there is, so they stay whole; a client that claims
    more than exists keeps about its real share, with two or three clients too."""
    sizes = np.asarray(sizes, dtype=float)
    allowed = sizes.copy()
    left = float(total)
    for index in np.argsort(sizes, kind="stable"):
        allowed[index] = min(sizes[index], max(left, 0.0))
        left -= allowed[index]
    return allowed
