"""A conditional variational autoencoder (CVAE) for images with values in [0, 1]."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from flower_synth.generative.base import (
    check_choice,
    check_fit_inputs,
    check_number,
)
from flower_synth.generative.cvae_networks import ConvCVAENetwork, CVAENetwork
from flower_synth.generative.gaussian import ClassConditionalGaussian
from flower_synth.generative.torch_images import TorchImageModel
from flower_synth.privacy.dp_sgd import DPSGD

ARCHITECTURES = ("mlp", "conv")
LATENT_PRIORS = ("class", "standard")
LATENT_PREFIX = "latent."
# Ridge on the per-class latent covariances (the standard prior has variance 1).
LATENT_REG_COVAR = 1e-2


class ConditionalVAE(TorchImageModel):
    """A CVAE with a Bernoulli likelihood per pixel, trained with Adam on the negative ELBO.

    The per-image loss is the binary cross-entropy of the reconstruction (summed over
    pixels) plus ``kl_weight`` times ``KL(q(z | x, y) || N(0, I))``, in nats.

    **Sampling.** With ``latent_prior="class"`` (the default), every fit ends by fitting
    one full-covariance Gaussian per class to the encoder's posterior means of the
    (weighted) training images, and samples of class ``c`` decode ``z`` drawn from
    class ``c``'s Gaussian: the latent code then agrees with the label instead of
    coming from ``N(0, I)``, where the class's posterior mass need not be. With
    ``"standard"``, ``z ~ N(0, I)``. Samples are the decoder's Bernoulli means.

    **Weights and cost.** ``sample_weight`` weighs the images. Without ``epoch_size``,
    an epoch visits every row with positive weight once and minimises the weighted
    mean loss (weights rescaled to mean 1). With ``epoch_size``, an epoch draws that
    many rows with replacement in proportion to the weights and minimises their plain
    mean loss: the same objective, at a cost that does not grow with the data passed in.

    **State.** The network, its Adam optimiser and its random stream are created on
    the first fit and kept: every fit trains ``epochs`` more passes from where the last
    stopped (a warm start across federated rounds). :meth:`get_state` holds all three
    and the latent Gaussians, so a model rebuilt from its state (as a Flower client is,
    every round) continues exactly; shuffles and noise differ from fit to fit.
    Initialisation and the first stream come from ``seed`` (the global torch RNG is
    left as it was).

    Classes without weight in a fit get prior 0; the decoder still generates them
    when requested by ``labels`` once they had weight in some fit.

    Args:
        n_classes: Number of classes.
        image_shape: ``(C, H, W)`` of the images.
        latent_dim: Dimension of the latent code ``z``.
        hidden_dim: Width of the encoder's and decoder's hidden layer.
        architecture: ``"mlp"`` (:class:`CVAENetwork`) or ``"conv"``
            (:class:`ConvCVAENetwork`, for image sides divisible by 4).
        epochs: Passes per fit call.
        batch_size: Images per Adam step.
        learning_rate: Adam's step size.
        seed: Seed of the initialisation and of the first random stream.
        latent_prior: ``"class"`` or ``"standard"`` (see Sampling).
        kl_weight: Weight of the KL term (1 is the ELBO; below 1 trades prior fit for
            sharper reconstructions, which the class prior can afford).
        epoch_size: Rows drawn per epoch, or None for one pass over the data.
        device: Where the network trains and decodes (e.g. ``"cuda"``); the random
            streams stay on the CPU, so a seed gives the same draws on any device.
        dp: Train by DP-SGD with these settings (see
            :class:`~flower_synth.generative.torch_images.TorchImageModel`); None:
            plain Adam. Needs ``latent_prior="standard"``: the class prior is
            fitted to the real images' codes without noise.

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
        latent_prior: str = "class",
        kl_weight: float = 1.0,
        epoch_size: int | None = None,
        device: str | torch.device = "cpu",
        dp: DPSGD | None = None,
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
        self.latent_prior = latent_prior
        self.kl_weight = kl_weight
        self.epoch_size = epoch_size
        self.device = device
        self.dp = dp
        self._network: CVAENetwork | ConvCVAENetwork | None = None
        self._optimizer: torch.optim.Adam | None = None
        self._generator: torch.Generator | None = None
        self._latent: ClassConditionalGaussian | None = None

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
        super()._check_params()
        check_choice("architecture", self.architecture, ARCHITECTURES)
        check_choice("latent_prior", self.latent_prior, LATENT_PRIORS)
        check_number("kl_weight", self.kl_weight, positive=False)
        if self.dp is not None and self.latent_prior == "class":
            raise ValueError(
                "latent_prior='class' fits each class's latent Gaussian to the codes of the "
                "real training images, without noise, so no DP guarantee covers what it "
                "samples; use latent_prior='standard' with dp"
            )

    def _build_network(self) -> CVAENetwork | ConvCVAENetwork:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            if self.architecture == "conv":
                shape = tuple(int(d) for d in self.image_shape)
                network = ConvCVAENetwork(shape, self.n_classes, self.latent_dim, self.hidden_dim)
            else:
                features = int(np.prod(self.image_shape))
                network = CVAENetwork(features, self.n_classes, self.latent_dim, self.hidden_dim)
        return network.to(self.device)

    def _fit(self, X: np.ndarray, y: np.ndarray, weight: np.ndarray) -> None:
        x, onehot, weight, y = self._training_tensors(X, y, weight)
        if self._network is None:
            self._network = self._build_network()
        if self._optimizer is None:
            self._optimizer = self._build_optimizer()
        for _ in range(self.epochs):
            total, count = 0.0, 0
            for batch, scale in self._epoch_batches(weight):
                per_row = scale * self._negative_elbo(x[batch], onehot[batch])
                self._descend(per_row)
                total, count = total + per_row.sum().item(), count + len(batch)
            self.last_fit_loss_ = total / count
        if self.latent_prior == "class":
            self._fit_latent_prior(x, onehot, y, weight.cpu().numpy())

    def _fit_latent_prior(
        self, x: torch.Tensor, onehot: torch.Tensor, y: np.ndarray, weight: np.ndarray
    ) -> None:
        """One Gaussian per class on the posterior means of the training images."""
        with torch.no_grad():
            means = torch.cat(
                [
                    self._network.encode(part, hot)[0]
                    for part, hot in zip(x.split(1024), onehot.split(1024), strict=True)
                ]
            )
        if self._latent is None:
            self._latent = self._latent_model()
        self._latent.fit(means.cpu().numpy().astype(np.float64), y, sample_weight=weight)

    def _latent_model(self) -> ClassConditionalGaussian:
        return ClassConditionalGaussian(self.n_classes, "full", reg_covar=LATENT_REG_COVAR)

    def _negative_elbo(self, x: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """Per-image negative ELBO (KL weighted) with one reparameterised draw of ``z``."""
        mean, log_var = self._network.encode(x, onehot)
        noise = torch.randn(mean.shape, generator=self._generator).to(self.device)
        logits = self._network.decode(mean + torch.exp(0.5 * log_var) * noise, onehot)
        reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
        kl = 0.5 * torch.sum(mean**2 + log_var.exp() - 1.0 - log_var, dim=1)
        return reconstruction + self.kl_weight * kl

    def _sample_rows(self, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.latent_prior == "class":
            z = torch.as_tensor(self._latent.sample(len(y), labels=y, random_state=rng)[0])
        else:
            generator = torch.Generator().manual_seed(int(rng.integers(2**63)))
            z = torch.randn(len(y), self.latent_dim, generator=generator)
        onehot = F.one_hot(torch.as_tensor(y), self.n_classes).float().to(self.device)
        with torch.no_grad():
            logits = self._network.decode(z.float().to(self.device), onehot)
            return torch.sigmoid(logits).cpu().numpy()

    def _model_state(self) -> dict[str, np.ndarray]:
        state = self._network_and_optimizer_state()
        if self._latent is not None:
            state |= {LATENT_PREFIX + k: v for k, v in self._latent.get_state().items()}
        return state

    def _load_model_state(self, state: Mapping[str, np.ndarray]) -> None:
        self._load_network_and_optimizer_state(state)
        latent = {
            k[len(LATENT_PREFIX) :]: v for k, v in state.items() if k.startswith(LATENT_PREFIX)
        }
        self._latent = None
        if latent:
            self._latent = self._latent_model()
            self._latent.set_state(latent)
        elif self.latent_prior == "class":
            raise ValueError(
                "state holds no latent class prior; it was saved by a model with "
                "latent_prior='standard': construct this one the same way"
            )
