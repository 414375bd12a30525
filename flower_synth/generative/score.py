"""A class-conditional score-based (diffusion) model sampled through its
probability-flow ODE."""

from __future__ import annotations

import math

import torch
from torch import nn

from flower_synth.generative.ode_model import ODEImageModel

# Sampling starts where the data's share of x_t is this small (x_0 is pure noise).
START_SIGNAL = 0.005


def signal(t: torch.Tensor) -> torch.Tensor:
    """``alpha_t = sin(pi t / 2)``: the data's share of ``x_t`` (variance preserving)."""
    return torch.sin(0.5 * math.pi * t)


def noise_level(t: torch.Tensor) -> torch.Tensor:
    """``sigma_t = cos(pi t / 2)``: the noise's share of ``x_t``."""
    return torch.cos(0.5 * math.pi * t)


class ScoreModel(ODEImageModel):
    """A variance-preserving diffusion on the cosine schedule, learnt by denoising
    score matching and sampled through its probability-flow ODE.

    ``x_t = alpha_t x1 + sigma_t eps`` with ``alpha_t = sin(pi t / 2)``,
    ``sigma_t = cos(pi t / 2)`` (noise at ``t = 0``, data at ``t = 1``); the U-Net
    predicts the noise ``eps`` (mean square per pixel), i.e. the score
    ``grad log p_t(x) = -eps_hat / sigma_t``. Sampling integrates the probability-flow
    ODE, whose velocity is ``E[alpha'_t x1 + sigma'_t eps | x_t]`` =
    ``alpha'_t x1_hat + sigma'_t eps_hat`` with the denoised estimate
    ``x1_hat = (x_t - sigma_t eps_hat) / alpha_t`` clipped to [-1, 1], from
    ``alpha_t = 0.005`` (pure noise) to 1. It is the diffusion member of the
    mean-field-game family whose normalizing-flow member is
    :class:`~flower_synth.generative.flow.FlowMatching`: the same network, state,
    weights, solvers, guidance and HJB option (see
    :class:`~flower_synth.generative.ode_model.ODEImageModel`); its curved path
    needs more steps than the straight one for the same quality.

    Args: as :class:`~flower_synth.generative.ode_model.ODEImageModel`.

    Attributes:
        last_fit_loss_: Weighted mean denoising loss of the last epoch of the latest fit.
        last_fit_hjb_: Mean HJB residual of that epoch (0 when the option is off).
    """

    START_TIME = 2.0 / math.pi * math.asin(START_SIGNAL)

    def _path_loss(
        self, x1: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        eps = self._normal(x1)
        t = self.START_TIME + (1.0 - 2 * self.START_TIME) * self._random(len(x1))
        alpha, sigma = signal(t)[:, None, None, None], noise_level(t)[:, None, None, None]
        x = alpha * x1 + sigma * eps
        error = self._network(x, t, labels) - eps
        return error.flatten(1).pow(2).mean(1), x, t

    def _velocity(
        self, network: nn.Module, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        eps = network(x, t, labels)
        alpha, sigma = signal(t)[:, None, None, None], noise_level(t)[:, None, None, None]
        denoised = ((x - sigma * eps) / alpha.clamp_min(START_SIGNAL)).clamp(-1.0, 1.0)
        return 0.5 * math.pi * (sigma * denoised - alpha * eps)
