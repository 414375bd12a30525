"""Local generative models: closed forms, sampling, weights, warm starts, state round trips."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.mixture import GaussianMixture

from flower_synth.generative import (
    GENERATORS,
    ClassConditionalGaussian,
    ClassConditionalGMM,
    ConditionalVAE,
    FlowMatching,
    GenerativeModel,
    MeanEmbedding,
    ScoreModel,
    SymmetricVAE,
    build_generator,
)

COVARIANCE_TYPES = ["diag", "full"]


def blobs(
    n: int, centers: list[list[float]], seed: int = 0, scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points per center, isotropic normal noise, labelled by center."""
    rng = np.random.default_rng(seed)
    centers_array = np.asarray(centers, dtype=np.float64)
    y = np.repeat(np.arange(len(centers_array)), n)
    return centers_array[y] + scale * rng.standard_normal((len(y), centers_array.shape[1])), y


def correlated_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three classes of correlated 3-d points of unequal sizes, with random weights."""
    rng = np.random.default_rng(seed)
    mixing = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [-0.3, 0.5, 0.4]])
    y = rng.choice(3, size=600, p=[0.5, 0.3, 0.2])
    X = np.array([[0.0, 1.0, 2.0], [3.0, -1.0, 0.0], [-2.0, 2.0, 1.0]])[y]
    X = X + (1.0 + y[:, None]) * rng.standard_normal((600, 3)) @ mixing.T
    return X, y, rng.uniform(0.1, 2.0, size=600)


def rebuilt(model: GenerativeModel) -> GenerativeModel:
    """A fresh, unfitted instance with ``model``'s constructor parameters."""
    params = {k: v for k, v in vars(model).items() if not k.startswith("_") and k[-1] != "_"}
    return type(model)(**params)


def assert_state_round_trip(model: GenerativeModel, labels: np.ndarray | None = None) -> None:
    state = model.get_state()
    assert all(isinstance(value, np.ndarray) for value in state.values())
    restored = rebuilt(model)
    restored.set_state(state)
    assert restored.is_fitted
    expected = model.sample(50, labels=labels, random_state=7)
    actual = restored.sample(50, labels=labels, random_state=7)
    np.testing.assert_array_equal(actual[0], expected[0])
    np.testing.assert_array_equal(actual[1], expected[1])
    assert not np.array_equal(model.sample(50, labels=labels, random_state=8)[0], expected[0])


# ---- ClassConditionalGaussian -------------------------------------------------------------


def test_gaussian_closed_form_on_hand_made_data() -> None:
    X = np.array([[0.0], [2.0], [10.0]])
    model = ClassConditionalGaussian(2, reg_covar=0.0).fit(
        X, np.array([0, 0, 1]), sample_weight=np.array([1.0, 3.0, 4.0])
    )
    np.testing.assert_allclose(model.class_prior_, [0.5, 0.5])
    np.testing.assert_allclose(model.means_, [[1.5], [10.0]])
    # (1 * 1.5^2 + 3 * 0.5^2) / 4 = 0.75; a single row has variance 0
    np.testing.assert_allclose(model.covariances_, [[0.75], [0.0]])


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_gaussian_integer_weights_equal_duplicated_rows(covariance_type: str) -> None:
    X, y, _ = correlated_data()
    counts = np.random.default_rng(1).integers(0, 4, size=len(X))
    weighted = ClassConditionalGaussian(3, covariance_type).fit(X, y, sample_weight=counts)
    duplicated = ClassConditionalGaussian(3, covariance_type).fit(
        np.repeat(X, counts, axis=0), np.repeat(y, counts)
    )
    np.testing.assert_allclose(weighted.class_prior_, duplicated.class_prior_, rtol=1e-12)
    np.testing.assert_allclose(weighted.means_, duplicated.means_, rtol=1e-12)
    np.testing.assert_allclose(weighted.covariances_, duplicated.covariances_, rtol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_gaussian_joint_moments_equal_weighted_data_moments(covariance_type: str) -> None:
    X, y, weight = correlated_data()
    reg_covar = 1e-3
    model = ClassConditionalGaussian(3, covariance_type, reg_covar=reg_covar).fit(X, y, weight)
    p = weight / weight.sum()
    np.testing.assert_allclose(model.class_prior_, np.bincount(y, weights=p), rtol=0, atol=1e-10)
    np.testing.assert_allclose(model.class_prior_ @ model.means_, p @ X, rtol=0, atol=1e-10)
    # second moments: sum_c prior_c (cov_c - reg + mean_c mean_c^T) = E_w[x x^T]
    if covariance_type == "diag":
        within = model.covariances_ - reg_covar
        outer = model.means_**2
        data_moment = p @ X**2
    else:
        within = model.covariances_ - reg_covar * np.eye(3)
        outer = np.einsum("ci,cj->cij", model.means_, model.means_)
        data_moment = (X * p[:, None]).T @ X
    joint_moment = np.tensordot(model.class_prior_, within + outer, axes=1)
    np.testing.assert_allclose(joint_moment, data_moment, rtol=0, atol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_gaussian_samples_match_fitted_parameters(covariance_type: str) -> None:
    X, y, weight = correlated_data()
    model = ClassConditionalGaussian(3, covariance_type).fit(X, y, weight)
    n = 50_000
    Xs, ys = model.sample(n, random_state=0)
    assert Xs.shape == (n, 3) and Xs.dtype == np.float32 and ys.dtype == np.int64
    np.testing.assert_allclose(np.bincount(ys, minlength=3) / n, model.class_prior_, atol=0.01)
    for c in range(3):
        rows = Xs[ys == c].astype(np.float64)
        variances = (
            model.covariances_[c] if covariance_type == "diag" else np.diag(model.covariances_[c])
        )
        standard_error = np.sqrt(variances / len(rows))
        assert np.all(np.abs(rows.mean(axis=0) - model.means_[c]) < 4 * standard_error)
        if covariance_type == "full":
            tolerance = 0.05 * np.abs(model.covariances_[c]).max()
            np.testing.assert_allclose(np.cov(rows.T), model.covariances_[c], atol=tolerance)


def test_gaussian_full_captures_correlation_diag_does_not() -> None:
    X, y, _ = correlated_data()
    for covariance_type, expect_correlated in [("full", True), ("diag", False)]:
        model = ClassConditionalGaussian(3, covariance_type).fit(X, y)
        Xs, _ = model.sample(20_000, labels=np.zeros(20_000, dtype=int), random_state=0)
        correlation = np.corrcoef(Xs[:, 0], Xs[:, 1])[0, 1]
        assert (correlation > 0.6) == expect_correlated, (covariance_type, correlation)


@pytest.mark.parametrize(
    "model",
    [
        ClassConditionalGaussian(2, "diag"),
        ClassConditionalGaussian(2, "full"),
        ClassConditionalGMM(2, n_components=2),
    ],
    ids=["gaussian-diag", "gaussian-full", "gmm"],
)
def test_predict_proba_separates_two_blobs(model: GenerativeModel) -> None:
    X, y = blobs(200, [[-3.0, 0.0], [3.0, 0.0]], seed=0)
    X_test, y_test = blobs(500, [[-3.0, 0.0], [3.0, 0.0]], seed=1)
    proba = model.fit(X, y).predict_proba(X_test)
    assert proba.shape == (1000, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    assert np.mean(model.predict(X_test) == y_test) > 0.95
    assert np.mean(proba[:, 0][y_test == 0] > 0.5) > 0.95


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_gaussian_state_round_trip(covariance_type: str) -> None:
    X, y, weight = correlated_data()
    model = ClassConditionalGaussian(3, covariance_type).fit(X, y, weight)
    assert_state_round_trip(model)
    assert_state_round_trip(model, labels=np.array([2, 0, 1] * 16 + [1, 1]))
    restored = rebuilt(model)
    restored.set_state(model.get_state())
    np.testing.assert_array_equal(restored.predict_proba(X), model.predict_proba(X))


def test_class_without_weight_keeps_parameters_and_gets_prior_zero() -> None:
    X, y = blobs(100, [[0.0], [5.0], [10.0]])
    model = ClassConditionalGaussian(3).fit(X, y)
    first_means = model.means_.copy()
    model.fit(X[y < 2] + 1.0, y[y < 2])
    assert model.class_prior_[2] == 0.0
    np.testing.assert_allclose(model.means_[:2], first_means[:2] + 1.0)
    np.testing.assert_array_equal(model.means_[2], first_means[2])
    assert 2 not in model.sample(1000, random_state=0)[1]
    assert np.all(model.predict_proba(X)[:, 2] == 0.0)
    Xs, ys = model.sample(200, labels=np.full(200, 2), random_state=0)
    assert np.all(ys == 2) and abs(Xs.mean() - 10.0) < 0.5


@pytest.mark.parametrize(
    "model", [ClassConditionalGaussian(3), ClassConditionalGMM(3)], ids=["gaussian", "gmm"]
)
def test_never_fitted_class_cannot_be_sampled(model: GenerativeModel) -> None:
    X, y = blobs(50, [[0.0, 0.0], [5.0, 5.0]])
    model.fit(X, y)
    np.testing.assert_array_equal(model.class_seen_, [True, True, False])
    with pytest.raises(ValueError, match=r"classes \[2\] that had no weight in any fit"):
        model.sample(3, labels=np.array([0, 2, 1]))
    assert np.all(model.predict_proba(X)[:, 2] == 0.0)


# ---- ClassConditionalGMM ------------------------------------------------------------------


def bimodal(n: int = 400, seed: int = 0) -> np.ndarray:
    """One class with two well separated modes, at (-4, 0) (1/4 of rows) and (4, 0)."""
    X, _ = blobs(n, [[-4.0, 0.0], [4.0, 0.0], [4.0, 0.0], [4.0, 0.0]], seed=seed, scale=0.5)
    return X


def test_gmm_recovers_two_modes_and_beats_a_single_gaussian() -> None:
    X = bimodal()
    y = np.zeros(len(X), dtype=int)
    gmm = ClassConditionalGMM(1, n_components=2, covariance_type="full").fit(X, y)
    gaussian = ClassConditionalGaussian(1, "full").fit(X, y)
    modes = gmm.means_[0][np.argsort(gmm.means_[0][:, 0])]
    np.testing.assert_allclose(modes, [[-4.0, 0.0], [4.0, 0.0]], atol=0.15)
    np.testing.assert_allclose(np.sort(gmm.weights_[0]), [0.25, 0.75], atol=0.01)
    X_test = bimodal(seed=1)
    gain = gmm.class_log_likelihood(X_test).mean() - gaussian.class_log_likelihood(X_test).mean()
    assert gain > 1.0
    Xs, _ = gmm.sample(20_000, random_state=0)
    assert abs(np.mean(Xs[:, 0] < 0) - 0.25) < 0.015


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_gmm_log_likelihood_matches_scikit_learn(covariance_type: str) -> None:
    X = bimodal()
    params = {"n_components": 3, "covariance_type": covariance_type, "random_state": 0}
    gmm = ClassConditionalGMM(1, **params).fit(X, np.zeros(len(X), dtype=int))
    reference = GaussianMixture(reg_covar=1e-4, **params).fit(X)
    np.testing.assert_allclose(gmm.class_log_likelihood(X)[:, 0], reference.score_samples(X))


def test_gmm_honours_sample_weights() -> None:
    X, y = blobs(200, [[-4.0, 0.0], [4.0, 0.0], [0.0, 8.0], [0.0, 12.0]], scale=0.5)
    y = np.where(y < 2, 0, 1)  # class 0: modes at x = -4 and 4; class 1 at y = 8 and 12
    weight = np.where(y == 0, 9.0, 2.0)
    weight[(y == 0) & (X[:, 0] < 0)] = 1.0  # class 0: the mode at -4 has 1/10 of the weight
    model = ClassConditionalGMM(2, n_components=1).fit(X, y, sample_weight=weight)
    expected_prior = np.array([200 * 1.0 + 200 * 9.0, 400 * 2.0]) / (2000 + 800)
    np.testing.assert_allclose(model.class_prior_, expected_prior, atol=0.03)
    # one component per class: its mean is the (resampled) weighted class mean, 0.1 * -4 + 0.9 * 4
    assert abs(model.means_[0, 0, 0] - 3.2) < 0.4
    assert abs(model.means_[1, 0, 1] - 10.0) < 0.4


def test_gmm_weight_concentrated_on_one_class() -> None:
    X, y = blobs(100, [[0.0], [6.0]])
    weight = np.where(y == 0, 9.0, 1.0)
    model = ClassConditionalGMM(2, n_components=2).fit(X, y, weight)
    assert abs(model.class_prior_[0] - 0.9) < 0.03
    assert abs(np.mean(model.sample(10_000, random_state=0)[1] == 0) - 0.9) < 0.03


def test_gmm_uses_fewer_components_for_tiny_classes() -> None:
    X = np.array([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0], [9.0, 9.0], [9.5, 9.5], [10.0, 9.0]])
    y = np.array([0, 0, 1, 2, 2, 2])
    model = ClassConditionalGMM(3, n_components=3, reg_covar=1e-3).fit(X, y)
    np.testing.assert_array_equal(np.sum(model.weights_ > 0, axis=1), [2, 1, 3])
    np.testing.assert_allclose(model.means_[1, 0], [5.0, 5.0])
    np.testing.assert_allclose(model.covariances_[1, 0], [1e-3, 1e-3])
    Xs, _ = model.sample(100, labels=np.ones(100, dtype=int), random_state=0)
    assert np.all(np.abs(Xs - 5.0) < 0.2)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_gmm_state_round_trip(covariance_type: str) -> None:
    X, y, weight = correlated_data()
    model = ClassConditionalGMM(3, n_components=2, covariance_type=covariance_type)
    model.fit(X, y, weight)
    assert_state_round_trip(model)
    restored = rebuilt(model)
    restored.set_state(model.get_state())
    np.testing.assert_array_equal(restored.predict_proba(X), model.predict_proba(X))
    with pytest.raises(
        ValueError, match=r"state\['weights'\] has shape \(3, 2\), expected \(3, 3\)"
    ):
        ClassConditionalGMM(3, n_components=3, covariance_type=covariance_type).set_state(
            model.get_state()
        )


# ---- ConditionalVAE on scikit-learn's 8x8 digits ------------------------------------------

CVAE_PARAMS = {"hidden_dim": 128, "latent_dim": 8, "learning_rate": 1e-2, "epochs": 5}


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    return (data.images / 16.0).astype(np.float32)[:, None], data.target


@pytest.fixture(scope="module")
def trained_cvae(digits) -> tuple[ConditionalVAE, list[tuple[float, float]]]:
    """A CVAE fitted twice (warm); after each fit, its reconstruction and training loss."""
    X, y = digits
    model = ConditionalVAE(10, image_shape=(1, 8, 8), **CVAE_PARAMS)
    losses = []
    for _ in range(2):
        model.fit(X, y)
        losses.append((model.reconstruction_loss(X, y), model.last_fit_loss_))
    return model, losses


def test_cvae_training_lowers_reconstruction_loss_and_continues_warm(trained_cvae) -> None:
    _, [(reconstruction_1, training_1), (reconstruction_2, training_2)] = trained_cvae
    untrained = 64 * np.log(2.0)  # predicting 0.5 for every pixel
    assert reconstruction_1 < 0.7 * untrained
    assert reconstruction_2 < reconstruction_1 - 0.3
    assert training_2 < training_1


def test_cvae_samples_are_images_of_the_requested_classes(trained_cvae, digits) -> None:
    model, _ = trained_cvae
    labels = np.repeat(np.arange(10), 30)
    Xs, ys = model.sample(300, labels=labels, random_state=0)
    assert Xs.shape == (300, 1, 8, 8) and Xs.dtype == np.float32
    assert ys.dtype == np.int64 and np.array_equal(ys, labels)
    assert Xs.min() >= 0.0 and Xs.max() <= 1.0
    # a classifier fitted on the real digits recognises the generated classes
    classifier = ClassConditionalGaussian(10).fit(*digits)
    assert np.mean(classifier.predict(Xs) == ys) > 0.8
    _, drawn = model.sample(2000, random_state=1)
    np.testing.assert_allclose(
        np.bincount(drawn, minlength=10) / 2000, model.class_prior_, atol=0.03
    )


def test_cvae_state_round_trip(trained_cvae, digits) -> None:
    model, _ = trained_cvae
    state = model.get_state()
    assert {"class_prior", "sample_shape", "decoder.0.weight", "encoder.2.bias"} <= set(state)
    np.testing.assert_array_equal(state["sample_shape"], [1, 8, 8])
    assert_state_round_trip(model)
    restored = rebuilt(model)
    restored.set_state(state)
    assert restored.reconstruction_loss(*digits) == model.reconstruction_loss(*digits)
    with pytest.raises(ValueError, match="same architecture and latent_dim, hidden_dim"):
        ConditionalVAE(10, image_shape=(1, 8, 8), hidden_dim=32).set_state(state)


def test_cvae_is_deterministic_given_the_seed(digits) -> None:
    X, y = digits[0][:300], digits[1][:300]

    def fitted(seed: int) -> ConditionalVAE:
        return ConditionalVAE(10, (1, 8, 8), hidden_dim=32, epochs=1, seed=seed).fit(X, y)

    first, again, other = fitted(0), fitted(0), fitted(1)
    sample = first.sample(20, random_state=3)[0]
    np.testing.assert_array_equal(again.sample(20, random_state=3)[0], sample)
    assert not np.array_equal(other.sample(20, random_state=3)[0], sample)


def test_cvae_sample_weights_scale_free_and_zero_weight_rows_ignored(digits) -> None:
    X, y = digits[0][:300], digits[1][:300]

    def state_after(X_fit, y_fit, weight=None) -> dict[str, np.ndarray]:
        model = ConditionalVAE(10, (1, 8, 8), hidden_dim=32, epochs=1)
        return model.fit(X_fit, y_fit, sample_weight=weight).get_state()

    plain = state_after(X[:200], y[:200])
    doubled = state_after(X[:200], y[:200], np.full(200, 2.0))
    padded = state_after(X, y, np.r_[np.ones(200), np.zeros(100)])
    for key in ("decoder.2.weight", "encoder.0.weight"):
        np.testing.assert_array_equal(doubled[key], plain[key])
        np.testing.assert_array_equal(padded[key], plain[key])
    reweighted = state_after(X[:200], y[:200], np.r_[np.ones(100), np.full(100, 3.0)])
    assert not np.allclose(reweighted["decoder.2.weight"], plain["decoder.2.weight"])


def test_cvae_has_no_class_posterior(trained_cvae, digits) -> None:
    model, _ = trained_cvae
    with pytest.raises(NotImplementedError, match="no class posterior"):
        model.predict(digits[0][:5])


# ---- input validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("X", "y", "weight", "message"),
    [
        (np.zeros((5, 2)), np.zeros(4, dtype=int), None, r"y has shape \(4,\) but X has 5 rows"),
        (np.zeros(5), np.zeros(5, dtype=int), None, r"X has shape \(5,\), expected \(N, \*s"),
        (np.array([[0.0], [np.nan]]), np.zeros(2, dtype=int), None, "X contains 1 NaN"),
        (np.zeros((3, 1)), np.array([0, 1, 3]), None, r"outside \[0, n_classes=3\)"),
        (np.zeros((3, 1)), np.array([0.0, 1.0, 2.0]), None, "integer class labels"),
        (np.zeros((3, 1)), np.zeros(3, dtype=int), np.array([1.0, -1.0, 1.0]), "1 negative"),
        (np.zeros((2, 1)), np.zeros(2, dtype=int), np.zeros(2), "sums to 0"),
        (np.zeros((2, 1)), np.zeros(2, dtype=int), np.ones(3), r"sample_weight has shape \(3,\)"),
    ],
    ids=["lengths", "1d-X", "nan", "label-range", "float-labels", "negative", "zero-sum", "w-len"],
)
@pytest.mark.parametrize("kind", ["gaussian", "gmm"])
def test_fit_rejects_bad_inputs(kind, X, y, weight, message) -> None:
    model = build_generator(kind, 3, (1,))
    with pytest.raises(ValueError, match=message):
        model.fit(X, y, sample_weight=weight)
    assert not model.is_fitted


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (ClassConditionalGaussian(0), "n_classes must be an integer >= 1"),
        (ClassConditionalGaussian(2, covariance_type="spherical"), "covariance_type must be one"),
        (ClassConditionalGaussian(2, reg_covar=-1.0), "reg_covar must be a finite number >= 0"),
        (ClassConditionalGMM(2, n_components=0), "n_components must be an integer >= 1"),
        (ConditionalVAE(2, image_shape=(8, 8)), r"image_shape must be \(C, H, W\)"),
        (ConditionalVAE(2, learning_rate=0.0), "learning_rate must be a finite number > 0"),
    ],
)
def test_fit_rejects_bad_parameters(model: GenerativeModel, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        model.fit(np.zeros((2, 1, 28, 28)), np.zeros(2, dtype=int))


def test_cvae_rejects_images_outside_unit_range_and_of_another_shape() -> None:
    model = ConditionalVAE(2, image_shape=(1, 4, 4), epochs=1)
    with pytest.raises(ValueError, match=r"learns images in \[0, 1\]"):
        model.fit(np.full((2, 1, 4, 4), 255.0), np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match=r"expected \(N, \*image_shape\) = \(N, 1, 4, 4\)"):
        model.fit(np.zeros((2, 1, 8, 8)), np.zeros(2, dtype=int))


def test_sample_and_refit_checks() -> None:
    model = ClassConditionalGaussian(2)
    with pytest.raises(NotFittedError, match="not fitted; call fit or set_state"):
        model.sample(3)
    X, y = blobs(10, [[0.0, 0.0], [3.0, 3.0]])
    model.fit(X, y)
    with pytest.raises(ValueError, match=r"labels has shape \(2,\), expected \(n,\) = \(3,\)"):
        model.sample(3, labels=np.array([0, 1]))
    with pytest.raises(ValueError, match=r"labels holds labels outside \[0, n_classes=2\)"):
        model.sample(2, labels=np.array([0, 2]))
    with pytest.raises(ValueError, match="n must be an integer >= 0"):
        model.sample(-1)
    with pytest.raises(ValueError, match=r"sample shape \(3,\) but the model was fitted on \(2,\)"):
        model.fit(np.zeros((2, 3)), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"X has shape \(4, 3\), expected"):
        model.predict_proba(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"state lacks \['covariances'\]"):
        ClassConditionalGaussian(2).set_state(
            {k: v for k, v in model.get_state().items() if k != "covariances"}
        )
    with pytest.raises(ValueError, match=r"state\['class_prior'\] has shape \(2,\), expected"):
        ClassConditionalGaussian(3).set_state(model.get_state())


# ---- build_generator ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", GENERATORS)
def test_build_generator_builds_every_kind(kind: str) -> None:
    params = {"epochs": 1, "hidden_dim": 16} if kind.startswith("cvae") else {}
    if kind in ("flow", "score"):
        params = {"channels": 4, "steps": 2}
    if kind == "mean-embedding":
        params = {"steps": 2, "num_features": 16, "batch_size": 8}
    model = build_generator(kind, 2, (1, 4, 4), **params)
    expected = {
        "gaussian": ClassConditionalGaussian,
        "gaussian-full": ClassConditionalGaussian,
        "gmm": ClassConditionalGMM,
        "cvae": ConditionalVAE,
        "cvae-conv": ConditionalVAE,
        "symvae": SymmetricVAE,
        "flow": FlowMatching,
        "score": ScoreModel,
        "mean-embedding": MeanEmbedding,
    }[kind]
    assert type(model) is expected
    if kind.startswith("gaussian"):
        assert model.covariance_type == ("full" if kind == "gaussian-full" else "diag")
    X = np.random.default_rng(0).uniform(size=(20, 1, 4, 4))
    Xs, ys = model.fit(X, np.arange(20) % 2).sample(6, random_state=0)
    assert Xs.shape == (6, 1, 4, 4) and Xs.dtype == np.float32 and ys.shape == (6,)


def test_build_generator_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown generator 'vae'; choose one of \('gaussian'"):
        build_generator("vae", 10, (1, 28, 28))
    with pytest.raises(ValueError, match=r"sample_shape must be \(C, H, W\), got \(64,\)"):
        build_generator("cvae", 10, (64,))


def test_generator_bound_on_digits_is_well_above_chance(tmp_path) -> None:
    from flower_synth.bench.generator_bound import format_bound_table, generator_bound

    (outcome,) = generator_bound(
        "digits", "gaussian", num_samples=2000, classifier_epochs=10, reference_cache=tmp_path
    )
    assert outcome["cas_hard"] > 0.7  # chance is 0.1; real-data training gives ~0.95
    assert outcome["cas_soft"] > 0.3 and outcome["frechet"] > 0
    assert outcome["parameters"] == 2 * 10 * 64  # a mean and a variance per pixel and class
    assert outcome["steps"] == 0 and outcome["seconds_per_1000"] > 0
    table = format_bound_table([{"generator": "gaussian"} | outcome])
    assert "| gaussian | - | - |" in table and "1,280" in table


def test_filtered_samples_are_all_read_as_their_label_and_the_refused_are_drawn_again(
    tmp_path,
) -> None:
    import torch

    from flower_synth.app.quality import ReferenceClassifier
    from flower_synth.bench.consistent_samples import draw_consistent
    from flower_synth.bench.generator_bound import format_bound_table, generator_bound
    from flower_synth.data import load_dataset
    from flower_synth.learning.training import class_probabilities, to_unit_range
    from flower_synth.models import build_model

    train_set, _ = load_dataset("digits")
    generator = build_generator("gaussian", 10, train_set.image_shape)
    generator.fit(to_unit_range(train_set), train_set.labels)
    judge = ReferenceClassifier.train_on(train_set, seed=1)
    asked = np.arange(1000) % 10
    draw = draw_consistent(generator, asked, judge, seed=3)
    read = class_probabilities(judge.model, draw.samples, judge.normalization).argmax(axis=1)
    assert np.array_equal(draw.labels, asked) and np.array_equal(read, asked)
    assert draw.drawn > len(asked) and draw.acceptance == len(asked) / draw.drawn
    first, _ = generator.sample(1000, labels=asked, random_state=3)
    first_read = class_probabilities(judge.model, np.clip(first, 0, 1), judge.normalization)
    agreeing = first_read.argmax(axis=1) == asked
    assert 0 < agreeing.sum() < len(asked)  # the first round keeps what its judge agrees on
    assert np.allclose(draw.samples[agreeing], np.clip(first, 0, 1)[agreeing])
    again = draw_consistent(generator, asked, judge, seed=3)
    assert np.array_equal(again.samples, draw.samples)  # the seed decides every round

    stubborn = build_model(train_set.image_shape, 10)
    with torch.no_grad():  # a judge that reads every image as a 0
        stubborn.head.weight.zero_()
        stubborn.head.bias.copy_(torch.arange(10, 0, -1, dtype=torch.float32))
    with pytest.raises(ValueError, match=r"classes \[3\] as another class.*train it longer"):
        draw_consistent(generator, np.array([0, 3, 0]), ReferenceClassifier(stubborn), 0, 2)

    options = {"num_samples": 1000, "classifier_epochs": 10, "reference_cache": tmp_path}
    (plain,) = generator_bound("digits", "gaussian", **options)
    (kept,) = generator_bound("digits", "gaussian", filter_samples=True, **options)
    assert plain["acceptance"] == 1.0 and kept["acceptance"] < 1.0
    # the reference, another classifier than the judge, agrees more with the kept samples
    assert kept["reference_accuracy"] > plain["reference_accuracy"]
    table = format_bound_table([{"generator": "gaussian"} | kept])
    assert f"| gaussian | - | - | - | {100 * kept['acceptance']:.1f} |" in table
    with pytest.raises(ValueError, match="not real images"):
        generator_bound("digits", "real", filter_samples=True, **options)


def test_generator_bound_scores_real_images_as_the_ceiling(tmp_path) -> None:
    from flower_synth.bench.generator_bound import REAL_IMAGES, format_bound_table, generator_bound

    (real,) = generator_bound(
        "digits", REAL_IMAGES, num_samples=1000, classifier_epochs=10, reference_cache=tmp_path
    )
    (gaussian,) = generator_bound(
        "digits", "gaussian", num_samples=1000, classifier_epochs=10, reference_cache=tmp_path
    )
    assert real["cas_hard"] > 0.85  # chance is 0.1
    assert real["cas_hard"] > gaussian["cas_hard"] and real["cas_soft"] > gaussian["cas_soft"]
    assert real["frechet"] < gaussian["frechet"]  # real images lie nearer the test set
    assert real["parameters"] == real["fit_seconds"] == real["seconds_per_1000"] == 0
    assert "| real | - |" in format_bound_table([{"generator": REAL_IMAGES} | real])
    with pytest.raises(ValueError, match="larger than the .* the training set holds"):
        generator_bound("digits", REAL_IMAGES, num_samples=100_000, reference_cache=tmp_path)


def test_generator_bound_scores_an_ode_generator_once_per_steps_and_guidance(tmp_path) -> None:
    from flower_synth.bench.generator_bound import format_bound_table, generator_bound

    rows = generator_bound(
        "digits",
        "flow",
        generator_epochs=3,
        num_samples=500,
        classifier_epochs=10,
        reference_cache=tmp_path,
        sample_steps=[2, 4],
        sample_guidance=[1.0, 2.0],
        class_dropout=0.2,
    )
    assert [(row["steps"], row["guidance"]) for row in rows] == [
        (2, 1.0),
        (2, 2.0),
        (4, 1.0),
        (4, 2.0),
    ]
    assert len({row["fit_seconds"] for row in rows}) == 1  # fitted once, sampled four ways
    assert len({row["frechet"] for row in rows}) == 4  # every setting draws other samples
    assert all(row["cas_hard"] > 0.3 for row in rows)  # chance is 0.1
    table = format_bound_table([{"generator": "flow"} | row for row in rows])
    assert "| flow | 3 | 4 | 2.0 |" in table


def test_generator_bound_scores_a_learning_curve_from_one_fit(tmp_path) -> None:
    from flower_synth.bench.generator_bound import format_bound_table, generator_bound

    reported = []
    rows = generator_bound(
        "digits",
        "flow",
        generator_epochs=[8, 1],
        num_samples=500,
        classifier_epochs=10,
        reference_cache=tmp_path,
        sample_steps=[4],
        on_row=reported.append,
    )
    assert reported == rows and [row["epochs"] for row in rows] == [1, 8]  # rising
    early, late = rows
    assert late["fit_seconds"] > early["fit_seconds"] > 0  # the seconds of every epoch so far
    assert late["frechet"] < early["frechet"]  # the same fit, seven epochs further
    assert late["cas_hard"] > 0.5  # chance is 0.1
    assert "| flow | 8 | 4 | 1.0 |" in format_bound_table([{"generator": "flow"} | late])
    with pytest.raises(ValueError, match="needs a torch generator"):
        generator_bound("digits", "gaussian", generator_epochs=[1, 2], reference_cache=tmp_path)
    with pytest.raises(ValueError, match="distinct counts >= 1"):
        generator_bound("digits", "flow", generator_epochs=[2, 2], reference_cache=tmp_path)


def test_generator_bound_goes_on_from_a_saved_fit_as_if_it_had_never_stopped(tmp_path) -> None:
    from flower_synth.bench.generator_bound import generator_bound

    def bound(epochs: list[int], **kwargs: Any) -> list[dict[str, float]]:
        settings = {"num_samples": 300, "classifier_epochs": 3, "sample_steps": [2]}
        return generator_bound(
            "digits", "flow", epochs, reference_cache=tmp_path, **settings, **kwargs
        )

    saved = tmp_path / "fit" / "flow.npz"
    (first,) = bound([1], checkpoint=saved)
    assert saved.exists() and first["epochs"] == 1
    (resumed,) = bound([2], checkpoint=saved)  # a later run: one epoch more
    straight = bound([1, 2])[1]  # one run, no checkpoint
    assert resumed["epochs"] == straight["epochs"] == 2
    for key in ("cas_hard", "cas_soft", "frechet", "reference_accuracy"):
        assert resumed[key] == pytest.approx(straight[key], rel=1e-6), key
    assert resumed["fit_seconds"] > first["fit_seconds"]  # the first run's seconds included
    (again,) = bound([2], checkpoint=saved)  # the saved fit scored as it is: no epoch more
    timed = ("seconds_per_1000",)
    assert {k: v for k, v in again.items() if k not in timed} == {
        k: v for k, v in resumed.items() if k not in timed
    }
    with pytest.raises(ValueError, match="holds a fit of 2 epochs: ask for that many"):
        bound([1], checkpoint=saved)
    with pytest.raises(ValueError, match="other settings \\(channels"):
        bound([3], checkpoint=saved, channels=8)
    with pytest.raises(ValueError, match="needs a torch generator"):
        generator_bound("digits", "gaussian", 1, reference_cache=tmp_path, checkpoint=saved)


def test_generator_bound_command_prints_every_row_of_a_learning_curve(
    tmp_path, monkeypatch, capsys
) -> None:
    from flower_synth.bench.cli import main

    monkeypatch.setenv("HOME", str(tmp_path))  # the reference classifier's cache
    argv = ["generator-bound", "--dataset", "digits", "--generator", "flow", "--samples", "300"]
    argv += ["--generator-epochs", "1", "2", "--steps", "2", "--classifier-epochs", "2"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    printed = [line for line in lines if line.startswith("flow ")]  # one line per row
    assert len(printed) == 2 and "epochs=1.0000" in printed[0] and "epochs=2.0000" in printed[1]
    table = [line for line in lines if line.startswith("| flow |")]
    assert [line[:18] for line in table] == ["| flow | 1 | 2 | 1", "| flow | 2 | 2 | 1"]
    assert (tmp_path / ".cache" / "flower-synth" / "reference").exists()


def test_generator_bound_command_filters_samples_when_asked(tmp_path, monkeypatch, capsys) -> None:
    from flower_synth.bench.cli import main

    monkeypatch.setenv("HOME", str(tmp_path))  # the reference classifier's cache
    argv = ["generator-bound", "--dataset", "digits", "--generator", "gaussian"]
    argv += ["--samples", "300", "--classifier-epochs", "2"]
    assert main(argv) == 0 and main([*argv, "--filter-samples"]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("gauss")]
    kept = [float(line.split("acceptance=")[1].split()[0]) for line in printed]
    assert kept[0] == 1.0 and 0.0 < kept[1] < 1.0  # the second run refused some draws


def test_conv_cvae_learns_and_round_trips(digits) -> None:
    X, y = digits
    model = ConditionalVAE(10, image_shape=(1, 8, 8), architecture="conv", **CVAE_PARAMS)
    model.fit(X, y)
    assert model.reconstruction_loss(X, y) < 0.8 * 64 * np.log(2.0)
    assert_state_round_trip(model)
    with pytest.raises(ValueError, match="state lacks"):  # an MLP CVAE cannot load it
        ConditionalVAE(10, image_shape=(1, 8, 8), **CVAE_PARAMS).set_state(model.get_state())
    with pytest.raises(ValueError, match="divisible by 4"):
        ConditionalVAE(10, image_shape=(1, 6, 6), architecture="conv").fit(X[:, :, :6, :6], y)
