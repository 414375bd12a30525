"""A conditional variational autoencoder (CVAE) for images with values in [0, 1]."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from flower_synth.generative.base import (
    GenerativeModel,
    check_choice,
    check_fit_inputs,
    check_int,
    check_number,
    require_keys,
)


class CVAENetwork(nn.Module):
    """Encoder ``q(z | x, y)`` and decoder ``p(x | z, y)``: one-hidden-layer MLPs.

    Both take the flattened image (or latent code) with the one-hot label appended.

    Args:
        n_features: Pixels per image, ``C * H * W``.
        n_classes: Length of the one-hot label.
        latent_dim: Dimension of ``z``.
        hidden_dim: Width of the hidden layers.
    """

    def __init__(self, n_features: int, n_classes: int, latent_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(n_features + n_classes, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, 2 * latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim + n_classes, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, n_features),
        )

    def encode(self, x: torch.Tensor, onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of ``q(z | x, y)``, each ``(N, latent_dim)``."""
        mean, log_var = self.encoder(torch.cat([x, onehot], dim=1)).chunk(2, dim=1)
        return mean, log_var

    def decode(self, z: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits of ``p(x | z, y)``, ``(N, n_features)``."""
        return self.decoder(torch.cat([z, onehot], dim=1))


class ConvCVAENetwork(nn.Module):
    """Encoder and decoder with two stride-2 convolutions each (DCGAN-style), for
    images whose side is divisible by 4; same interface as :class:`CVAENetwork`.

    Args:
        image_shape: ``(C, H, W)`` of the images.
        n_classes: Length of the one-hot label.
        latent_dim: Dimension of ``z``.
        hidden_dim: Width of the fully connected layer between convolutions and ``z``.
    """

    def __init__(
        self, image_shape: tuple[int, int, int], n_classes: int, latent_dim: int, hidden_dim: int
    ) -> None:
        super().__init__()
        channels, height, width = image_shape
        if height % 4 or width % 4:
            raise ValueError(f"the conv CVAE needs H and W divisible by 4, got {height}x{width}")
        self.image_shape = image_shape
        self.grid = (64, height // 4, width // 4)
        flat = int(np.prod(self.grid))
        self.encoder_conv = nn.Sequential(
            nn.Conv2d(channels, 32, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.encoder_head = nn.Sequential(
            nn.Linear(flat + n_classes, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, 2 * latent_dim),
        )
        self.decoder_head = nn.Sequential(
            nn.Linear(latent_dim + n_classes, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, flat),
            nn.ReLU(),
        )
        self.decoder_conv = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(32, channels, 4, stride=2, padding=1),
            nn.Flatten(),
        )

    def encode(self, x: torch.Tensor, onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of ``q(z | x, y)`` for flattened images ``x``."""
        features = self.encoder_conv(x.view(len(x), *self.image_shape))
        mean, log_var = self.encoder_head(torch.cat([features, onehot], dim=1)).chunk(2, dim=1)
        return mean, log_var

    def decode(self, z: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits of ``p(x | z, y)``, flattened to ``(N, C * H * W)``."""
        grid = self.decoder_head(torch.cat([z, onehot], dim=1)).view(len(z), *self.grid)
        return self.decoder_conv(grid)


ARCHITECTURES = ("mlp", "conv")


class ConditionalVAE(GenerativeModel):
    """A CVAE with a Bernoulli likelihood per pixel, trained with Adam on the negative ELBO.

    The per-image loss is the binary cross-entropy of the reconstruction (summed over
    pixels) plus ``KL(q(z | x, y) || N(0, I))``, in nats. ``sample_weight`` weighs the
    per-image losses: weights are rescaled to mean 1 over the rows with positive
    weight (rows with weight 0 are dropped), and each batch minimises the mean of
    ``weight * loss``, so an epoch minimises the weighted mean loss.

    The network and its Adam optimiser are created on the first fit and kept: every
    fit call trains ``epochs`` more passes from the current weights (a warm start
    across federated rounds). Initialisation, shuffling and the reparameterisation
    noise come from ``seed`` (the global torch RNG is left as it was), so equal seeds
    and equal calls give equal models. ``get_state`` holds the network weights, not
    the optimiser: a model restored with ``set_state`` restarts Adam's moments and
    its shuffling stream from ``seed`` on its next fit.

    Classes without weight in a fit get prior 0; the decoder still generates them
    when requested by ``labels`` once they had weight in some fit.

    Args:
        n_classes: Number of classes.
        image_shape: ``(C, H, W)`` of the images.
        latent_dim: Dimension of the latent code ``z``.
        hidden_dim: Width of the encoder's and decoder's hidden layer.
        architecture: ``"mlp"`` (:class:`CVAENetwork`) or ``"conv"``
            (:class:`ConvCVAENetwork`, for image sides divisible by 4).
        epochs: Passes over the data per fit call.
        batch_size: Images per Adam step.
        learning_rate: Adam's step size.
        seed: Seed of the initialisation, the shuffling and the training noise.

    Attributes:
        last_fit_loss_: Weighted mean loss (negative ELBO per image, nats) of the last
            epoch of the latest fit.
    """

    last_fit_loss_: float

    def __init__(
        self,
        n_classes: int,
        image_shape: tuple[int, int, int] = (1, 28, 28),
        latent_dim: int = 20,
        hidden_dim: int = 400,
        architecture: str = "mlp",
        epochs: int = 5,
        batch_size: int = 128,
        learning_rate: float = 1e-3,
        seed: int = 0,
    ) -> None:
        self.n_classes = n_classes
        self.image_shape = image_shape
        self.latent_dim = latent_dim
        self.hidden_dim = hidden_dim
        self.architecture = architecture
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.seed = seed
        self._network: CVAENetwork | ConvCVAENetwork | None = None
        self._optimizer: torch.optim.Adam | None = None
        self._generator: torch.Generator | None = None

    def reconstruction_loss(self, X: np.ndarray, y: np.ndarray) -> float:
        """Mean binary cross-entropy per image of decoding the encoder mean of ``X``.

        Args:
            X: ``(N, C, H, W)`` images in [0, 1].
            y: ``(N,)`` labels.

        Returns:
            The loss in nats per image (summed over pixels, averaged over images).
        """
        self._check_fitted()
        X, y, _ = check_fit_inputs(X, y, None, self.n_classes)
        x, onehot = self._tensors(X, y)
        with torch.no_grad():
            mean, _ = self._network.encode(x, onehot)
            logits = self._network.decode(mean, onehot)
            loss = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
        return float(loss)

    def _check_params(self) -> None:
        shape = self.image_shape
        if not (isinstance(shape, tuple | list) and len(shape) == 3):
            raise ValueError(f"image_shape must be (C, H, W), got {shape!r}")
        for i, dim in enumerate(shape):
            check_int(f"image_shape[{i}]", dim, minimum=1)
        check_int("latent_dim", self.latent_dim, minimum=1)
        check_int("hidden_dim", self.hidden_dim, minimum=1)
        check_choice("architecture", self.architecture, ARCHITECTURES)
        check_int("epochs", self.epochs, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_number("learning_rate", self.learning_rate, positive=True)
        check_int("seed", self.seed, minimum=0)

    def _tensors(self, X: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Flattened float32 images and one-hot labels, after checking shape and range."""
        if X.shape[1:] != tuple(self.image_shape):
            raise ValueError(
                f"X has shape {X.shape}, expected (N, *image_shape) = (N, "
                f"{', '.join(map(str, self.image_shape))}); set image_shape to the data's"
            )
        if X.min() < 0 or X.max() > 1:
            raise ValueError(
                f"X has values in [{X.min():g}, {X.max():g}] but the Bernoulli likelihood "
                "needs [0, 1]; scale the images, e.g. uint8 / 255"
            )
        x = torch.as_tensor(X.reshape(len(X), -1), dtype=torch.float32)
        return x, F.one_hot(torch.as_tensor(y), self.n_classes).float()

    def _build_network(self) -> CVAENetwork | ConvCVAENetwork:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            if self.architecture == "conv":
                shape = tuple(int(d) for d in self.image_shape)
                return ConvCVAENetwork(shape, self.n_classes, self.latent_dim, self.hidden_dim)
            return CVAENetwork(
                int(np.prod(self.image_shape)), self.n_classes, self.latent_dim, self.hidden_dim
            )

    def _fit(self, X: np.ndarray, y: np.ndarray, weight: np.ndarray) -> None:
        keep = weight > 0
        x, onehot = self._tensors(X[keep], y[keep])
        weight = torch.as_tensor(weight[keep] / weight[keep].mean(), dtype=torch.float32)
        if self._network is None:
            self._network = self._build_network()
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(self._network.parameters(), lr=self.learning_rate)
        if self._generator is None:
            self._generator = torch.Generator().manual_seed(self.seed)
        for _ in range(self.epochs):
            total = 0.0
            for batch in torch.randperm(len(x), generator=self._generator).split(self.batch_size):
                loss = torch.mean(weight[batch] * self._negative_elbo(x[batch], onehot[batch]))
                self._optimizer.zero_grad()
                loss.backward()
                self._optimizer.step()
                total += loss.item() * len(batch)
            self.last_fit_loss_ = total / len(x)

    def _negative_elbo(self, x: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """Per-image negative ELBO with one reparameterised draw of ``z``."""
        mean, log_var = self._network.encode(x, onehot)
        noise = torch.randn(mean.shape, generator=self._generator)
        logits = self._network.decode(mean + torch.exp(0.5 * log_var) * noise, onehot)
        reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
        kl = 0.5 * torch.sum(mean**2 + log_var.exp() - 1.0 - log_var, dim=1)
        return reconstruction + kl

    def _sample_rows(self, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        generator = torch.Generator().manual_seed(int(rng.integers(2**63)))
        onehot = F.one_hot(torch.as_tensor(y), self.n_classes).float()
        with torch.no_grad():
            z = torch.randn(len(y), self.latent_dim, generator=generator)
            return torch.sigmoid(self._network.decode(z, onehot)).numpy()

    def _model_state(self) -> dict[str, np.ndarray]:
        return {
            key: value.detach().cpu().numpy().copy()
            for key, value in self._network.state_dict().items()
        }

    def _load_model_state(self, state: Mapping[str, np.ndarray]) -> None:
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
                "same architecture, latent_dim and hidden_dim as the one that produced the state"
            ) from error
        self._network, self._optimizer, self._generator = network, None, None
