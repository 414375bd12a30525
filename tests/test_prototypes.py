"""Prototype maths: Bhattacharyya distance, moment-matched merging, fusion, per-class
mixtures and means, and the class top-up rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flower_synth.prototypes import (
    ClassMixtures,
    aggregate_prototypes,
    bhattacharyya_distance,
    class_means,
    fit_class_mixtures,
    fuse_components,
    fuse_mixtures,
    merge_moments,
    top_up_counts,
)
from flower_synth.prototypes.exchange import FUSION_TAU
from flower_synth.prototypes.fusion import Merges


def random_components(rng: np.random.Generator, size: int, dim: int, full: bool):
    masses = rng.uniform(1, 10, size)
    means = rng.normal(size=(size, dim))
    if full:
        factors = rng.normal(size=(size, dim, dim))
        covariances = factors @ factors.transpose(0, 2, 1) + 0.5 * np.eye(dim)
    else:
        covariances = rng.uniform(0.2, 2.0, size=(size, dim))
    return masses, means, covariances


def test_bhattacharyya_is_zero_for_identical_gaussians() -> None:
    mean, variances = np.array([1.0, -2.0, 0.5]), np.array([0.3, 2.0, 1.0])
    assert bhattacharyya_distance(mean, variances, mean, variances) == pytest.approx(0, abs=1e-12)
    full = np.diag(variances) + 0.1
    assert bhattacharyya_distance(mean, full, mean, full) == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("full", [False, True])
def test_bhattacharyya_is_symmetric_and_positive(full: bool) -> None:
    rng = np.random.default_rng(0)
    _, means, covs = random_components(rng, 2, 4, full)
    forward = bhattacharyya_distance(means[0], covs[0], means[1], covs[1])
    backward = bhattacharyya_distance(means[1], covs[1], means[0], covs[0])
    assert forward == pytest.approx(backward, rel=1e-12)
    assert forward > 0


def test_bhattacharyya_one_dimensional_closed_form() -> None:
    # N(0, 1) vs N(2, 4): S = 2.5; 1/8 * 4 / 2.5 + 1/2 ln(2.5 / sqrt(1 * 4)) = 0.2 + 0.5 ln 1.25
    expected = 0.2 + 0.5 * math.log(1.25)
    distance = bhattacharyya_distance(
        np.array([0.0]), np.array([1.0]), np.array([2.0]), np.array([4.0])
    )
    assert distance == pytest.approx(expected, rel=1e-12)


def test_bhattacharyya_diagonal_is_the_sum_over_dimensions_and_matches_full() -> None:
    # Dimension 1: N(0,1) vs N(2,4) as above; dimension 2: N(1,2) vs N(1,2) contributes 0;
    # dimension 3: N(0,1) vs N(1,1): 1/8 * 1 / 1 = 0.125.
    mean1, var1 = np.array([0.0, 1.0, 0.0]), np.array([1.0, 2.0, 1.0])
    mean2, var2 = np.array([2.0, 1.0, 1.0]), np.array([4.0, 2.0, 1.0])
    expected = 0.2 + 0.5 * math.log(1.25) + 0.125
    assert bhattacharyya_distance(mean1, var1, mean2, var2) == pytest.approx(expected, rel=1e-12)
    full = bhattacharyya_distance(mean1, np.diag(var1), mean2, np.diag(var2))
    assert full == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("full", [False, True])
def test_merge_preserves_mass_mean_and_total_covariance(full: bool) -> None:
    rng = np.random.default_rng(1)
    masses, means, covs = random_components(rng, 4, 3, full)
    total, mean, covariance = merge_moments(masses, means, covs)
    w = masses / masses.sum()
    assert total == pytest.approx(masses.sum())
    np.testing.assert_allclose(mean, w @ means)
    # Total covariance = E[Cov] + Cov[E]: check against a large sample of the mixture.
    picks = rng.choice(len(masses), size=400_000, p=w)
    noise = rng.standard_normal((len(picks), 3))
    if full:
        draws = means[picks] + np.einsum("nij,nj->ni", np.linalg.cholesky(covs)[picks], noise)
        np.testing.assert_allclose(covariance, np.cov(draws.T), atol=0.08)
    else:
        draws = means[picks] + noise * np.sqrt(covs[picks])
        np.testing.assert_allclose(covariance, draws.var(axis=0), atol=0.03)
    np.testing.assert_allclose(mean, draws.mean(axis=0), atol=0.02)


def test_fusion_with_tau_zero_and_no_cap_changes_nothing() -> None:
    masses, means, covs = random_components(np.random.default_rng(2), 6, 3, False)
    fused = fuse_components(masses, means, covs, tau=0.0, max_components=None)
    np.testing.assert_allclose(fused.masses, masses)
    np.testing.assert_allclose(fused.means, means)
    np.testing.assert_allclose(fused.covariances, covs)
    assert fused.merges == Merges(0, 0)


@pytest.mark.parametrize("full", [False, True])
def test_fusion_with_huge_tau_leaves_one_moment_matched_component(full: bool) -> None:
    masses, means, covs = random_components(np.random.default_rng(3), 6, 3, full)
    fused = fuse_components(masses, means, covs, tau=1e9)
    total, mean, covariance = merge_moments(masses, means, covs)
    assert len(fused.masses) == 1
    assert fused.masses[0] == pytest.approx(total)
    np.testing.assert_allclose(fused.means[0], mean)
    np.testing.assert_allclose(fused.covariances[0], covariance)
    assert fused.merges == Merges(similar=5, capped=0)


def test_fusion_caps_components_and_merges_the_closest_pair_first() -> None:
    means = np.array([[0.0], [0.1], [10.0], [10.2], [30.0]])
    covs = np.ones((5, 1))
    fused = fuse_components(np.ones(5), means, covs, tau=0.0, max_components=3)
    np.testing.assert_allclose(np.sort(fused.means[:, 0]), [0.05, 10.1, 30.0])
    np.testing.assert_allclose(fused.masses, [2, 2, 1])
    assert fused.merges == Merges(similar=0, capped=2)


def test_fusion_merges_only_below_tau() -> None:
    means = np.array([[0.0], [0.1], [10.0]])
    fused = fuse_components(np.ones(3), means, np.ones((3, 1)), tau=0.5)
    assert len(fused.masses) == 2  # D(0, 0.1) = 0.00125 < 0.5; D(., 10) ~ 12.5 > 0.5
    assert fused.merges == Merges(similar=1, capped=0)


def feature_cluster_estimates(rng: np.random.Generator, dim: int, shift: float):
    """Two clients' Gaussian fits (200 points each) of one cluster, and a third of a
    cluster ``shift`` standard deviations away in every dimension."""
    centre, scale = rng.normal(size=dim), rng.uniform(0.5, 2.0, dim)
    fits = []
    for offset in (0.0, 0.0, shift):
        points = centre + scale * (offset + rng.standard_normal((200, dim)))
        fits.append((points.mean(axis=0), points.var(axis=0)))
    return np.stack([m for m, _ in fits]), np.stack([v for _, v in fits])


@pytest.mark.parametrize("dim", [2, 84])
def test_the_per_dimension_threshold_merges_estimates_of_one_cluster_in_any_dimension(
    dim: int,
) -> None:
    means, variances = feature_cluster_estimates(np.random.default_rng(dim), dim, shift=1.5)
    fused = fuse_components(np.ones(3), means, variances, tau=FUSION_TAU)
    assert fused.merges == Merges(similar=1, capped=0)  # the two estimates, not the far one
    assert len(fused.masses) == 2
    # the same threshold as a total distance (the old meaning) merges nothing in 84 dims
    total = bhattacharyya_distance(means[0], variances[0], means[1], variances[1])
    assert (total < FUSION_TAU) == (dim == 2)


def mixtures(labels, weights, means, counts, num_classes=3) -> ClassMixtures:
    counts_by_class = np.zeros(num_classes, np.int64)
    for label, count in counts.items():
        counts_by_class[label] = count
    means = np.asarray(means, float)
    return ClassMixtures(
        np.asarray(labels), np.asarray(weights, float), means, np.ones_like(means), counts_by_class
    )


def test_fuse_mixtures_pools_per_class_with_mass_n_c_times_pi() -> None:
    first = mixtures([0, 0, 1], [0.5, 0.5, 1.0], [[0.0], [4.0], [7.0]], {0: 100, 1: 10})
    second = mixtures([0], [1.0], [[2.0]], {0: 300})
    fused, merges = fuse_mixtures([first, second], tau=1e9)
    assert merges == Merges(similar=2, capped=0)
    np.testing.assert_array_equal(fused.labels, [0, 1])
    np.testing.assert_array_equal(fused.class_counts, [400, 10, 0])
    # class 0: masses 50 at 0, 50 at 4, 300 at 2 -> mean 2
    np.testing.assert_allclose(fused.means[:, 0], [2.0, 7.0])
    np.testing.assert_allclose(fused.weights, [1.0, 1.0])
    # total variance: 1 + (50 * 4 + 50 * 4) / 400 = 2
    np.testing.assert_allclose(fused.covariances[0], [2.0])
    unfused, _ = fuse_mixtures([first, second], tau=0.0)
    np.testing.assert_allclose(
        unfused.weights[unfused.labels == 0], [50 / 400, 50 / 400, 300 / 400]
    )


def test_class_mixtures_fit_only_classes_with_enough_samples() -> None:
    rng = np.random.default_rng(4)
    features = np.concatenate([rng.normal(0, 1, (200, 5)), rng.normal(5, 1, (6, 5))])
    labels = np.array([2] * 200 + [0] * 6)
    fitted = fit_class_mixtures(features, labels, num_classes=4, n_components=3, min_samples=10)
    np.testing.assert_array_equal(fitted.labels, [2, 2, 2])
    np.testing.assert_array_equal(fitted.class_counts, [0, 0, 200, 0])
    assert fitted.weights.sum() == pytest.approx(1.0)
    assert fitted.covariances.shape == (3, 5) and (fitted.covariances > 0).all()
    np.testing.assert_allclose(
        fitted.weights @ fitted.means, features[:200].mean(axis=0), atol=1e-6
    )


@pytest.mark.parametrize(("kind", "shape"), [("spherical", (2, 5)), ("tied", (2, 5, 5))])
def test_class_mixtures_store_spherical_as_diag_and_tied_as_full(kind: str, shape) -> None:
    rng = np.random.default_rng(5)
    fitted = fit_class_mixtures(
        rng.normal(size=(100, 5)), np.zeros(100, int), 1, n_components=2, covariance_type=kind
    )
    assert fitted.covariances.shape == shape


def test_sampling_draws_exact_counts_from_the_class_mixture() -> None:
    mix = mixtures(
        [0, 1, 1], [1.0, 0.25, 0.75], [[0.0, 0.0], [10.0, 10.0], [-10.0, 0.0]], {0: 5, 1: 5}
    )
    features, labels = mix.sample({0: 100, 1: 4000, 2: 7}, np.random.default_rng(6))
    assert np.bincount(labels).tolist() == [100, 4000]  # class 2 has no mixture
    class_one = features[labels == 1]
    assert (class_one[:, 0] > 0).mean() == pytest.approx(0.25, abs=0.03)


def test_top_up_is_class_balanced_by_default() -> None:
    counts = np.array([500, 20, 0, 0])
    available = np.array([0, 1, 2])
    assert top_up_counts(counts, available, per_class=0) == {0: 0, 1: 480, 2: 500}
    assert top_up_counts(counts, available, per_class=100) == {0: 0, 1: 80, 2: 100}


def test_fedproto_prototypes_are_count_weighted_class_means() -> None:
    features = np.array([[0.0, 2.0], [2.0, 2.0], [5.0, 5.0]])
    local = class_means(features, np.array([1, 1, 3]), num_classes=4)
    np.testing.assert_array_equal(local.labels, [1, 3])
    np.testing.assert_allclose(local.means, [[1.0, 2.0], [5.0, 5.0]])
    other = class_means(np.array([[4.0, 8.0]]), np.array([1]), num_classes=4)
    fused = aggregate_prototypes([local, other])
    np.testing.assert_allclose(fused.means, [[2.0, 4.0], [5.0, 5.0]])  # (2*(1,2) + (4,8)) / 3
    np.testing.assert_array_equal(fused.counts, [3, 1])
    table, present = fused.table(4)
    assert present.tolist() == [False, True, False, True]
    np.testing.assert_allclose(table[3], [5.0, 5.0])
