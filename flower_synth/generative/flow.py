"""Class-conditional flow matching on the straight (optimal-transport) path."""

from __future__ import annotations

import torch
from torch import nn

from flower_synth.generative.ode_model import ODEImageModel


class FlowMatching(ODEImageModel):
    """A continuous normalizing flow trained by flow matching on the straight path.

    For an image ``x1`` (scaled to [-1, 1]) and noise ``x0 ~ N(0, I)``, the point
    ``x_t = (1 - t) x0 + t x1`` moves with velocity ``x1 - x0``; a class-conditional
    U-Net :class:`~flower_synth.generative.unet.ConditionalUNet` ``v(x, t, c)``
    regresses that velocity at ``t ~ U(0, 1)`` (mean square per pixel). The straight
    path is the minimum-kinetic-energy (optimal-transport) solution of the mean-field
    game of a normalizing flow, so a few steps of an ODE solver from noise at ``t = 0``
    to ``t = 1`` sample well. Samples are clipped to [-1, 1] and returned in [0, 1].

    Weights, epochs, ``epoch_size``, state and random streams behave as in
    :class:`~flower_synth.generative.cvae.ConditionalVAE`: every fit trains
    ``epochs`` more epochs from where the last stopped; :meth:`get_state` holds the
    network, its Adam moments and the random stream, so a model rebuilt from its state
    (a Flower client, every round) continues exactly. The HJB regularizer and
    classifier-free guidance are described in
    :class:`~flower_synth.generative.ode_model.ODEImageModel`.

    Args: as :class:`~flower_synth.generative.ode_model.ODEImageModel`.

    Attributes:
        last_fit_loss_: Weighted mean flow-matching loss of the last epoch of the
            latest fit.
        last_fit_hjb_: Mean HJB residual of that epoch (0 when the option is off).
    """

    def _path_loss(
        self, x1: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x0 = self._normal(x1)
        t = self._random(len(x1))
        x = (1.0 - t)[:, None, None, None] * x0 + t[:, None, None, None] * x1
        error = self._network(x, t, labels) - (x1 - x0)
        return error.flatten(1).pow(2).mean(1), x, t

    def _velocity(
        self, network: nn.Module, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        return network(x, t, labels)
