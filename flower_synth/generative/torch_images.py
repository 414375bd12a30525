"""What the torch image generators share: checked image tensors, and epochs of
weighted draws from the training rows."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Self

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
from flower_synth.privacy.dp_sgd import (
    DPSGD,
    PrivacyLedger,
    poisson_batches,
    private_step,
    private_steps,
)

DP_HISTORY_KEY = "dp.history"  # the privacy ledger's array in a model's state


class TorchImageModel(GenerativeModel):
    """Base of the generators that learn images in [0, 1] with torch
    (:class:`~flower_synth.generative.cvae.ConditionalVAE`,
    :class:`~flower_synth.generative.symvae.SymmetricVAE`).

    Subclasses set ``n_classes``, ``image_shape``, the integer widths named by
    ``WIDTH_PARAMS``, ``epochs``, ``batch_size``, ``learning_rate``, ``epoch_size``,
    ``seed`` and ``device`` in ``__init__``, keep their networks in ``_network`` (built
    by ``_build_network``) and their random stream in ``_generator``.

    **Differential privacy.** A subclass that trains one optimizer (``_optimizer``)
    over batches from :meth:`_epoch_batches` and sets ``dp`` (a
    :class:`~flower_synth.privacy.DPSGD`) trains with DP-SGD: each epoch takes as many
    steps as it would have batches, each step's batch drawn by Poisson sampling at rate
    ``batch_size / rows`` (row weights then scale the losses), every row's gradient
    clipped and the sum noised (Opacus). ``privacy_`` (a
    :class:`~flower_synth.privacy.PrivacyLedger`) holds every step taken, across fits
    and in the state.
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
    dp: DPSGD | None = None
    privacy_: PrivacyLedger
    _private: tuple[nn.Module, torch.optim.Optimizer] | None = None  # during a DP fit

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

    @property
    def is_private(self) -> bool:
        """Whether the model trains by DP-SGD (``dp`` set)."""
        return self.dp is not None

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> Self:
        """Fit as :meth:`GenerativeModel.fit <flower_synth.generative.base.GenerativeModel.fit>`;
        with ``dp``, by DP-SGD (see the class)."""
        if self.dp is None:
            return super().fit(X, y, sample_weight)
        self._check_params()
        self._prepare_private_fit()
        optimizer = self._optimizer
        on_cpu = torch.device(self.device).type == "cpu"
        steps = private_steps(
            self._network,
            optimizer,
            self.dp,
            self.batch_size,
            self._generator if on_cpu else None,  # noise drawn on the device otherwise
        )
        with steps as private:
            self._private = private
            try:
                return super().fit(X, y, sample_weight)
            finally:
                self._private = None

    def _descend(self, per_row: torch.Tensor, extra: torch.Tensor | None = None) -> None:
        """One optimizer step on the batch mean of ``per_row`` (one loss per row of the
        batch) plus ``extra`` (a scalar; never with ``dp``); with ``dp``, a DP-SGD step."""
        if self._private is not None:
            private_step(*self._private, per_row)
            return
        loss = per_row.mean() if extra is None else per_row.mean() + extra
        self._optimizer.zero_grad()
        loss.backward()
        self._optimizer.step()

    def _prepare_private_fit(self) -> None:
        """Build what a fit builds on first use before the per-row gradient hooks go
        on the network (the random stream as :meth:`_training_tensors` starts it)."""
        if self._network is None:
            self._network = self._build_network()
        if self._optimizer is None:
            self._optimizer = self._build_optimizer()
        if self._generator is None:
            self._generator = torch.Generator().manual_seed(self.seed)
        if not hasattr(self, "privacy_"):
            self.privacy_ = PrivacyLedger()

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
        if self.dp is not None and hasattr(self, "privacy_"):
            state[DP_HISTORY_KEY] = self.privacy_.to_array()
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
        if self.dp is not None:
            self.privacy_ = PrivacyLedger(state.get(DP_HISTORY_KEY))

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
        in proportion to the weights, each loss weighted 1. With ``dp``, as many
        Poisson-sampled batches (see the class), recorded in ``privacy_``.
        """
        if self.dp is not None:
            rows = len(weight) if self.epoch_size is None else self.epoch_size
            steps = -(-rows // self.batch_size)
            self.privacy_.spend(
                self.dp.noise_multiplier, min(1.0, self.batch_size / len(weight)), steps
            )
            for batch in poisson_batches(len(weight), self.batch_size, steps, self._generator):
                if len(batch):
                    batch = batch.to(self.device)
                    yield batch, weight[batch]
            return
        if self.epoch_size is None:
            order, scale = torch.randperm(len(weight), generator=self._generator), weight
        else:
            order = torch.multinomial(
                weight.cpu(), self.epoch_size, replacement=True, generator=self._generator
            )
            scale = torch.ones_like(weight)
        for batch in order.to(self.device).split(self.batch_size):
            yield batch, scale[batch]
