"""Where torch models train: the ``device`` a run config or a constructor names."""

from __future__ import annotations

import torch


def check_device(name: str | torch.device, available: bool = True) -> torch.device:
    """``name`` as a ``torch.device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``).

    Args:
        name: the device.
        available: also require this machine to have it (a run config is checked
            without: the server need not have the clients' accelerators).

    Raises:
        ValueError: If ``name`` is no device torch knows, or (with ``available``) names
            an accelerator this machine does not have (say ``device='cpu'`` there).
    """
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"unknown device {name!r}; use 'cpu', 'cuda', 'cuda:<index>' or 'mps'"
        ) from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {name!r} is not supported; use 'cpu', 'cuda' or 'mps'")
    if not available:
        return device
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asks for CUDA, which this machine lacks; use 'cpu'")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(
            f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} asks for MPS, which this machine lacks; use 'cpu'")
    return device
