"""How good can a classifier trained only on synthetic samples get?

The synthetic-sample strategy's global model learns from generated data alone, so the
generator's quality bounds it. This experiment removes federation from the picture:
one generator is fitted on the whole training set, a classifier is trained on its
samples only, and both are scored on the real test set. With soft labels, a teacher
(the same classifier trained on the real training set) labels the samples with its
class probabilities, as a generating client's classifier does in the federation.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from flower_synth.data import load_dataset
from flower_synth.generative import build_generator
from flower_synth.models import build_model
from flower_synth.training import (
    class_probabilities,
    evaluate,
    make_loader,
    to_unit_range,
    train,
)


def generator_bound(
    dataset: str = "fashion-mnist",
    generator: str = "cvae",
    generator_epochs: int = 10,
    num_samples: int = 60_000,
    classifier_epochs: int = 5,
    seed: int = 0,
    soft_labels: bool = False,
    **generator_params: Any,
) -> dict[str, float]:
    """Fit ``generator`` centrally, train the dataset's classifier on ``num_samples``
    of its samples (class-balanced; hard labels, or a real-data teacher's class
    probabilities with ``soft_labels``), and return the test accuracy with the timings."""
    train_set, test_set = load_dataset(dataset)
    real = to_unit_range(train_set)
    started = time.perf_counter()
    params = {"epochs": generator_epochs, "seed": seed} if generator.startswith("cvae") else {}
    model = build_generator(
        generator, train_set.num_classes, train_set.image_shape, **params, **generator_params
    )
    model.fit(real, train_set.labels)
    classes = train_set.num_classes
    wanted = torch.arange(num_samples).remainder(classes).numpy()
    samples, labels = model.sample(num_samples, labels=wanted, random_state=seed)
    fitted = time.perf_counter()
    targets = labels
    if soft_labels:
        torch.manual_seed(seed)
        teacher = build_model(train_set.image_shape, classes)
        teaching = make_loader(real, train_set.labels, batch_size=64, shuffle=True, seed=seed)
        train(teacher, teaching, classifier_epochs, learning_rate=0.01)
        targets = class_probabilities(teacher, samples)
    torch.manual_seed(seed)
    classifier = build_model(test_set.image_shape, classes)
    loader = make_loader(samples, targets, batch_size=64, shuffle=True, seed=seed)
    train(classifier, loader, classifier_epochs, learning_rate=0.01)
    loss, accuracy = evaluate(classifier, test_set)
    return {
        "test_accuracy": accuracy,
        "test_loss": loss,
        "generator_seconds": fitted - started,
        "classifier_seconds": time.perf_counter() - fitted,
    }
