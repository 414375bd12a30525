"""What the torch image generators share: checked image tensors, and epochs of
weighted draws from the training rows."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from flower_synth.generative.base import GenerativeModel, check_int, check_number, require_keys
from flower_synth.generative.torch_state import (
    RNG_KEY,
    generator_array,
    load_optimizer_arrays,
    optimizer_arrays,
    restore_generator,
)


class TorchImageModel(GenerativeModel):
    """Base of the generators that learn images in [0, 1] with torch
    (:class:`~flower_synth.generative.cvae.ConditionalVAE`,
    :class:`~flower_synth.generative.symvae.SymmetricVAE`).

    Subclasses set ``n_classes``, ``image_shape``, the integer widths named by
    ``WIDTH_PARAMS``, ``epochs``, ``batch_size``, ``learning_rate``, ``epoch_size``,
    ``seed`` and ``device`` in ``__init__``, keep their networks in ``_network`` (built
    by ``_build_network``) and their random stream in ``_generator``.
    """

    WIDTH_PARAMS: tuple[str, ...] = ("latent_dim", "hidden_dim")

    seed: int
    image_shape: tuple[int, int, int]
    epochs: int
    batch_size: int
    epoch_size: int | None
    device: str | torch.device
    _generator: torch.Generator | None
    _network: nn.Module | None

    learning_rate: float

    def _check_params(self) -> None:
        """The parameters every torch image model has; subclasses add their own."""
        shape = self.image_shape
        if not (isinstance(shape, tuple | list) and len(shape) == 3):
            raise ValueError(f"image_shape must be (C, H, W), got {shape!r}")
        for i, dim in enumerate(shape):
            check_int(f"image_shape[{i}]", dim, minimum=1)
        for name in self.WIDTH_PARAMS:
            check_int(name, getattr(self, name), minimum=1)
        check_int("epochs", self.epochs, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_number("learning_rate", self.learning_rate, positive=True)
        check_int("seed", self.seed, minimum=0)
        if self.epoch_size is not None:
            check_int("epoch_size", self.epoch_size, minimum=1)

    def _build_network(self) -> nn.Module:
        """The untrained networks, initialised from ``seed``."""
        raise NotImplementedError

    def parameter_count(self) -> int:
        """The networks' learnable parameters (Adam moments and random stream aside).

        Raises:
            NotFittedError: If the model is not fitted.
        """
        self._check_fitted()
        return int(sum(p.numel() for p in self._network.parameters()))

    def _network_state(self) -> dict[str, np.ndarray]:
        """The networks' parameters and the random stream, as arrays."""
        state = {
            key: value.detach().cpu().numpy().copy()
            for key, value in self._network.state_dict().items()
        }
        if self._generator is not None:
            state[RNG_KEY] = generator_array(self._generator)
        return state

    def _build_optimizer(self) -> torch.optim.Adam:
        """One Adam over every network parameter (kept in ``_optimizer``)."""
        return torch.optim.Adam(self._network.parameters(), lr=self.learning_rate)

    def _network_and_optimizer_state(self) -> dict[str, np.ndarray]:
        """:meth:`_network_state` and, once it exists, the Adam of ``_optimizer``."""
        state = self._network_state()
        if self._optimizer is not None:
            state |= optimizer_arrays(self._optimizer)
        return state

    def _load_network_and_optimizer_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore what :meth:`_network_and_optimizer_state` saved (no optimizer if the
        state holds none)."""
        self._load_network_state(state)
        self._optimizer = self._build_optimizer()
        if not load_optimizer_arrays(self._optimizer, state):
            self._optimizer = None

    def _load_network_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Rebuild the networks and the random stream from :meth:`_network_state`'s
        arrays; ``ValueError`` where they do not fit this model's construction."""
        if self.sample_shape_ != tuple(self.image_shape):
            raise ValueError(
                f"state is for images of shape {self.sample_shape_}, but image_shape is "
                f"{tuple(self.image_shape)}; construct the model with the state's image_shape"
            )
        network = self._build_network()
        keys = list(network.state_dict())
        require_keys(state, keys)
        try:
            network.load_state_dict({key: torch.as_tensor(np.asarray(state[key])) for key in keys})
        except RuntimeError as error:
            raise ValueError(
                f"state does not fit this network ({error}); construct the model with the "
                f"same architecture and {', '.join(self.WIDTH_PARAMS)} as the one that "
                "produced the state"
            ) from error
        self._network = network
        self._generator = restore_generator(self.seed, state)

    def _tensors(self, X: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Flattened float32 images and one-hot labels, after checking shape and range."""
        x = self._images(X).reshape(len(X), -1)
        return x, F.one_hot(torch.as_tensor(y), self.n_classes).float().to(self.device)

    def _images(self, X: np.ndarray) -> torch.Tensor:
        """``X`` as a float32 ``(N, C, H, W)`` tensor on ``device``, after checking its
        shape and its range."""
        if X.shape[1:] != tuple(self.image_shape):
            raise ValueError(
                f"X has shape {X.shape}, expected (N, *image_shape) = (N, "
                f"{', '.join(map(str, self.image_shape))}); set image_shape to the data's"
            )
        if X.min() < 0 or X.max() > 1:
            raise ValueError(
                f"X has values in [{X.min():g}, {X.max():g}] but {type(self).__name__} "
                "learns images in [0, 1]; scale the images, e.g. uint8 / 255"
            )
        return torch.as_tensor(X, dtype=torch.float32).to(self.device)

    def _training_tensors(
        self, X: np.ndarray, y: np.ndarray, weight: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray]:
        """Images, one-hot labels, weights (rescaled to mean 1) and labels of the rows
        with positive weight; starts the random stream from ``seed`` on the first fit."""
        keep = weight > 0
        if not keep.all():
            X, y, weight = X[keep], y[keep], weight[keep]
        x, onehot = self._tensors(X, y)
        weights = torch.as_tensor(weight / weight.mean(), dtype=torch.float32).to(self.device)
        if self._generator is None:
            self._generator = torch.Generator().manual_seed(self.seed)
        return x, onehot, weights, y

    def _epoch_batches(self, weight: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """For one epoch, the row indices of every batch and each row's loss weight.

        Without ``epoch_size`` an epoch visits every row once, each loss weighted by
        its row's weight; with it, an epoch draws ``epoch_size`` rows with replacement
        in proportion to the weights, each loss weighted 1.
        """
        if self.epoch_size is None:
            order, scale = torch.randperm(len(weight), generator=self._generator), weight
        else:
            order = torch.multinomial(
                weight.cpu(), self.epoch_size, replacement=True, generator=self._generator
            )
            scale = torch.ones_like(weight)
        for batch in order.to(self.device).split(self.batch_size):
            yield batch, scale[batch]
