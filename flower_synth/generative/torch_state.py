"""A torch optimizer's and random generator's state as named numpy arrays.

Generators keep their state in Flower's ``Context.state`` as arrays only; these
helpers let a model persist its Adam moments and its random stream across rounds, so
a client rebuilt every round trains on as if it had never stopped.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

OPTIMIZER_PREFIX = "optimizer."
RNG_KEY = "rng_state"


def optimizer_arrays(optimizer: torch.optim.Optimizer) -> dict[str, np.ndarray]:
    """Every per-parameter state tensor as ``optimizer.<index>.<name>`` arrays."""
    arrays = {}
    for index, state in optimizer.state_dict()["state"].items():
        for name, value in state.items():
            arrays[f"{OPTIMIZER_PREFIX}{index}.{name}"] = (
                torch.as_tensor(value).detach().cpu().numpy().copy()
            )
    return arrays


def load_optimizer_arrays(
    optimizer: torch.optim.Optimizer, arrays: Mapping[str, np.ndarray]
) -> bool:
    """Restore what :func:`optimizer_arrays` saved into a freshly built ``optimizer``
    over the same parameters; False (optimizer left fresh) if ``arrays`` hold none."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in arrays.items():
        if key.startswith(OPTIMIZER_PREFIX):
            index, name = key[len(OPTIMIZER_PREFIX) :].split(".", 1)
            state.setdefault(int(index), {})[name] = torch.as_tensor(np.asarray(value))
    if not state:
        return False
    saved = optimizer.state_dict()
    optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})
    return True


def generator_array(generator: torch.Generator) -> np.ndarray:
    """The random generator's state as a ``uint8`` array."""
    return generator.get_state().numpy().copy()


def restore_generator(seed: int, arrays: Mapping[str, np.ndarray]) -> torch.Generator:
    """A generator continuing the stream saved under :data:`RNG_KEY`, else seeded."""
    generator = torch.Generator().manual_seed(seed)
    if RNG_KEY in arrays:
        generator.set_state(torch.as_tensor(np.asarray(arrays[RNG_KEY], dtype=np.uint8)))
    return generator
