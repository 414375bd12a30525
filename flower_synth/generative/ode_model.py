"""What the flow-matching and the score-based generator share: a class-conditional
U-Net trained on a noise-to-data path, sampled by integrating an ODE, with
classifier-free guidance and an HJB regularizer as options."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn
from torch.func import jvp
from torch.optim.swa_utils import AveragedModel

from flower_synth.generative.base import check_choice, check_int, check_number
from flower_synth.generative.ode_sampling import SOLVERS, integrate
from flower_synth.generative.torch_images import TorchImageModel
from flower_synth.generative.unet import ConditionalUNet
from flower_synth.learning.devices import check_device
from flower_synth.privacy.dp_sgd import DPSGD

EMA_PREFIX = "ema."


class ODEImageModel(TorchImageModel):
    """Base of :class:`~flower_synth.generative.flow.FlowMatching` and
    :class:`~flower_synth.generative.score.ScoreModel`.

    Images in [0, 1] are learnt on [-1, 1]. A subclass defines the path from noise
    (``t = 0``) to data (``t = 1``) by two hooks: ``_path_loss`` (the per-image
    regression loss at random times) and ``_velocity`` (the velocity of the ODE whose
    solution carries noise to data, from the network's output); the start time of
    sampling is ``START_TIME``.

    **HJB regularizer** (``hjb_weight > 0``). In the mean-field game of a continuous
    normalizing flow with kinetic running cost (Zhang & Katsoulakis), the optimal
    velocity is the gradient of a potential solving the Hamilton-Jacobi-Bellman
    equation; its gradient says the velocity does not change along a particle's path,
    ``dv/dt + (grad v) v = 0`` (straight paths, which few ODE steps integrate
    exactly). The option adds ``hjb_weight`` times the mean square of that residual at
    the training points, computed with one forward-mode derivative of the network
    along ``(v, 1)``; it roughly triples the cost of a step.

    **Guidance.** With ``class_dropout > 0`` the network also learns the
    unconditional velocity (a label replaced by the "no class" token); sampling with
    ``guidance_scale`` ``w != 1`` uses ``v_uncond + w (v_cond - v_uncond)`` (two
    evaluations a step).

    Args:
        n_classes: Number of classes.
        image_shape: ``(C, H, W)``, sides divisible by 4.
        channels: Width of the U-Net at full resolution (twice that below).
        epochs: Passes per fit call.
        batch_size: Images per Adam step.
        learning_rate: Adam's step size.
        seed: Seed of the initialisation and of the first random stream.
        steps: ODE steps per sample.
        solver: ``"euler"``, ``"midpoint"`` or ``"heun"`` (the last two: second
            order, two network evaluations a step).
        guidance_scale: Classifier-free guidance weight (1: none).
        class_dropout: Share of training labels replaced by the "no class" token.
        hjb_weight: Weight of the HJB residual (0: off).
        epoch_size: Rows drawn per epoch, or None for one pass over the data.
        sample_batch_size: Images integrated at once when sampling.
        ema_decay: Samples come from an exponential moving average of the weights
            with this decay per step (warmed up as ``min(decay, (1 + n) / (10 + n))``
            after ``n`` steps, so a model trained a few steps a round is not stuck
            near its first weights); 0 samples with the trained weights themselves.
        device: Where the network trains and samples (e.g. ``"cuda"``); random streams
            stay on the CPU, so a seed gives the same draws on any device.
        dp: Train by DP-SGD with these settings (see
            :class:`~flower_synth.generative.torch_images.TorchImageModel`); None:
            plain Adam. Not with ``hjb_weight``: per-row gradients of the
            residual's derivative are beyond Opacus.
    """

    WIDTH_PARAMS = ("channels",)
    START_TIME = 0.0

    channels: int
    steps: int
    solver: str
    guidance_scale: float
    class_dropout: float
    hjb_weight: float
    sample_batch_size: int
    ema_decay: float
    last_fit_loss_: float
    last_fit_hjb_: float

    def __init__(
        self,
        n_classes: int,
        image_shape: tuple[int, int, int] = (1, 28, 28),
        channels: int = 16,
        epochs: int = 1,
        batch_size: int = 128,
        learning_rate: float = 2e-3,
        seed: int = 0,
        steps: int = 8,
        solver: str = "euler",
        guidance_scale: float = 1.0,
        class_dropout: float = 0.0,
        hjb_weight: float = 0.0,
        epoch_size: int | None = None,
        sample_batch_size: int = 256,
        ema_decay: float = 0.999,
        device: str | torch.device = "cpu",
        dp: DPSGD | None = None,
    ) -> None:
        self.n_classes = n_classes
        self.image_shape = image_shape
        self.channels = channels
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.seed = seed
        self.steps = steps
        self.solver = solver
        self.guidance_scale = guidance_scale
        self.class_dropout = class_dropout
        self.hjb_weight = hjb_weight
        self.epoch_size = epoch_size
        self.sample_batch_size = sample_batch_size
        self.ema_decay = ema_decay
        self.device = device
        self.dp = dp
        self._network = None
        self._optimizer = None
        self._generator = None
        self._ema: AveragedModel | None = None

    def _check_params(self) -> None:
        super()._check_params()
        check_int("steps", self.steps, minimum=1)
        check_choice("solver", self.solver, SOLVERS)
        check_number("guidance_scale", self.guidance_scale, positive=False)
        check_number("hjb_weight", self.hjb_weight, positive=False)
        check_int("sample_batch_size", self.sample_batch_size, minimum=1)
        if self.dp is not None and self.hjb_weight > 0:
            raise ValueError(
                "hjb_weight > 0 differentiates the network along its own output, whose "
                "per-row gradients Opacus cannot take; set hjb_weight=0 with dp"
            )
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.class_dropout < 1.0:
            raise ValueError(f"class_dropout must lie in [0, 1), got {self.class_dropout}")
        if self.guidance_scale != 1.0 and self.class_dropout == 0.0:
            raise ValueError(
                f"guidance_scale={self.guidance_scale} needs the unconditional velocity: "
                "train with class_dropout > 0 (e.g. 0.1), or keep guidance_scale=1"
            )
        check_device(self.device)

    def _build_network(self) -> ConditionalUNet:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            shape = tuple(int(d) for d in self.image_shape)
            network = ConditionalUNet(shape, self.n_classes, self.channels)
        # channels-last convolutions train about 1.5x faster on a CPU
        return network.to(self.device, memory_format=torch.channels_last)

    def _random(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self._generator).to(self.device)

    def _normal(self, like: torch.Tensor) -> torch.Tensor:
        return torch.randn(like.shape, generator=self._generator).to(self.device)

    def _fit(self, X: np.ndarray, y: np.ndarray, weight: np.ndarray) -> None:
        flat, _, weight, y = self._training_tensors(X, y, weight)
        images = flat.view(len(flat), *self.image_shape) * 2.0 - 1.0
        labels = torch.as_tensor(y, dtype=torch.int64).to(self.device)
        if self._network is None:
            self._network = self._build_network()
        if self._optimizer is None:
            self._optimizer = self._build_optimizer()
        if self._ema is None and self.ema_decay > 0:
            self._ema = self._build_ema()
        self._network.train()
        for _ in range(self.epochs):
            total, residual, count = 0.0, 0.0, 0
            for batch, scale in self._epoch_batches(weight):
                x1 = images[batch].contiguous(memory_format=torch.channels_last)
                kept = labels[batch]
                if self.class_dropout > 0:
                    dropped = self._random(len(batch)) < self.class_dropout
                    kept = torch.where(dropped, torch.full_like(kept, self.n_classes), kept)
                per_row, x, t = self._path_loss(x1, kept)
                per_row = scale * per_row
                loss, extra = per_row.mean(), None
                if self.hjb_weight > 0:
                    hjb = self._hjb_residual(x, t, kept)
                    extra = self.hjb_weight * hjb
                    residual += hjb.item() * len(batch)
                self._descend(per_row, extra)
                if self._ema is not None:
                    self._ema.update_parameters(self._network)
                total, count = total + loss.item() * len(batch), count + len(batch)
            self.last_fit_loss_ = total / count
            self.last_fit_hjb_ = residual / count

    def _path_loss(
        self, x1: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-image loss at random times, with the points and times it was taken at."""
        raise NotImplementedError

    def _velocity(
        self, network: nn.Module, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """The sampling ODE's velocity at ``(x, t)`` for ``labels`` under ``network``."""
        raise NotImplementedError

    def _prepare_private_fit(self) -> None:
        """Also the weight average, copied from the network before its gradient hooks."""
        super()._prepare_private_fit()
        if self._ema is None and self.ema_decay > 0:
            self._ema = self._build_ema()

    def _build_ema(self) -> AveragedModel:
        decay = self.ema_decay

        # torch's get_ema_multi_avg_fn has a fixed decay; this one warms up
        def warmed_up(averaged: list, current: list, steps: torch.Tensor | int) -> None:
            n = float(steps)
            torch._foreach_lerp_(averaged, current, 1.0 - min(decay, (1.0 + n) / (10.0 + n)))

        return AveragedModel(self._network, multi_avg_fn=warmed_up)

    def _sampling_network(self) -> nn.Module:
        return self._network if self._ema is None else self._ema.module

    def _hjb_residual(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean square of the velocity's material derivative ``dv/dt + (grad v) v``."""
        with torch.no_grad():
            direction = self._velocity(self._network, x, t, labels)

        def field(points: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
            return self._velocity(self._network, points, times, labels)

        _, acceleration = jvp(field, (x, t), (direction, torch.ones_like(t)))
        return acceleration.flatten(1).pow(2).mean()

    def _guided_velocity(
        self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        network = self._sampling_network()
        if self.guidance_scale == 1.0:
            return self._velocity(network, x, t, labels)
        unconditional = torch.full_like(labels, self.n_classes)
        both = self._velocity(
            network, torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, unconditional])
        )
        conditional, free = both.chunk(2)
        return free + self.guidance_scale * (conditional - free)

    def _times(self, steps: int) -> torch.Tensor:
        return torch.linspace(self.START_TIME, 1.0, steps + 1)

    @torch.no_grad()
    def _integrate(
        self, y: np.ndarray, rng: np.random.Generator, steps: int, solver: str, relative: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """End points in [-1, 1] and kinetic energies of ``len(y)`` paths from noise
        (``relative``: each divided by that of the straight path between its ends)."""
        self._sampling_network().eval()
        generator = torch.Generator().manual_seed(int(rng.integers(2**63)))
        labels = torch.as_tensor(y, dtype=torch.int64)
        times = self._times(steps)
        ends, energies = [], []
        for part in labels.split(self.sample_batch_size):
            noise = torch.randn((len(part), *self.image_shape), generator=generator)
            noise = noise.to(self.device).contiguous(memory_format=torch.channels_last)
            part = part.to(self.device)
            end, energy = integrate(
                lambda x, t, part=part: self._guided_velocity(x, t, part), noise, times, solver
            )
            if relative:  # the straight path at constant speed: |end - noise|^2 / duration
                straight = (end - noise).flatten(1).pow(2).mean(1) / float(times[-1] - times[0])
                energy = energy / straight
            ends.append(end.clamp(-1.0, 1.0).cpu())
            energies.append(energy.cpu())
        if not ends:
            return torch.zeros((0, *self.image_shape)), torch.zeros(0)
        return torch.cat(ends), torch.cat(energies)

    def _sample_rows(self, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        end, _ = self._integrate(y, rng, self.steps, self.solver, relative=False)
        return ((end + 1.0) / 2.0).contiguous().numpy()

    def kinetic_energy(
        self,
        labels: np.ndarray,
        random_state: int | np.random.Generator | None = None,
        steps: int | None = None,
        solver: str | None = None,
        relative: bool = False,
    ) -> float:
        """Mean kinetic energy per dimension, ``int_0^1 |v(x_t, t)|^2 dt``, of the
        sampling paths of images of classes ``labels`` (``steps`` and ``solver``
        default to the model's): the straight path's is ``|x1 - x0|^2``, and a
        regularizer that straightens paths lowers it toward that.

        With ``relative``, each path's energy is divided by that of the straight path
        between its own ends: 1 for a straight path at constant speed (the least any
        path between the same ends takes), more the more it bends; how much a
        path-straightening step such as reflow could gain."""
        self._check_fitted()
        steps = self.steps if steps is None else steps
        check_int("steps", steps, minimum=1)
        y = self._check_labels(labels, len(labels))
        _, energy = self._integrate(
            y, np.random.default_rng(random_state), steps, solver or self.solver, relative
        )
        return float(energy.mean())

    def _model_state(self) -> dict[str, np.ndarray]:
        state = self._network_and_optimizer_state()
        if self._ema is not None:
            for key, value in self._ema.state_dict().items():
                state[EMA_PREFIX + key] = value.detach().cpu().numpy().copy()
        return state

    def _load_model_state(self, state: Mapping[str, np.ndarray]) -> None:
        self._load_network_and_optimizer_state(state)
        averaged = {k[len(EMA_PREFIX) :]: v for k, v in state.items() if k.startswith(EMA_PREFIX)}
        self._ema = None
        if self.ema_decay > 0:
            self._ema = self._build_ema()
            if averaged:
                self._ema.load_state_dict(
                    {key: torch.as_tensor(np.asarray(value)) for key, value in averaged.items()}
                )
