"""A client on composited images whose model has the clean item as a latent variable.

The client sees images ``x`` made of an item ``s`` over a background ``b``, pixel by
pixel the brighter (:mod:`flower_synth.data.composite`); it never sees ``s`` or ``b``.
Its model has ``(c, s, x)``: it knows the compositing rule, not the backgrounds, and
learns both directions of it by wake-sleep, one step per round in which it receives
clean items ``(c, s)`` (synthetic, from clean clients' generators):

* *sleep*: received items laid over the client's current background estimates are
  complete samples ``(s, b, x)``; a small network (:class:`ItemMask`, the inference
  side ``x -> s``) learns from them which pixels of ``x`` show the item (``s > b``);
* *wake*: that network marks the item pixels of the client's own images; the rest of
  each image is a background estimate with a hole, filled from other images'
  backgrounds where they have none, and from the image's own visible mean after
  :data:`FILL_DRAWS` tries.

The received items laid over fresh background estimates are what the client learns
from: labelled samples of its own modality (``(c, x)``), beside its own images and the
``(c, x)`` pools of other composited clients, which it takes as they are. Before its
first sleep the client has no background estimate but its own images (items included).

With ``mask_steps=0`` (the default) there is no wake-sleep and clean items are taken as
they are: measured on Fashion-MNIST, the sleep phase learnt on *generated* items misses
much of the real items in the client's own images, and laying generated items over
those estimates cost 3 points against taking them as they are (it gains with real
items; docs/RESULTS.md, "Two modalities").
"""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import RecordDict
from torch import nn

from flower_synth.learning.state import load_module, save_module
from flower_synth.learning.training import Device
from flower_synth.wire.payload import SampleBatch
from flower_synth.wire.variables import CLEAN, COMPOSITED, COMPOSITED_MODEL, Variables

MASK_STATE = "synthetic.item_mask"
MASK_STREAM = 0x5EE9  # keeps the sleep phase's draws apart from the learner's
FILL_DRAWS = 3  # other images a background's hole is filled from, before its mean
ITEM_THRESHOLD = 0.5  # a pixel is the item's where the mask says so with this probability
FAINT = 0.02  # item pixels dimmer than this are empty (Fashion-MNIST's black surround)


class ItemMask(nn.Module):
    """Which pixels of a composited image show the item: per-pixel logits from four
    3x3 convolutions with growing dilation (receptive field 15 pixels), 16 channels."""

    def __init__(self, channels: int = 1, width: int = 16) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=2, dilation=2),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=4, dilation=4),
            nn.ReLU(),
            nn.Conv2d(width, 1, 3, padding=1),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, 1, H, W)`` of images ``(N, C, H, W)`` in [0, 1]."""
        return self.layers(images)


class CompositedModality:
    """Takes clean items into a composited client's modality (see the module).

    Args:
        images: the client's own training images, labelled or not, ``uint8``
            ``(N, C, H, W)``: where its background estimates come from.
        mask_steps: sleep-phase steps per round (400 in the measurements); 0, the
            default, takes clean items as they are (no wake-sleep, no backgrounds):
            measured better while the received items are generated ones (docs/RESULTS.md,
            "Two modalities").
        batch_size: sleep-phase batch size.
        learning_rate: Adam's step size for the mask network.
        device: where the mask network trains.
    """

    model_variables: Variables = COMPOSITED_MODEL
    pool_variables: Variables = COMPOSITED

    def __init__(
        self,
        images: np.ndarray,
        mask_steps: int = 0,
        batch_size: int = 64,
        learning_rate: float = 2e-3,
        device: Device = "cpu",
    ) -> None:
        if images.dtype != np.uint8 or images.ndim != 4 or not len(images):
            raise ValueError(
                f"images must be uint8 (N, C, H, W) with N >= 1, got {images.dtype} {images.shape}"
            )
        if mask_steps < 0 or batch_size < 1:
            raise ValueError(f"need mask_steps >= 0, batch_size >= 1: {mask_steps}, {batch_size}")
        self.images = images.astype(np.float32) / 255.0
        self.mask_steps = mask_steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.device = device

    def adopt(
        self,
        received: SampleBatch,
        groups: list[tuple[Variables, slice]],
        state: RecordDict,
        seed: int,
    ) -> SampleBatch:
        """``received`` with its clean items laid over background estimates, after one
        wake-sleep step (see the module); ``(c, x)`` rows are kept as they are."""
        rows = np.concatenate(
            [np.arange(len(received))[part] for variables, part in groups if variables == CLEAN]
            or [np.zeros(0, dtype=np.int64)]
        )
        if not len(rows) or not self.mask_steps:
            return received
        rng = np.random.default_rng([seed, MASK_STREAM])
        torch.manual_seed(int(rng.integers(2**31)))
        network = ItemMask(self.images.shape[1]).to(self.device)
        trained = load_module(state, MASK_STATE, network)
        holes = self.item_pixels(network) if trained else np.zeros(self.images.shape, bool)
        items = received.samples[rows]
        self.learn_masks(network, items, holes, rng)
        save_module(state, MASK_STATE, network)
        holes = self.item_pixels(network)
        samples = received.samples.copy()
        samples[rows] = np.maximum(items, self.backgrounds(holes, len(rows), rng))
        return SampleBatch(samples, received.labels, received.probabilities)

    def learn_masks(
        self,
        network: ItemMask,
        items: np.ndarray,
        holes: np.ndarray,
        rng: np.random.Generator,
    ) -> None:
        """The sleep phase: ``network`` learns the item pixels of ``items`` laid over
        background estimates (the client's images with ``holes`` where their items are)."""
        optimizer = torch.optim.Adam(network.parameters(), lr=self.learning_rate)
        network.train()
        for _ in range(self.mask_steps):
            chosen = items[rng.integers(0, len(items), self.batch_size)]
            background = self.backgrounds(holes, self.batch_size, rng)
            visible = (chosen > background) & (chosen > FAINT)
            images = torch.from_numpy(np.maximum(chosen, background)).to(self.device)
            target = torch.from_numpy(visible.astype(np.float32)).to(self.device)
            loss = nn.functional.binary_cross_entropy_with_logits(network(images), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    @torch.no_grad()
    def item_pixels(self, network: ItemMask, batch_size: int = 1024) -> np.ndarray:
        """The wake phase: where ``network`` sees the item in each of the client's
        images (bool, the images' shape)."""
        network.eval()
        logits = [
            network(torch.from_numpy(self.images[start : start + batch_size]).to(self.device))
            for start in range(0, len(self.images), batch_size)
        ]
        probability = torch.sigmoid(torch.cat(logits)).cpu().numpy()
        return np.broadcast_to(probability >= ITEM_THRESHOLD, self.images.shape).copy()

    def backgrounds(self, holes: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` background estimates: random images of the client's with their
        ``holes`` filled from other images where those show background (up to
        :data:`FILL_DRAWS` of them), then with the image's own visible mean."""
        drawn = rng.integers(0, len(self.images), count)
        background = self.images[drawn].copy()
        missing = holes[drawn].copy()
        for _ in range(FILL_DRAWS):
            if not missing.any():
                break
            other = rng.integers(0, len(self.images), count)
            fill = missing & ~holes[other]
            background[fill] = self.images[other][fill]
            missing &= ~fill
        if missing.any():
            visible = np.where(holes[drawn], np.nan, self.images[drawn]).reshape(count, -1)
            shown = (~holes[drawn]).reshape(count, -1).any(axis=1)
            means = np.zeros(count, dtype=np.float32)
            means[shown] = np.nanmean(visible[shown], axis=1)
            background[missing] = np.broadcast_to(means[:, None, None, None], background.shape)[
                missing
            ]
        return background
