"""How a classifier's inputs are made from images in [0, 1]."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

DIGITS = 4  # decimals of a mean and std read off the data


@dataclass(frozen=True)
class Normalization:
    """How images in [0, 1] become a classifier's inputs: ``(x - mean) / std`` per
    channel (a channel-wise value is repeated over the channels when one is given).
    The default maps [0, 1] to [-1, 1], the scale of every model of this package; give
    the ``mean`` and ``std`` of your own ``transforms.Normalize`` to feed your model
    what it was built for."""

    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)

    def transform(self, channels: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """The map ``x -> (x - mean) / std`` for float images ``(N, C, H, W)`` with
        ``channels`` channels (what torchvision's ``Normalize`` does; written out so that
        the library does not need torchvision, which pins one torch version)."""
        mean, std = self.per_channel(channels)

        def normalize(images: torch.Tensor) -> torch.Tensor:
            return (images - mean.to(images.device)) / std.to(images.device)

        return normalize

    def channel_values(self, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``mean`` and ``std`` with one value per channel (one value repeated over the
        channels); ``ValueError`` if they name another number of channels."""
        mean = self.mean * channels if len(self.mean) == 1 else self.mean
        std = self.std * channels if len(self.std) == 1 else self.std
        if len(mean) != channels or len(std) != channels:
            raise ValueError(
                f"normalization has {len(self.mean)} means and {len(self.std)} stds for "
                f"images with {channels} channels; give one value or one per channel"
            )
        return tuple(mean), tuple(std)

    def per_channel(self, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``mean`` and ``std`` as ``(1, channels, 1, 1)`` tensors (see
        :meth:`channel_values`)."""
        mean, std = self.channel_values(channels)
        return torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)

    @classmethod
    def from_inputs(cls, inputs: torch.Tensor) -> Normalization:
        """The normalisation that took images in [0, 1] to ``inputs`` ``(N, C, H, W)``,
        read off the data: each channel's smallest input is taken for 0 and its largest
        for 1, exact when the images hold black and white pixels (most datasets do;
        otherwise give your transform's ``mean`` and ``std``), rounded to :data:`DIGITS`
        decimals as transforms write them (so clients with the same transform agree)."""
        low = inputs.amin(dim=(0, 2, 3)).double()
        span = (inputs.amax(dim=(0, 2, 3)).double() - low).clamp_min(1e-6)
        mean = tuple(round(value, DIGITS) for value in (-low / span).tolist())
        std = tuple(round(value, DIGITS) for value in (1.0 / span).tolist())
        return cls(mean, std)

    def inverse(self, inputs: torch.Tensor) -> torch.Tensor:
        """Model inputs ``(N, C, H, W)`` back to images in [0, 1] (``x * std + mean``)."""
        mean, std = self.per_channel(inputs.shape[1])
        return inputs * std.to(inputs.device) + mean.to(inputs.device)


SYMMETRIC = Normalization()  # [0, 1] to [-1, 1]: every model of this package
