"""What a run's clients shared last, kept beside its results file for the leakage audit
(``keep-shared``): every synthetic pool, or a weight-averaging run's final model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord

from flower_synth.wire.payload import WireBatch

MODEL_PREFIX = "model."  # a final model's arrays, in its state_dict order


def shared_of(results: Path) -> Path:
    """The file beside a results file (``<name>.shared.npz``)."""
    return results.with_suffix(".shared.npz")


def keep_pools(path: Path, pools: dict[str, WireBatch]) -> None:
    """Every pool (keyed by identity, e.g. ``partition-3``) as the server holds it:
    ``<identity>.samples`` (images in [0, 1], float16) and ``<identity>.labels``."""
    arrays = {}
    for key, pool in pools.items():
        decoded = pool.decode()
        arrays[f"{key}.samples"] = decoded.samples.astype(np.float16)
        arrays[f"{key}.labels"] = decoded.labels
    np.savez_compressed(path, **arrays)


def keep_model(path: Path, arrays: ArrayRecord) -> None:
    """A final global model's arrays, in order."""
    named = {f"{MODEL_PREFIX}{index:04d}": a for index, a in enumerate(arrays.to_numpy_ndarrays())}
    np.savez_compressed(path, **named)


def load_shared(path: Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[np.ndarray]]:
    """What :func:`keep_pools` or :func:`keep_model` kept: pools by identity as
    ``(samples, labels)``, and a model's arrays in order (each empty if absent)."""
    with np.load(path) as stored:
        names = sorted(stored.files)
        model = [stored[name] for name in names if name.startswith(MODEL_PREFIX)]
        pools = {
            name.removesuffix(".samples"): (
                stored[name].astype(np.float32),
                stored[name.removesuffix(".samples") + ".labels"],
            )
            for name in names
            if name.endswith(".samples")
        }
    return pools, model
