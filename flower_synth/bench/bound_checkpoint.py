"""A generator-bound fit saved between runs: the fitted generator's state with the
epochs it has learnt and the seconds they took, so a learning curve that outlasts one
session goes on from where the last one stopped (``generator-bound --checkpoint``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from flower_synth.generative import GenerativeModel

STATE_PREFIX = "state."
EPOCHS_KEY = "bound.epochs"
SECONDS_KEY = "bound.fit_seconds"
SETTINGS_KEY = "bound.settings"


def _settings_text(settings: dict[str, Any]) -> str:
    return json.dumps(settings, sort_keys=True, default=str)


def save_fit(
    path: str | Path,
    model: GenerativeModel,
    epochs: int,
    fit_seconds: float,
    settings: dict[str, Any],
) -> None:
    """Write ``model``'s state, its ``epochs`` so far, their ``fit_seconds`` and the
    ``settings`` it was built and fitted with to ``path`` (``.npz``, no pickles),
    replacing the file only once the new one is whole."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {STATE_PREFIX + key: value for key, value in model.get_state().items()}
    arrays[EPOCHS_KEY] = np.asarray(epochs, dtype=np.int64)
    arrays[SECONDS_KEY] = np.asarray(fit_seconds, dtype=np.float64)
    arrays[SETTINGS_KEY] = np.asarray(_settings_text(settings))
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as handle:
        np.savez(handle, **arrays)
    partial.replace(path)


def load_fit(
    path: str | Path, model: GenerativeModel, settings: dict[str, Any]
) -> tuple[int, float]:
    """Restore into ``model`` the fit saved at ``path`` by :func:`save_fit`.

    Returns:
        The epochs the saved fit has learnt and the seconds they took.

    Raises:
        ValueError: The file was saved with other settings (generator, data, seed or
            parameters), or is not a saved fit.
    """
    path = Path(path).expanduser()
    with np.load(path, allow_pickle=False) as saved:
        arrays = {key: saved[key] for key in saved.files}
    missing = {EPOCHS_KEY, SECONDS_KEY, SETTINGS_KEY} - set(arrays)
    if missing:
        raise ValueError(f"{path} is not a saved generator-bound fit: it lacks {sorted(missing)}")
    saved_settings = json.loads(str(arrays[SETTINGS_KEY]))
    wanted = json.loads(_settings_text(settings))
    if saved_settings != wanted:
        differing = sorted(
            key
            for key in set(saved_settings) | set(wanted)
            if saved_settings.get(key) != wanted.get(key)
        )
        raise ValueError(
            f"{path} holds a fit with other settings ({', '.join(differing)}: saved "
            f"{ {key: saved_settings.get(key) for key in differing} }, asked "
            f"{ {key: wanted.get(key) for key in differing} }); ask for the saved "
            "settings or give another checkpoint file"
        )
    model.set_state(
        {key[len(STATE_PREFIX) :]: v for key, v in arrays.items() if key.startswith(STATE_PREFIX)}
    )
    return int(arrays[EPOCHS_KEY]), float(arrays[SECONDS_KEY])
