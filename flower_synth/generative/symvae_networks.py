"""The networks of :class:`~flower_synth.generative.symvae.SymmetricVAE`."""

from __future__ import annotations

import torch
from torch import nn


def bernoulli_mlp(n_inputs: int, n_outputs: int, hidden_dim: int) -> nn.Sequential:
    """Bernoulli logits from an MLP with one tanh hidden layer of width ``hidden_dim``."""
    return nn.Sequential(
        nn.Linear(n_inputs, hidden_dim), nn.Tanh(), nn.Linear(hidden_dim, n_outputs)
    )


class SymVAENetwork(nn.Module):
    """Decoder ``p(z1 | z0, c) p(x | z1, c)`` and encoder ``q(z1 | x, c) q(z0 | z1, c)``.

    Every factor is a product of Bernoullis whose logits come from an MLP with one tanh
    hidden layer; each MLP gets its input with the one-hot class ``c`` appended. ``z0``
    has ``latent_dim`` binary units (its prior, Bernoulli(0.5) each, has no
    parameters) and ``z1`` has ``2 * latent_dim``.

    Args:
        n_features: Pixels per image, ``C * H * W``.
        n_classes: Length of the one-hot class.
        latent_dim: Units of ``z0``.
        hidden_dim: Width of the hidden layers.
    """

    def __init__(self, n_features: int, n_classes: int, latent_dim: int, hidden_dim: int) -> None:
        super().__init__()
        top, middle = latent_dim, 2 * latent_dim
        self.decoder_z1 = bernoulli_mlp(top + n_classes, middle, hidden_dim)
        self.decoder_x = bernoulli_mlp(middle + n_classes, n_features, hidden_dim)
        self.encoder_z1 = bernoulli_mlp(n_features + n_classes, middle, hidden_dim)
        self.encoder_z0 = bernoulli_mlp(middle + n_classes, top, hidden_dim)

    def decoder_parameters(self) -> list[nn.Parameter]:
        """The parameters of ``p(z1 | z0, c)`` and ``p(x | z1, c)``."""
        return [*self.decoder_z1.parameters(), *self.decoder_x.parameters()]

    def encoder_parameters(self) -> list[nn.Parameter]:
        """The parameters of ``q(z1 | x, c)`` and ``q(z0 | z1, c)``."""
        return [*self.encoder_z1.parameters(), *self.encoder_z0.parameters()]

    def decode_z1(self, z0: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """Logits of ``p(z1 | z0, c)``, ``(N, 2 * latent_dim)``."""
        return self.decoder_z1(torch.cat([z0, onehot], dim=1))

    def decode_x(self, z1: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """Logits of ``p(x | z1, c)``, ``(N, n_features)``."""
        return self.decoder_x(torch.cat([z1, onehot], dim=1))

    def encode_z1(self, x: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """Logits of ``q(z1 | x, c)`` for flattened images ``x``, ``(N, 2 * latent_dim)``."""
        return self.encoder_z1(torch.cat([x, onehot], dim=1))

    def encode_z0(self, z1: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """Logits of ``q(z0 | z1, c)``, ``(N, latent_dim)``."""
        return self.encoder_z0(torch.cat([z1, onehot], dim=1))
