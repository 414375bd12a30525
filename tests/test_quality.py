"""Generation quality: the Fréchet distance, the reference classifier on scikit-learn's
digits and its cache, and the quality of real (and spoiled) images as "samples"."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.linalg
import torch

from flower_synth.app.quality import (
    GenerationQuality,
    RealFeatures,
    ReferenceClassifier,
    frechet_distance,
    generation_quality,
    generation_quality_against,
)
from flower_synth.data import load_dataset
from flower_synth.learning.training import to_unit_range

EPOCHS = 10  # about 0.2 s on digits; ~0.92 test accuracy


def reference_frechet(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula with scipy's general matrix square root."""
    mean_gap = a.mean(axis=0) - b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(mean_gap @ mean_gap + np.trace(cov_a + cov_b - 2.0 * root))


# ----- frechet_distance ---------------------------------------------------------------


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_frechet_of_a_set_with_itself_is_zero(scale):
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(16, 16))
    features = scale * (rng.normal(size=(400, 16)) @ mixing + 3.0)
    magnitude = np.trace(np.cov(features, rowvar=False))
    assert frechet_distance(features, features) < 1e-6 * magnitude
    assert frechet_distance(features, features.copy()) >= 0.0


def test_frechet_of_a_rank_deficient_set_with_itself_is_zero():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(5, 32))  # fewer rows than dimensions: singular covariance
    magnitude = np.trace(np.cov(features, rowvar=False))
    assert frechet_distance(features, features) < 1e-6 * magnitude


def test_frechet_matches_the_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(2)
    mean_a, mean_b = np.array([0.0, 1.0, -2.0, 0.5]), np.array([1.0, 1.0, 0.0, -0.5])
    std_a, std_b = np.array([1.0, 2.0, 0.5, 1.0]), np.array([2.0, 1.0, 0.5, 3.0])
    n = 200_000
    a = mean_a + std_a * rng.normal(size=(n, 4))
    b = mean_b + std_b * rng.normal(size=(n, 4))
    # Diagonal covariances commute: Tr(S_a + S_b - 2 (S_a S_b)^1/2) = sum (s_a - s_b)^2.
    closed_form = np.sum((mean_a - mean_b) ** 2) + np.sum((std_a - std_b) ** 2)
    assert closed_form == pytest.approx(12.0)
    assert frechet_distance(a, b) == pytest.approx(closed_form, rel=0.01)


def test_frechet_matches_scipy_sqrtm_for_correlated_features():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(300, 8)) @ rng.normal(size=(8, 8))
    b = rng.normal(size=(250, 8)) @ rng.normal(size=(8, 8)) + 0.7
    assert frechet_distance(a, b) == pytest.approx(reference_frechet(a, b), rel=1e-6)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)


def test_frechet_grows_monotonically_with_added_noise():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(2000, 10)) @ rng.normal(size=(10, 10))
    noise = rng.normal(size=a.shape)
    strengths = [0.0, 0.1, 0.3, 1.0, 3.0, 10.0]
    distances = [frechet_distance(a, a + s * noise) for s in strengths]
    assert distances[0] < 1e-9
    assert all(later > earlier for earlier, later in zip(distances, distances[1:], strict=False))


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        (np.zeros((1, 3)), np.zeros((5, 3)), "at least 2 rows"),
        (np.zeros((5, 3)), np.zeros((1, 3)), "at least 2 rows"),
        (np.zeros((5, 3)), np.zeros((5, 4)), "dimensions differ"),
        (np.zeros(5), np.zeros(5), "2-D"),
        (np.zeros((5, 3, 1)), np.zeros((5, 3)), "2-D"),
        (np.array([[0.0, 1.0], [np.nan, 2.0], [1.0, 1.0]]), np.ones((3, 2)), "non-finite"),
        (np.ones((3, 2)), np.array([[0.0, np.inf], [1.0, 2.0], [1.0, 1.0]]), "non-finite"),
        (np.zeros((5, 0)), np.zeros((5, 0)), "no feature columns"),
    ],
)
def test_frechet_rejects_bad_inputs(a, b, message):
    with pytest.raises(ValueError, match=message):
        frechet_distance(a, b)


# ----- the reference classifier on digits ---------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def reference(digits, tmp_path_factory):
    train_set, _ = digits
    cache = tmp_path_factory.mktemp("reference-cache")
    return ReferenceClassifier.load_or_train("digits", train_set, cache, epochs=EPOCHS)


def test_reference_classifier_is_well_above_chance(digits, reference):
    _, test_set = digits
    predictions = reference.predict(to_unit_range(test_set))
    assert predictions.shape == (len(test_set),) and predictions.dtype == np.int64
    assert (predictions == test_set.labels).mean() > 0.85  # chance: 0.1


def test_reference_features_are_penultimate_and_deterministic(digits, reference):
    _, test_set = digits
    images = to_unit_range(test_set)
    features = reference.features(images)
    assert features.shape == (len(test_set), reference.model.feature_dim)
    assert np.isfinite(features).all()
    np.testing.assert_array_equal(reference.features(images), features)  # same call, same bits
    # another batch size may take another BLAS path: equal up to float rounding
    np.testing.assert_allclose(reference.features(images[:7]), features[:7], rtol=1e-5, atol=1e-6)
    assert not reference.model.training
    logits = reference.model.head(torch.from_numpy(features))
    np.testing.assert_array_equal(logits.argmax(1).numpy(), reference.predict(images))


def test_train_on_is_seeded_and_leaves_the_global_rng_alone(digits):
    train_set, test_set = digits
    small = train_set.subset(np.arange(300))
    images = to_unit_range(test_set)
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    first = ReferenceClassifier.train_on(small, epochs=2, seed=5)
    np.testing.assert_array_equal(torch.rand(3).numpy(), before.numpy())
    second = ReferenceClassifier.train_on(small, epochs=2, seed=5)
    other = ReferenceClassifier.train_on(small, epochs=2, seed=6)
    np.testing.assert_array_equal(first.features(images), second.features(images))
    assert not np.array_equal(first.features(images), other.features(images))


def test_load_or_train_hits_its_cache_the_second_time(digits, tmp_path, monkeypatch):
    train_set, test_set = digits
    images = to_unit_range(test_set)
    trained = ReferenceClassifier.load_or_train("digits", train_set, tmp_path, epochs=2, seed=1)
    saved = list(tmp_path.iterdir())
    assert [p.name for p in saved] == [f"reference-digits-n{len(train_set)}-e2-s1.pt"]

    def no_training(*args, **kwargs):
        raise AssertionError("load_or_train trained again instead of loading its cache")

    monkeypatch.setattr(ReferenceClassifier, "train_on", no_training)
    loaded = ReferenceClassifier.load_or_train("digits", train_set, tmp_path, epochs=2, seed=1)
    np.testing.assert_array_equal(loaded.features(images), trained.features(images))
    np.testing.assert_array_equal(loaded.predict(images), trained.predict(images))
    assert not loaded.model.training
    # Another seed, epoch count or training set is another file: it trains.
    for kwargs in ({"epochs": 2, "seed": 2}, {"epochs": 3, "seed": 1}):
        with pytest.raises(AssertionError, match="trained again"):
            ReferenceClassifier.load_or_train("digits", train_set, tmp_path, **kwargs)
    with pytest.raises(AssertionError, match="trained again"):
        ReferenceClassifier.load_or_train(
            "digits", train_set.subset(np.arange(100)), tmp_path, epochs=2, seed=1
        )


def test_reference_classifier_rejects_bad_images(digits, reference):
    train_set, _ = digits
    with pytest.raises(ValueError, match="to_unit_range"):
        reference.features(train_set.images[:4])  # uint8
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reference.predict(np.full((2, 1, 8, 8), 2.0, np.float32))
    with pytest.raises(ValueError, match="takes"):
        reference.features(np.zeros((2, 1, 28, 28), np.float32))
    with pytest.raises(ValueError, match="features"):
        ReferenceClassifier(torch.nn.Linear(3, 2))


# ----- generation_quality -------------------------------------------------------------


def test_real_test_images_judged_as_samples(digits, reference):
    train_set, test_set = digits
    real, real_labels = to_unit_range(train_set), train_set.labels
    images, labels = to_unit_range(test_set), test_set.labels
    accuracy = float((reference.predict(images) == labels).mean())

    genuine = generation_quality(reference, images, labels, real, real_labels)
    assert genuine.reference_accuracy == pytest.approx(accuracy, abs=1e-12)
    assert sorted(genuine.frechet_per_class) == list(range(10))
    assert genuine.mean_class_frechet == pytest.approx(
        np.mean(list(genuine.frechet_per_class.values()))
    )

    rng = np.random.default_rng(0)
    noisy = np.clip(images + rng.normal(0.0, 0.5, images.shape), 0.0, 1.0).astype(np.float32)
    spoiled = generation_quality(reference, noisy, labels, real, real_labels)
    assert spoiled.frechet > 3 * genuine.frechet
    assert spoiled.mean_class_frechet > genuine.mean_class_frechet
    assert spoiled.reference_accuracy < genuine.reference_accuracy

    # The same images under shuffled labels: the pooled distance cannot tell, the
    # per-class distances and the reference accuracy can.
    shuffled = generation_quality(reference, images, rng.permutation(labels), real, real_labels)
    assert shuffled.frechet == pytest.approx(genuine.frechet, rel=1e-9)
    assert shuffled.mean_class_frechet > 3 * genuine.mean_class_frechet
    worse = [shuffled.frechet_per_class[c] > genuine.frechet_per_class[c] for c in range(10)]
    assert all(worse)
    assert shuffled.reference_accuracy < 0.3


def test_classes_without_two_images_on_both_sides_are_left_out(digits, reference):
    train_set, test_set = digits
    real, real_labels = to_unit_range(train_set), train_set.labels
    images, labels = to_unit_range(test_set), test_set.labels
    keep = (labels != 3) & (labels != 4)
    keep[np.flatnonzero(labels == 4)[0]] = True  # a single sample of class 4
    no_real_5 = real_labels != 5
    quality = generation_quality(
        reference, images[keep], labels[keep], real[no_real_5], real_labels[no_real_5]
    )
    assert sorted(quality.frechet_per_class) == [0, 1, 2, 6, 7, 8, 9]


def test_as_metrics_flattens_to_prefixed_scalars():
    quality = GenerationQuality(
        frechet=1.5,
        frechet_per_class={2: 0.25, 0: 0.5},
        mean_class_frechet=0.375,
        reference_accuracy=0.75,
    )
    assert quality.as_metrics("gen_") == {
        "gen_frechet": 1.5,
        "gen_mean_class_frechet": 0.375,
        "gen_reference_accuracy": 0.75,
        "gen_frechet_class_0": 0.5,
        "gen_frechet_class_2": 0.25,
    }
    assert all(isinstance(v, float) for v in quality.as_metrics().values())
    with pytest.raises(dataclasses.FrozenInstanceError):
        quality.frechet = 0.0  # type: ignore[misc]


def test_generation_quality_rejects_bad_inputs(digits, reference):
    train_set, test_set = digits
    real, real_labels = to_unit_range(train_set), train_set.labels
    images, labels = to_unit_range(test_set), test_set.labels
    with pytest.raises(ValueError, match="samples must be float"):
        generation_quality(reference, test_set.images, labels, real, real_labels)
    with pytest.raises(ValueError, match="real_images must be float"):
        generation_quality(reference, images, labels, train_set.images, real_labels)
    with pytest.raises(ValueError, match="sample_labels must have shape"):
        generation_quality(reference, images, labels[:-1], real, real_labels)
    with pytest.raises(ValueError, match="integer"):
        generation_quality(reference, images, labels.astype(float), real, real_labels)
    with pytest.raises(ValueError, match="at least 2"):
        generation_quality(reference, images[:1], labels[:1], real, real_labels)
    with pytest.raises(ValueError, match="non-finite"):
        bad = images.copy()
        bad[0, 0, 0, 0] = np.nan
        generation_quality(reference, bad, labels, real, real_labels)


def test_real_features_computed_once_give_the_same_quality(digits, reference):
    train_set, test_set = digits
    train_images, train_labels = to_unit_range(train_set), train_set.labels
    test_images, test_labels = to_unit_range(test_set), test_set.labels
    real = RealFeatures.of(reference, train_images, train_labels)
    noisy = np.clip(test_images + 0.3, 0.0, 1.0)
    for samples in (test_images, noisy):
        assert generation_quality_against(
            reference, samples, test_labels, real
        ) == generation_quality(reference, samples, test_labels, train_images, train_labels)
    with pytest.raises(ValueError, match="samples needs at least 2 images"):
        generation_quality_against(reference, test_images[:1], test_labels[:1], real)
