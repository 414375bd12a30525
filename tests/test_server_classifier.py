"""The server classifier of synthetic exchange: replay buffer, class-balanced draws,
learning in aggregate_fit only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flower_synth.data import load_dataset
from flower_synth.learning.training import make_loader
from flower_synth.models import build_model
from flower_synth.synthetic.server_classifier import (
    PooledClassifier,
    ReplayBuffer,
    class_balanced_weights,
)
from flower_synth.wire.payload import WireBatch

SHAPE = (1, 8, 8)


def batch_of(labels: list[int]) -> WireBatch:
    labels = np.asarray(labels, dtype=np.int32)
    return WireBatch(np.zeros((len(labels), *SHAPE), np.uint8), labels)


def test_replay_buffer_keeps_only_the_last_rounds() -> None:
    buffer = ReplayBuffer(rounds=2)
    for label in range(5):
        buffer.add([batch_of([label] * 10), batch_of([label] * 5)], SHAPE)
        assert len(buffer) <= 30
    assert len(buffer) == 30
    assert sorted(set(buffer.contents().labels.tolist())) == [3, 4]
    with pytest.raises(ValueError, match="at least 1 round"):
        ReplayBuffer(rounds=0)


def test_class_balanced_draws_are_uniform_over_classes_within_tolerance() -> None:
    # a union as skewed as the pools at Dirichlet 0.1: 3.7 % to 18.3 % per class
    labels = np.repeat(np.arange(10), [37, 183, 60, 90, 120, 80, 150, 100, 110, 70])
    weights = class_balanced_weights(labels, 10)
    totals = np.bincount(labels, weights=weights, minlength=10)
    assert np.allclose(totals, totals[0])
    loader = make_loader(
        np.zeros((len(labels), *SHAPE), np.float32),
        labels,
        100,
        True,
        seed=0,
        weights=weights,
        draws=20_000,
    )
    drawn = np.concatenate([targets.numpy() for _, targets, _ in loader])
    shares = np.bincount(drawn, minlength=10) / len(drawn)
    assert np.abs(shares - 0.1).max() < 0.01  # every class within a point of uniform


def test_pooled_classifier_learns_only_when_given_samples_and_scores_the_test_set() -> None:
    train_set, test_set = load_dataset("digits")
    torch.manual_seed(0)
    classifier = PooledClassifier(
        build_model((1, 8, 8), 10), test_set, epochs=10, learning_rate=0.05, replay_rounds=3
    )
    assert classifier.evaluate(1) is None  # nothing learnt yet
    assert classifier.learn(1, []) == {}
    # stand-ins for clients' pools: real digits, three sources of unequal size
    images, labels = train_set.images, train_set.labels.astype(np.int32)
    pools = [WireBatch(images[part], labels[part]) for part in np.array_split(np.arange(900), 3)]
    metrics = classifier.learn(1, pools)
    assert metrics["replay_samples"] == 900
    loss, evaluation = classifier.evaluate(1)
    assert evaluation["global_accuracy"] > 0.8  # chance is 0.1
    assert np.isfinite(loss)


def test_uint8_images_are_decoded_per_batch_exactly_as_float_images() -> None:
    images = np.random.default_rng(0).integers(0, 256, (50, *SHAPE), dtype=np.uint8)
    labels = np.arange(50) % 10
    compact = make_loader(images, labels, 16, shuffle=True, seed=3)
    floats = make_loader(images.astype(np.float32) / 255.0, labels, 16, shuffle=True, seed=3)
    for (a, ya, _), (b, yb, _) in zip(compact, floats, strict=True):
        assert torch.equal(a, b) and torch.equal(ya, yb)
