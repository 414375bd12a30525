"""The CVAE's samples on Fashion-MNIST: do they look like the class they were
generated for? A CNN trained on real images is the judge."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flower_synth.data import DatasetNotFoundError, load_dataset
from flower_synth.generative import ConditionalVAE
from flower_synth.learning.training import class_probabilities, make_loader, to_unit_range, train
from flower_synth.models import build_model

SUBSET, ROUNDS = 5000, 15


@pytest.fixture(scope="module")
def fashion_subset():
    try:
        train_set, _ = load_dataset("fashion-mnist")
    except DatasetNotFoundError as missing:
        pytest.skip(f"Fashion-MNIST is not installed (make dataset): {missing}")
    rows = np.random.default_rng(0).choice(len(train_set), SUBSET, replace=False)
    subset = train_set.subset(rows)
    images, labels = to_unit_range(subset), subset.labels
    torch.manual_seed(0)
    judge = build_model((1, 28, 28), 10)
    train(judge, make_loader(images, labels, 64, True, seed=0), 3, 0.01)
    return images, labels, judge


def agreement(images, labels, judge, latent_prior: str) -> float:
    """Share of 2,000 class-balanced samples the judge assigns to their class, after
    fitting the app's CVAE as a client would over ``ROUNDS`` rounds (one epoch each)."""
    generator = ConditionalVAE(
        10,
        hidden_dim=256,
        batch_size=256,
        learning_rate=3e-3,
        epochs=1,
        epoch_size=SUBSET,
        latent_prior=latent_prior,
        seed=0,
    )
    for _ in range(ROUNDS):
        generator.fit(images, labels)
    samples, wanted = generator.sample(2000, labels=np.repeat(np.arange(10), 200), random_state=0)
    return float(np.mean(class_probabilities(judge, samples).argmax(axis=1) == wanted))


def test_class_latent_prior_makes_samples_agree_with_their_labels(fashion_subset) -> None:
    images, labels, judge = fashion_subset
    with_class_prior = agreement(images, labels, judge, "class")
    standard = agreement(images, labels, judge, "standard")
    # measured 0.80 with the class prior and 0.60 with N(0, I) (seed 0)
    assert with_class_prior > 0.72
    assert with_class_prior > standard + 0.1
