"""Class-consistent samples: a generator's draws that a judge classifier reads as their
label, the others drawn again (rejection sampling).

A class-conditional generator's samples of one class are sometimes images of another,
and a classifier that learns from them with hard labels learns that noise. A classifier
trained on the same real images (a client's own classifier, in the federation) can
refuse them: what remains is the generator's distribution restricted to where the judge
agrees with the label, at the price of the rejected draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flower_synth.app.quality import ReferenceClassifier
from flower_synth.generative import GenerativeModel

MAX_DRAWS = 20  # rounds of redrawing the refused samples before giving up


@dataclass(frozen=True)
class ConsistentDraw:
    """Samples that the judge reads as their labels, and what they cost.

    Attributes:
        samples: the kept images in [0, 1], one per label asked, in the order asked.
        labels: their labels (those asked).
        drawn: how many samples the generator drew to keep them.
    """

    samples: np.ndarray
    labels: np.ndarray
    drawn: int

    @property
    def acceptance(self) -> float:
        """The share of drawn samples the judge kept."""
        return len(self.labels) / max(self.drawn, 1)


def draw_consistent(
    model: GenerativeModel,
    labels: np.ndarray,
    judge: ReferenceClassifier,
    seed: int,
    max_draws: int = MAX_DRAWS,
) -> ConsistentDraw:
    """Draw one sample of every label in ``labels`` from ``model`` (clipped to [0, 1]),
    redrawing each that ``judge`` reads as another class, up to ``max_draws`` rounds
    (round ``k`` sampled with ``random_state=seed + k``).

    Raises:
        ValueError: Some label's samples were still refused after ``max_draws`` rounds
            (the generator rarely makes that class; the message names them).
    """
    labels = np.asarray(labels)
    samples: np.ndarray | None = None
    missing, drawn = np.arange(len(labels)), 0
    for attempt in range(max_draws):
        images, _ = model.sample(len(missing), labels=labels[missing], random_state=seed + attempt)
        images = np.clip(images, 0.0, 1.0)
        if samples is None:
            samples = np.empty((len(labels), *images.shape[1:]), dtype=images.dtype)
        drawn += len(missing)
        kept = judge.predict(images) == labels[missing]
        samples[missing[kept]] = images[kept]
        missing = missing[~kept]
        if not len(missing):
            return ConsistentDraw(samples, labels, drawn)
    refused = sorted(set(labels[missing].tolist()))
    raise ValueError(
        f"after {max_draws} rounds of drawing, the judge still read {len(missing)} samples "
        f"of classes {refused} as another class; the generator rarely makes them: train "
        "it longer or score it without the filter"
    )
