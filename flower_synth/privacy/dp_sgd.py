"""Differentially private SGD (Abadi et al., 2016) for the torch generators, through
Opacus: each step draws its batch by Poisson sampling (every training row with
probability ``sample_rate``), clips every row's gradient to ``max_grad_norm`` and adds
Gaussian noise of standard deviation ``noise_multiplier * max_grad_norm`` to their sum.
What such a generator produces is differentially private with respect to its training
rows by post-processing; :class:`PrivacyLedger` keeps what a client has spent, with
Opacus' RDP accountant.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


def _opacus():  # noqa: ANN202 - the module, imported where DP is asked for
    try:
        import opacus
        from opacus.accountants import RDPAccountant
    except ImportError as error:  # pragma: no cover - opacus is in the app extra
        raise ImportError(
            "differentially private training needs Opacus: pip install 'flower-synth[privacy]'"
        ) from error
    return opacus, RDPAccountant


@dataclass(frozen=True)
class DPSGD:
    """How a generator trains with differential privacy.

    Args:
        noise_multiplier: the noise's standard deviation per unit of ``max_grad_norm``
            (``sigma``; see :func:`noise_for_budget` to derive it from a budget).
        max_grad_norm: every training row's gradient is clipped to this L2 norm.
    """

    noise_multiplier: float
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        for name in ("noise_multiplier", "max_grad_norm"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value < math.inf):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


class PrivacyLedger:
    """The privacy a client has spent: the Gaussian mechanisms it ran, as Opacus' RDP
    accountant's history of ``(noise_multiplier, sample_rate, steps)``, kept as an
    array (:meth:`to_array`) in the client's state between rounds."""

    def __init__(self, history: np.ndarray | None = None) -> None:
        _, accountant = _opacus()
        self.accountant = accountant()
        rows = np.zeros((0, 3)) if history is None else np.asarray(history, dtype=np.float64)
        self.accountant.history = [(float(s), float(q), int(n)) for s, q, n in rows]

    def spend(self, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
        """Record ``steps`` steps of the Gaussian mechanism at ``noise_multiplier`` on
        rows drawn with probability ``sample_rate`` (1: every row, e.g. a released
        count of L2 sensitivity 1)."""
        history = self.accountant.history
        if history and history[-1][:2] == (noise_multiplier, sample_rate):
            history[-1] = (noise_multiplier, sample_rate, history[-1][2] + steps)
        else:
            history.append((noise_multiplier, sample_rate, steps))

    def epsilon(self, delta: float) -> float:
        """The epsilon spent at ``delta`` (0 before any step)."""
        if not self.accountant.history:
            return 0.0
        with warnings.catch_warnings():  # "optimal order is the largest alpha": still a bound
            warnings.simplefilter("ignore", UserWarning)
            return float(self.accountant.get_epsilon(delta))

    def to_array(self) -> np.ndarray:
        """The history, ``(k, 3)``."""
        return np.asarray(self.accountant.history, dtype=np.float64).reshape(-1, 3)


def noise_for_budget(
    epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    spent: PrivacyLedger | None = None,
) -> float:
    """The smallest noise multiplier with which ``steps`` DP-SGD steps at
    ``sample_rate``, after what ``spent`` holds, spend at most ``(epsilon, delta)``
    (RDP accountant; bisection to 1 %).

    Raises:
        ValueError: a setting out of range, or a budget no noise reaches (``spent``
            alone exceeds it, or the noise would have to exceed 10^4).
    """
    if not 0 < epsilon < math.inf:
        raise ValueError(f"epsilon must be a finite number > 0, got {epsilon!r}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must lie in (0, 1), got {delta!r}")
    if not 0 < sample_rate <= 1:
        raise ValueError(f"sample_rate must lie in (0, 1], got {sample_rate!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    base = np.zeros((0, 3)) if spent is None else spent.to_array()

    def cost(sigma: float) -> float:
        ledger = PrivacyLedger(base)
        ledger.spend(sigma, sample_rate, steps)
        return ledger.epsilon(delta)

    low, high = 0.05, 1e4
    if cost(high) > epsilon:
        raise ValueError(
            f"no noise spends at most epsilon={epsilon} at delta={delta} over {steps} "
            f"steps at sample rate {sample_rate:.3g}: raise the budget, or train fewer "
            "steps (fewer rounds or generator epochs) or on larger batches relative to "
            "the data"
        )
    if cost(low) <= epsilon:
        return low
    while high / low > 1.01:
        middle = math.sqrt(low * high)
        low, high = (low, middle) if cost(middle) <= epsilon else (middle, high)
    return high


def poisson_batches(
    num_rows: int, batch_size: int, steps: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """``steps`` batches of row indices, each row in each with probability
    ``batch_size / num_rows`` (at most 1): the sampling DP-SGD's accounting assumes."""
    rate = min(1.0, batch_size / num_rows)
    for _ in range(steps):
        yield torch.nonzero(torch.rand(num_rows, generator=generator) < rate).flatten()


@contextmanager
def private_steps(
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    dp: DPSGD,
    expected_batch_size: int,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[nn.Module, torch.optim.Optimizer]]:
    """Within the block, hooks on ``network``'s layers (whatever method runs them)
    measure every row's gradient norm without materialising the gradients (Opacus'
    ghost clipping), and :func:`private_step` takes DP-SGD steps with the yielded
    module and optimizer, which steps ``optimizer``. The hooks are removed on leaving.

    Raises:
        ValueError: the network has a layer Opacus cannot take per-row gradients of
            (e.g. batch normalisation).
    """
    opacus, _ = _opacus()
    from opacus.grad_sample import GradSampleModuleFastGradientClipping
    from opacus.optimizers import DPOptimizerFastGradientClipping

    try:
        hooked = GradSampleModuleFastGradientClipping(
            network,
            batch_first=True,
            loss_reduction="mean",
            max_grad_norm=dp.max_grad_norm,
            use_ghost_clipping=True,
        )
    except (NotImplementedError, opacus.validators.errors.UnsupportableModuleError) as error:
        raise ValueError(
            f"differentially private training cannot take per-row gradients of this "
            f"network: {error}"
        ) from error
    private = DPOptimizerFastGradientClipping(
        optimizer,
        noise_multiplier=dp.noise_multiplier,
        max_grad_norm=dp.max_grad_norm,
        expected_batch_size=expected_batch_size,
        generator=generator,
    )
    try:
        with warnings.catch_warnings():  # the hooks fire on outputs when inputs need none
            warnings.filterwarnings("ignore", "Full backward hook", UserWarning)
            yield hooked, private
    finally:
        hooked._close()


def private_step(
    module: nn.Module, optimizer: torch.optim.Optimizer, per_row: torch.Tensor
) -> None:
    """One DP-SGD step on the batch mean of ``per_row`` (losses of one batch's rows)
    with what :func:`private_steps` yields: each row's gradient clipped, the sum
    noised."""
    from opacus.utils.fast_gradient_clipping_utils import DPTensorFastGradientClipping

    optimizer.zero_grad()
    DPTensorFastGradientClipping(module, optimizer, per_row, "mean").backward()
    optimizer.step()
