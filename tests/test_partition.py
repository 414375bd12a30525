"""Partitions: sizes, determinism, skew, local test splits."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from flower_synth.app.config import RunSettings
from flower_synth.data import load_client_data, load_dataset, load_global_test
from flower_synth.data.federated import load_partitions
from flower_synth.data.partition import (
    label_skew,
    long_tail_indices,
    make_partitioner,
    partition_indices,
    split_by_class,
)


@pytest.fixture(scope="module")
def digit_labels() -> np.ndarray:
    train, _ = load_dataset("digits")
    return train.labels


@pytest.mark.parametrize("kind", ["iid", "dirichlet", "pathological"])
def test_partitions_cover_every_example_once(kind: str, digit_labels: np.ndarray) -> None:
    parts = partition_indices(digit_labels, make_partitioner(kind, 5, seed=3), seed=3)
    assert len(parts) == 5
    joined = np.concatenate(parts)
    if kind == "pathological":  # classes are split among the partitions that hold them
        assert len(np.unique(joined)) == len(joined)
    else:
        assert sorted(joined.tolist()) == list(range(len(digit_labels)))


@pytest.mark.parametrize("kind", ["iid", "dirichlet", "pathological"])
def test_partitions_are_deterministic_per_seed(kind: str, digit_labels: np.ndarray) -> None:
    def build(seed: int) -> list[np.ndarray]:
        return partition_indices(digit_labels, make_partitioner(kind, 4, seed=seed), seed=seed)

    first, again, other = build(7), build(7), build(8)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_dirichlet_01_is_far_more_skewed_than_iid(digit_labels: np.ndarray) -> None:
    def skew(kind: str) -> float:
        parts = partition_indices(
            digit_labels, make_partitioner(kind, 10, seed=0, dirichlet_alpha=0.1), seed=0
        )
        return label_skew(parts, digit_labels, 10)

    iid, dirichlet = skew("iid"), skew("dirichlet")
    assert iid < 0.1
    assert dirichlet > 0.4
    assert dirichlet > 4 * iid


def test_pathological_gives_each_client_its_number_of_classes(digit_labels: np.ndarray) -> None:
    parts = partition_indices(
        digit_labels, make_partitioner("pathological", 5, seed=0, classes_per_client=2), seed=0
    )
    assert [len(np.unique(digit_labels[p])) for p in parts] == [2] * 5


def test_local_test_split_keeps_label_proportions() -> None:
    labels = np.repeat(np.arange(3), [50, 30, 1])
    train, test = split_by_class(np.arange(len(labels)), labels, test_fraction=0.2, seed=0)
    assert np.bincount(labels[test], minlength=3).tolist() == [10, 6, 0]
    assert np.bincount(labels[train], minlength=3).tolist() == [40, 24, 1]
    assert not set(train) & set(test)


def test_client_data_is_identical_across_calls_and_partitions_sum_up() -> None:
    settings = RunSettings(dataset="digits", partitioner="dirichlet", seed=5)
    a = load_client_data(settings.partition_scheme(3), 1)
    b = load_client_data(dataclasses.replace(settings).partition_scheme(3), 1)
    assert np.array_equal(a.train.labels, b.train.labels)
    assert np.array_equal(a.train.images, b.train.images)
    total = sum(
        len(load_client_data(settings.partition_scheme(3), pid).train)
        + len(load_client_data(settings.partition_scheme(3), pid).test)
        for pid in range(3)
    )
    assert total == sum(len(p) for p in load_partitions(settings.partition_scheme(3))) == 1437


def test_partition_id_out_of_range_names_the_node_config() -> None:
    with pytest.raises(ValueError, match="partition-id"):
        load_client_data(RunSettings(dataset="digits").partition_scheme(3), 3)


@pytest.mark.parametrize("factor", [10.0, 100.0])
def test_long_tailed_class_counts_follow_the_imbalance_factor(factor: float) -> None:
    labels = np.repeat(np.arange(10), 6000)
    kept = long_tail_indices(labels, 10, factor, seed=1)
    counts = np.bincount(labels[kept], minlength=10)
    expected = np.round(6000 * factor ** (-np.arange(10) / 9)).astype(int)
    np.testing.assert_array_equal(counts, expected)
    assert counts[0] == 6000 and counts[-1] == round(6000 / factor)
    assert np.array_equal(kept, np.unique(kept))  # sorted, no repeats
    np.testing.assert_array_equal(kept, long_tail_indices(labels, 10, factor, seed=1))


def test_long_tailed_partitions_hold_only_the_kept_rows() -> None:
    settings = RunSettings(dataset="digits", partitioner="dirichlet", imbalance_factor=10.0)
    parts = load_partitions(settings.partition_scheme(4))
    train, _ = load_dataset("digits")
    rows = np.concatenate(parts)
    assert len(rows) == len(np.unique(rows))
    counts = np.bincount(train.labels[rows], minlength=10)
    assert counts[0] > 5 * counts[9]  # the tail: about 10x fewer of the last class
    balanced = load_partitions(RunSettings(dataset="digits").partition_scheme(4))
    assert len(rows) < 0.6 * sum(len(p) for p in balanced)
    with pytest.raises(ValueError, match="imbalance-factor"):
        RunSettings(imbalance_factor=0.5)


def test_validation_holds_out_training_images_as_the_test_set() -> None:
    settings = RunSettings(dataset="digits", validation=True)
    train, test = load_dataset("digits")
    held_out = load_global_test(settings.data_source)
    assert abs(len(held_out) - len(train) / 6) <= 10  # 1/6 of every class, rounded
    assert len(held_out) != len(test)
    parts = load_partitions(settings.partition_scheme(3))
    assert sum(len(p) for p in parts) == len(train) - len(held_out)
    # every held-out image is a training image, and none of them is in a partition
    pool = {image.tobytes() for image in train.images}
    assert all(image.tobytes() in pool for image in held_out.images)
    client = load_client_data(settings.partition_scheme(3), 0)
    held = {image.tobytes() for image in held_out.images}
    assert not any(image.tobytes() in held for image in client.train.images)


@pytest.mark.parametrize("n", [1, 7, 30])
def test_per_class_partitioner_gives_exactly_n_disjoint_examples_per_class(
    n: int, digit_labels: np.ndarray
) -> None:
    parts = partition_indices(
        digit_labels, make_partitioner("per-class", 4, seed=2, examples_per_class=n), seed=2
    )
    assert len(parts) == 4
    for part in parts:
        assert np.bincount(digit_labels[part], minlength=10).tolist() == [n] * 10
    joined = np.concatenate(parts)
    assert len(np.unique(joined)) == len(joined) == 4 * 10 * n
    again = partition_indices(
        digit_labels, make_partitioner("per-class", 4, seed=2, examples_per_class=n), seed=2
    )
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))


def test_per_class_partitioner_rejects_more_than_a_class_holds(digit_labels: np.ndarray) -> None:
    partitioner = make_partitioner("per-class", 4, seed=0, examples_per_class=50)
    with pytest.raises(ValueError, match="fewer than 4 partitions x 50 examples-per-class"):
        partition_indices(digit_labels, partitioner, seed=0)
    with pytest.raises(ValueError, match="examples-per-class must be >= 1"):
        make_partitioner("per-class", 4, seed=0)
    with pytest.raises(ValueError, match="per-class partitioner needs examples-per-class"):
        RunSettings(partitioner="per-class")


def test_per_class_clients_keep_every_example_for_training_without_a_local_test() -> None:
    settings = RunSettings(
        dataset="digits", partitioner="per-class", examples_per_class=5, local_test_fraction=0.0
    )
    scheme = settings.partition_scheme(3)
    for pid in range(3):
        data = load_client_data(scheme, pid)
        assert np.bincount(data.train.labels, minlength=10).tolist() == [5] * 10
        assert len(data.test) == 0


def test_balanced_subset_spreads_over_the_classes_and_is_fixed_by_seed() -> None:
    _, test = load_dataset("digits")
    subset = test.balanced_subset(200, seed=4)
    assert len(subset) == 200
    assert subset.class_counts().tolist() == [20] * 10
    again = test.balanced_subset(200, seed=4)
    assert np.array_equal(subset.images, again.images)
    assert not np.array_equal(subset.images, test.balanced_subset(200, seed=5).images)
    assert test.balanced_subset(0, seed=4) is test
    assert test.balanced_subset(len(test) + 1, seed=4) is test
    with pytest.raises(ValueError, match="size must be >= 0"):
        test.balanced_subset(-1, seed=4)


def test_balanced_subset_fills_a_short_class_from_the_others() -> None:
    _, test = load_dataset("digits")
    short = np.concatenate([np.flatnonzero(test.labels == 0)[:3], np.flatnonzero(test.labels != 0)])
    counts = test.subset(short).balanced_subset(101, seed=0).class_counts()
    assert counts.sum() == 101 and counts[0] == 3
    assert counts[1:].max() - counts[1:].min() <= 1
