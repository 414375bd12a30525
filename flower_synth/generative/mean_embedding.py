"""A generator fitted to the kernel mean embedding of its data (DP-MERF: Harder, Adamczewski
and Park, AISTATS 2021), which a client can release once with differential privacy and
then train on for free."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from flower_synth.generative.base import check_int, check_number, check_state_shape, require_keys
from flower_synth.generative.torch_images import DP_HISTORY_KEY, TorchImageModel
from flower_synth.privacy.dp_sgd import PrivacyLedger

RELEASE_KEY = "release.sums"  # the private rows' released per-class feature sums
DIGEST_KEY = "release.digest"  # which rows were released (never leaves the model)
CHUNK = 1024  # rows embedded at a time
# A class's release is learnt from (and its count kept) when the norm of its embedding
# sum, estimated from the release, is at least this many times the noise's norm.
SIGNAL_TO_NOISE = 2.0


class EmbeddingGeneratorNetwork(nn.Module):
    """``(z, one-hot class) -> image``: an MLP with batch normalisation and a sigmoid
    output (pixels in [0, 1])."""

    def __init__(self, latent_dim: int, n_classes: int, hidden_dim: int, features: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(latent_dim + n_classes, hidden_dim),
            nn.ReLU(),
            nn.BatchNorm1d(hidden_dim),
            nn.Linear(hidden_dim, 2 * hidden_dim),
            nn.ReLU(),
            nn.BatchNorm1d(2 * hidden_dim),
            nn.Linear(2 * hidden_dim, features),
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        return self.layers(torch.cat([z, onehot], dim=1))


class MeanEmbedding(TorchImageModel):
    """A class-conditional image generator trained to match the data's kernel mean
    embedding.

    Every image ``x`` is mapped to ``num_features`` random Fourier features ``phi(x)``
    of a Gaussian kernel of width ``length_scale`` (unit norm: ``cos`` and ``sin`` of
    ``num_features / 2`` projections drawn from ``seed``); the data's embedding is the
    weighted sum of ``phi(x)`` per class. A fit trains an MLP generator (``z ~ N(0, I)``
    of ``latent_dim`` and the class in, an image out) for ``steps`` Adam steps on the
    squared distance between that embedding (over the total weight) and the embedding
    of a batch of ``batch_size`` generated images whose classes follow the data's
    weights (the maximum mean discrepancy under the approximate kernel). Fits are warm.

    **Differential privacy.** With ``release_noise``, the rows a fit is not told are
    public (``fit(..., public=mask)``; all of them by default) are *released* once: the
    per-class sums of ``[phi(x), 1] / sqrt(2)`` (L2 norm 1 a row, so sensitivity 1 when
    a row is added or removed) get Gaussian noise of standard deviation
    ``release_noise``, one Gaussian mechanism recorded in ``privacy_``. The generator
    then learns only from the release (and the public rows, exactly): later fits on the
    same private rows reuse it and spend nothing, whatever the number of steps or fits,
    and a fit whose private rows differ from the released ones raises ``ValueError``.
    The private rows must share one weight (the release is scaled by it). By
    post-processing: a class whose released embedding sum has an estimated norm below
    :data:`SIGNAL_TO_NOISE` times the noise's (too few examples to show through it) is
    left out of the target (unless no class shows), and ``released_counts_`` holds the
    released class counts with those classes at 0: what the labels of the samples can
    follow without a further release.

    Args:
        n_classes: Number of classes.
        image_shape: ``(C, H, W)`` of the images.
        latent_dim: Dimension of ``z``.
        hidden_dim: Width of the generator's first hidden layer (the second is twice it).
        num_features: Random Fourier features (even).
        length_scale: The Gaussian kernel's width, in the units of the flattened
            images' L2 distance.
        steps: Adam steps per fit.
        batch_size: Generated images per step.
        learning_rate: Adam's step size.
        seed: Seeds the features, the network and the random stream.
        device: Where the network trains and generates.
        release_noise: Noise multiplier of the private release, or None (no privacy).

    Attributes:
        last_fit_loss_: The squared embedding distance, mean over the steps of the
            latest fit.
        privacy_: With ``release_noise``: the privacy spent (a
            :class:`~flower_synth.privacy.PrivacyLedger`).
        released_counts_: With ``release_noise``, once released: ``(n_classes,)`` the
            private rows' class counts as released, 0 for the classes left out.
    """

    WIDTH_PARAMS = ("latent_dim", "hidden_dim", "num_features")
    last_fit_loss_: float

    def __init__(
        self,
        n_classes: int,
        image_shape: tuple[int, int, int] = (1, 28, 28),
        latent_dim: int = 10,
        hidden_dim: int = 200,
        num_features: int = 10_000,
        length_scale: float = 5.0,
        steps: int = 300,
        batch_size: int = 500,
        learning_rate: float = 1e-3,
        seed: int = 0,
        device: str | torch.device = "cpu",
        release_noise: float | None = None,
    ) -> None:
        self.n_classes = n_classes
        self.image_shape = image_shape
        self.latent_dim = latent_dim
        self.hidden_dim = hidden_dim
        self.num_features = num_features
        self.length_scale = length_scale
        self.steps = steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.seed = seed
        self.device = device
        self.release_noise = release_noise
        self.epochs, self.epoch_size = 1, None  # TorchImageModel's; a fit runs ``steps``
        self._network: EmbeddingGeneratorNetwork | None = None
        self._optimizer: torch.optim.Adam | None = None
        self._generator: torch.Generator | None = None
        self._projection: torch.Tensor | None = None
        self._released: np.ndarray | None = None
        self._digest: np.ndarray | None = None
        self._public: np.ndarray | None = None  # during a fit

    @property
    def is_private(self) -> bool:
        """Whether the model learns from a private release (``release_noise`` set)."""
        return self.release_noise is not None

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        sample_weight: np.ndarray | None = None,
        public: np.ndarray | None = None,
    ) -> Self:
        """Fit as :meth:`GenerativeModel.fit <flower_synth.generative.base.GenerativeModel.fit>`;
        ``public`` (``(N,)`` bool) marks the rows that are public already (e.g. samples
        received from others): with ``release_noise`` they enter the embedding as they
        are, the others through the private release (see the class)."""
        if public is not None:
            public = np.asarray(public, dtype=bool)
            if public.shape != (len(X),):
                raise ValueError(
                    f"public has shape {public.shape} but X has {len(X)} rows; pass one "
                    "flag per row"
                )
        self._public = public
        try:
            return super().fit(X, y, sample_weight)
        finally:
            self._public = None

    def _check_params(self) -> None:
        super()._check_params()
        check_int("steps", self.steps, minimum=1)
        check_number("length_scale", self.length_scale, positive=True)
        if self.num_features % 2:
            raise ValueError(f"num_features must be even (cos and sin), got {self.num_features}")
        check_int("batch_size", self.batch_size, minimum=2)  # batch normalisation
        if self.release_noise is not None:
            check_number("release_noise", self.release_noise, positive=True)

    def _build_network(self) -> EmbeddingGeneratorNetwork:
        torch.manual_seed(self.seed)
        features = int(np.prod(self.image_shape))
        network = EmbeddingGeneratorNetwork(
            self.latent_dim, self.n_classes, self.hidden_dim, features
        )
        return network.to(self.device)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """``phi(x)`` of flattened images: ``(N, num_features)``, each row of norm 1."""
        if self._projection is None:
            stream = torch.Generator().manual_seed(self.seed)
            dim = int(np.prod(self.image_shape))
            projection = torch.randn(dim, self.num_features // 2, generator=stream)
            self._projection = (projection / self.length_scale).to(self.device)
        angles = x @ self._projection
        return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1) / np.sqrt(
            self.num_features / 2
        )

    def _class_sums(self, X: np.ndarray, y: np.ndarray, weight: np.ndarray) -> torch.Tensor:
        """Per class, the weighted sums of ``[phi(x), 1]``: ``(n_classes, num_features + 1)``."""
        sums = torch.zeros(self.n_classes, self.num_features + 1, device=self.device)
        for start in range(0, len(X), CHUNK):
            rows = slice(start, start + CHUNK)
            x = self._images(X[rows]).reshape(len(X[rows]), -1)
            w = torch.as_tensor(weight[rows], dtype=torch.float32, device=self.device)
            embedded = torch.cat([self._features(x), torch.ones(len(x), 1, device=self.device)], 1)
            sums.index_add_(0, torch.as_tensor(y[rows], device=self.device), w[:, None] * embedded)
        return sums

    def _release(self, X: np.ndarray, y: np.ndarray) -> torch.Tensor:
        """The private rows' per-class sums as released (noised once, then kept)."""
        digest = np.frombuffer(
            hashlib.sha256(np.ascontiguousarray(X).tobytes() + y.tobytes()).digest(), np.uint8
        )
        if self._released is None:
            sums = self._class_sums(X, y, np.full(len(X), 1 / np.sqrt(2))).cpu().numpy()
            noise = torch.randn(sums.shape, generator=self._generator, dtype=torch.float64)
            self._released = sums + self.release_noise * noise.numpy()
            self._digest = digest
            self.privacy_.spend(self.release_noise, 1.0, 1)
        elif not np.array_equal(digest, self._digest):
            raise ValueError(
                "the private rows differ from those this model released; a release covers "
                "one dataset: build a new MeanEmbedding for other private data"
            )
        released = self._released * np.sqrt(2)
        released[~self._represented()] = 0.0
        return torch.as_tensor(released, dtype=torch.float32).to(self.device)

    def _represented(self) -> np.ndarray:
        """The classes whose released embedding shows through the noise (see the class)."""
        sums = self._released[:, :-1] * np.sqrt(2)
        noise = 2 * self.release_noise**2 * self.num_features  # its squared norm, expected
        signal = np.sqrt(np.clip((sums**2).sum(axis=1) - noise, 0.0, None))
        shows = signal >= SIGNAL_TO_NOISE * np.sqrt(noise)
        return shows if shows.any() else np.ones_like(shows)  # none: keep every class

    @property
    def released_counts_(self) -> np.ndarray:
        """See the class's attributes."""
        if self._released is None:
            raise AttributeError("released_counts_ exists once a fit has released the data")
        counts = np.clip(self._released[:, -1] * np.sqrt(2), 0.0, None)
        return np.where(self._represented(), counts, 0.0)

    def _target(self, X: np.ndarray, y: np.ndarray, weight: np.ndarray) -> torch.Tensor:
        """Per class, the embedding sums and (last column) weights the generator matches."""
        if self.release_noise is None:
            return self._class_sums(X, y, weight)
        public = np.zeros(len(X), bool) if self._public is None else self._public
        private = ~public
        sums = self._class_sums(X[public], y[public], weight[public])
        if private.any():
            weights = np.unique(weight[private])
            if len(weights) > 1:
                raise ValueError(
                    "the private rows have different weights; a release is scaled by one "
                    "weight: weigh the private rows equally"
                )
            sums = sums + float(weights[0]) * self._release(X[private], y[private])
        return sums

    def _fit(self, X: np.ndarray, y: np.ndarray, weight: np.ndarray) -> None:
        if self._generator is None:
            self._generator = torch.Generator().manual_seed(self.seed)
        if self.release_noise is not None and not hasattr(self, "privacy_"):
            self.privacy_ = PrivacyLedger()
        target = self._target(X, y, weight)
        masses = target[:, -1].clamp(min=0)
        if not masses.sum() > 0:
            raise ValueError("the released class weights are all <= 0; nothing to learn from")
        goal = target[:, :-1] / masses.sum()
        if self._network is None:
            self._network = self._build_network()
        if self._optimizer is None:
            self._optimizer = self._build_optimizer()
        self._network.train()
        total = 0.0
        for _ in range(self.steps):
            labels = torch.multinomial(
                masses.cpu(), self.batch_size, replacement=True, generator=self._generator
            )
            onehot = F.one_hot(labels, self.n_classes).float().to(self.device)
            z = torch.randn(self.batch_size, self.latent_dim, generator=self._generator)
            images = self._network(z.to(self.device), onehot)
            embedding = onehot.T @ self._features(images) / self.batch_size
            loss = ((embedding - goal) ** 2).sum()
            self._optimizer.zero_grad()
            loss.backward()
            self._optimizer.step()
            total += loss.item()
        self.last_fit_loss_ = total / self.steps
        self._network.eval()

    def _sample_rows(self, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        generator = torch.Generator().manual_seed(int(rng.integers(2**63)))
        z = torch.randn(len(y), self.latent_dim, generator=generator)
        onehot = F.one_hot(torch.as_tensor(y), self.n_classes).float()
        self._network.eval()
        with torch.no_grad():
            return self._network(z.to(self.device), onehot.to(self.device)).cpu().numpy()

    def _model_state(self) -> dict[str, np.ndarray]:
        state = self._network_and_optimizer_state()
        if self.release_noise is not None:
            state[DP_HISTORY_KEY] = self.privacy_.to_array()
        if self._released is not None:
            state |= {RELEASE_KEY: self._released.copy(), DIGEST_KEY: self._digest.copy()}
        return state

    def _load_model_state(self, state: Mapping[str, np.ndarray]) -> None:
        self._load_network_and_optimizer_state(state)
        self._network.eval()
        self._released = self._digest = None
        if self.release_noise is None:
            return
        self.privacy_ = PrivacyLedger(state.get(DP_HISTORY_KEY))
        if RELEASE_KEY in state:
            require_keys(state, (DIGEST_KEY,))
            released = np.asarray(state[RELEASE_KEY], dtype=np.float64)
            check_state_shape(RELEASE_KEY, released, (self.n_classes, self.num_features + 1))
            self._released = released
            self._digest = np.asarray(state[DIGEST_KEY], dtype=np.uint8)
