"""Partly labelled clients: the labelled fraction per partition, the unlabelled images
a client keeps, and what its learners do with them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import RecordDict

from flower_synth.app.client_app import own_model_learner, synthetic_learner
from flower_synth.app.config import RunSettings
from flower_synth.data import ClientData, ImageDataset, hide_labels, load_client_data
from flower_synth.data.labels import labelled_count


def image_data(n: int, seed: int = 0) -> ClientData:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 1, 4, 4), dtype=np.uint8)
    train = ImageDataset(images, np.arange(n) % 3, num_classes=3)
    return ClientData(train=train, test=train.subset(np.arange(3)))


@pytest.mark.parametrize(
    ("n", "fraction", "kept"),
    [(200, 0.01, 2), (200, 0.1, 20), (7, 0.01, 1), (5, 1.0, 5), (10, 0.25, 2)],
)
def test_exactly_the_labelled_fraction_keeps_its_labels(n: int, fraction: float, kept: int) -> None:
    data = image_data(n)
    partly = hide_labels(data, fraction, seed=3)
    assert labelled_count(n, fraction) == kept
    assert len(partly.train) == kept and partly.num_unlabelled == n - kept
    assert partly.num_images == n
    # every image is still there, labelled or not, each once
    together = np.concatenate(
        [partly.train.images, partly.unlabelled if partly.num_unlabelled else data.train.images[:0]]
    )
    assert sorted(map(bytes, together)) == sorted(map(bytes, data.train.images))
    # the labelled ones keep their own labels; the local test split is untouched
    rows = {
        bytes(image): label
        for image, label in zip(data.train.images, data.train.labels, strict=True)
    }
    assert all(
        rows[bytes(i)] == y for i, y in zip(partly.train.images, partly.train.labels, strict=True)
    )
    assert partly.test is data.test


def test_which_labels_are_kept_is_fixed_by_the_seed() -> None:
    data = image_data(300)
    first, again, other = (hide_labels(data, 0.1, seed) for seed in (5, 5, 6))
    assert np.array_equal(first.train.images, again.train.images)
    assert not np.array_equal(first.train.images, other.train.images)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5, float("nan")])
def test_a_labelled_fraction_outside_zero_one_is_refused(fraction: float) -> None:
    with pytest.raises(ValueError, match=r"labelled-fraction must lie in \(0, 1\]"):
        hide_labels(image_data(10), fraction, seed=0)


def test_unlabelled_images_of_another_shape_are_refused() -> None:
    data = image_data(4)
    with pytest.raises(ValueError, match="unlabelled images must be uint8 of shape"):
        ClientData(data.train, data.test, unlabelled=np.zeros((2, 1, 5, 5), np.uint8))


def test_the_run_config_sets_the_fraction_per_partition_and_checks_it() -> None:
    settings = RunSettings.from_run_config({"labelled-fraction": "0.01,0.5,1"})
    assert [settings.labelled_fraction_for(p) for p in range(4)] == [0.01, 0.5, 1.0, 0.01]
    assert RunSettings.from_run_config({"labelled-fraction": 0.1}).labelled_fraction_for(7) == 0.1
    for bad in ("0", "0.5,2", "half"):
        with pytest.raises(ValueError, match="labelled-fraction"):
            RunSettings.from_run_config({"labelled-fraction": bad})
    with pytest.raises(ValueError, match="pseudo-label-threshold"):
        RunSettings.from_run_config({"pseudo-label-threshold": 1.5})


def test_every_partition_honours_its_own_fraction_exactly(digits_settings) -> None:
    scheme = digits_settings.partition_scheme(3)
    for pid, fraction in enumerate((0.05, 0.5, 1.0)):
        full = load_client_data(scheme, pid)
        partly = load_client_data(scheme, pid, fraction)
        assert len(partly.train) == max(1, round(fraction * len(full.train)))
        assert partly.num_images == len(full.train)
        assert np.array_equal(partly.test.labels, full.test.labels)


class Node:
    def __init__(self) -> None:
        self.state = RecordDict()


def test_a_synthetic_client_learns_from_its_confident_unlabelled_images(digits_settings) -> None:
    settings = RunSettings.from_run_config(
        digits_settings.to_run_config()
        | {"strategy": "synthetic", "local-epochs": 5, "pseudo-label-threshold": 0.9}
    )
    data = load_client_data(settings.partition_scheme(2), 0, 0.2)
    node = Node()
    config = {"num_samples": 1000, "sample_ratio": 0.2, "self_trust": 1.0}
    first = synthetic_learner(settings, data, node, 0, None).fit([], config | {"server_round": 1})
    # round 1: nothing to label with yet; the client reports all of its images
    assert first.metrics["pseudo_labelled"] == 0
    assert first.num_examples == data.num_images
    # the samples it is asked for are sized by all its images, not its labels
    assert len(first.arrays) and first.metrics["generated_samples"] == round(0.2 * data.num_images)
    second = synthetic_learner(settings, data, node, 0, None).fit([], config | {"server_round": 2})
    assert 0 < second.metrics["pseudo_labelled"] <= data.num_unlabelled
    never = RunSettings.from_run_config(settings.to_run_config() | {"pseudo-label-threshold": 1.0})
    third = synthetic_learner(never, data, node, 0, None).fit([], config | {"server_round": 3})
    assert third.metrics["pseudo_labelled"] == 0


def test_a_local_only_client_trains_as_many_steps_as_it_has_images(digits_settings) -> None:
    settings = RunSettings.from_run_config(
        digits_settings.to_run_config() | {"strategy": "local-only", "batch-size": 8}
    )
    full = load_client_data(settings.partition_scheme(2), 0)
    partly = load_client_data(settings.partition_scheme(2), 0, 0.1)
    steps = []
    for data in (full, partly):
        learner = own_model_learner(settings, data, Node(), 0, None)
        calls = 0

        def count(module, inputs) -> None:
            nonlocal calls
            calls += module.training

        learner.model.head.register_forward_pre_hook(count)
        torch.manual_seed(0)
        fitted = learner.fit([], {"server_round": 1})
        assert fitted.num_examples == full.num_images
        steps.append(calls)
    assert steps[0] == steps[1] > 0
