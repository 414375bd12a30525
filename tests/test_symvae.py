"""The SymmetricVAE (symmetric equilibrium learning, binary latents) on 8x8 digits:
state round trips, a rising decoder likelihood, class-consistent samples, input checks
and its place behind ``build_generator``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

from flower_synth.app.client_app import generator_params
from flower_synth.app.config import RunSettings
from flower_synth.data import load_dataset
from flower_synth.generative import (
    DENSITY_GENERATORS,
    GENERATORS,
    SymmetricVAE,
    build_generator,
)
from flower_synth.learning.training import class_probabilities, make_loader, to_unit_range, train
from flower_synth.models import build_model

FITS = 5
PARAMS = {"latent_dim": 8, "hidden_dim": 256, "learning_rate": 3e-3, "epochs": 2}


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,437 training digits of ``load_dataset("digits")`` in [0, 1], ``(N, 1, 8, 8)``."""
    train_set, _ = load_dataset("digits")
    return to_unit_range(train_set), train_set.labels


@pytest.fixture(scope="module")
def trained(digits) -> tuple[SymmetricVAE, list[float]]:
    """A SymmetricVAE fitted ``FITS`` times (warm); its decoder log-likelihood after each."""
    X, y = digits
    model = SymmetricVAE(10, image_shape=(1, 8, 8), **PARAMS)
    log_likelihoods = []
    for _ in range(FITS):
        model.fit(X, y)
        log_likelihoods.append(model.decoder_log_likelihood(X, y))
    return model, log_likelihoods


def small_model(**params) -> SymmetricVAE:
    return SymmetricVAE(10, image_shape=(1, 8, 8), hidden_dim=32, epochs=1, **params)


# ---- (a) state ----------------------------------------------------------------------------


def test_state_round_trip_continues_identically(digits) -> None:
    X, y = digits[0][:300], digits[1][:300]
    model = small_model().fit(X, y)
    state = model.get_state()
    assert all(isinstance(value, np.ndarray) for value in state.values())
    expected_keys = {
        "decoder_x.0.weight",
        "encoder_z0.2.bias",
        "decoder_optimizer.0.exp_avg",
        "encoder_optimizer.0.exp_avg_sq",
        "rng_state",
    }
    assert expected_keys <= set(state)
    restored = small_model()
    restored.set_state(state)
    pairs = zip(model.sample(40, random_state=3), restored.sample(40, random_state=3), strict=True)
    for expected, actual in pairs:
        np.testing.assert_array_equal(actual, expected)
    assert restored.decoder_log_likelihood(X, y) == model.decoder_log_likelihood(X, y)
    # the next fit continues exactly: same Adam moments, same random stream
    model.fit(X, y)
    restored.fit(X, y)
    assert restored.last_fit_loss_ == model.last_fit_loss_
    np.testing.assert_array_equal(
        restored.sample(40, random_state=5)[0], model.sample(40, random_state=5)[0]
    )
    # without the optimisers' moments, it would not (so the comparison above can fail)
    fresh_adam = small_model()
    fresh_adam.set_state({k: v for k, v in state.items() if "optimizer." not in k})
    fresh_adam.fit(X, y)
    assert fresh_adam.last_fit_loss_ != model.last_fit_loss_


def test_set_state_rejects_another_architecture(digits) -> None:
    state = small_model().fit(digits[0][:100], digits[1][:100]).get_state()
    with pytest.raises(ValueError, match="latent_dim, hidden_dim as the one"):
        SymmetricVAE(10, image_shape=(1, 8, 8), hidden_dim=16).set_state(state)
    with pytest.raises(ValueError, match="construct the model with the state's image_shape"):
        SymmetricVAE(10, image_shape=(1, 4, 4), hidden_dim=32).set_state(state)


def test_seed_determines_the_model_and_weights_are_scale_free(digits) -> None:
    X, y = digits[0][:300], digits[1][:300]
    first, again, other = (small_model(seed=s).fit(X, y) for s in (0, 0, 1))
    sample = first.sample(20, random_state=3)[0]
    np.testing.assert_array_equal(again.sample(20, random_state=3)[0], sample)
    assert not np.array_equal(other.sample(20, random_state=3)[0], sample)
    plain = small_model().fit(X[:200], y[:200]).get_state()
    doubled = small_model().fit(X[:200], y[:200], sample_weight=np.full(200, 2.0)).get_state()
    padded = small_model().fit(X, y, sample_weight=np.r_[np.ones(200), np.zeros(100)]).get_state()
    for key in ("decoder_x.2.weight", "encoder_z1.0.weight"):
        np.testing.assert_array_equal(doubled[key], plain[key])
        np.testing.assert_array_equal(padded[key], plain[key])


# ---- (b) learning -------------------------------------------------------------------------


def test_decoder_log_likelihood_rises_over_fits(trained) -> None:
    model, log_likelihoods = trained
    # measured -36.6, -34.0, -32.8, -32.1, -31.3 nats (seed 0; seeds 1, 2 within 0.2);
    # a decoder predicting 0.5 everywhere scores -(64 + 16) log 2 = -55.5
    assert log_likelihoods[-1] > log_likelihoods[0] + 3.0
    assert all(b > a for a, b in zip(log_likelihoods, log_likelihoods[1:], strict=False))
    assert log_likelihoods[0] > -80 * np.log(2.0) + 10
    # the training loss is the same quantity, on the last epoch's draws
    assert model.last_fit_loss_ == pytest.approx(-log_likelihoods[-1], abs=1.0)


def test_encoder_codes_carry_information_about_the_image(trained, digits) -> None:
    """Blinding ``q(z1 | x, c)`` (zero output weights: ``z1`` no longer depends on ``x``)
    costs the decoder likelihood only if the encoder has learnt codes of the images."""
    model, log_likelihoods = trained
    state = model.get_state()
    state["encoder_z1.2.weight"] = np.zeros_like(state["encoder_z1.2.weight"])
    blind = SymmetricVAE(10, image_shape=(1, 8, 8), **PARAMS)
    blind.set_state(state)
    # measured drops of 3.9, 3.7, 4.3 nats (seeds 0, 1, 2), and 0.1 when the encoder's
    # learning rate is ~0 (the decoder then learns to ignore its random codes)
    assert blind.decoder_log_likelihood(*digits) < log_likelihoods[-1] - 2.0


# ---- (c) class-consistent samples ---------------------------------------------------------


def test_samples_are_images_of_the_requested_classes(trained, digits) -> None:
    model, _ = trained
    X, y = digits
    torch.manual_seed(0)
    judge = build_model((1, 8, 8), 10)  # 0.98 accuracy on the held-out digits
    train(judge, make_loader(X, y, 64, True, seed=0), 20, 0.05)
    labels = np.repeat(np.arange(10), 100)
    samples, drawn = model.sample(1000, labels=labels, random_state=0)
    assert samples.shape == (1000, 1, 8, 8) and samples.dtype == np.float32
    assert np.array_equal(drawn, labels)
    assert samples.min() >= 0.0 and samples.max() <= 1.0
    agreement = np.mean(class_probabilities(judge, samples).argmax(axis=1) == labels)
    # measured 1.000 (seeds 0, 1, 2); chance is 0.1
    assert agreement > 0.9


# ---- (d) input checks ---------------------------------------------------------------------


def test_rejects_images_outside_unit_range_and_of_another_shape() -> None:
    model = SymmetricVAE(2, image_shape=(1, 4, 4), hidden_dim=8, epochs=1)
    y = np.zeros(2, dtype=int)
    with pytest.raises(NotFittedError, match="not fitted"):
        model.decoder_log_likelihood(np.zeros((2, 1, 4, 4)), y)
    with pytest.raises(
        ValueError, match=r"values in \[0, 255\] but SymmetricVAE learns images in \[0, 1\]"
    ):
        model.fit(np.r_[np.zeros((1, 1, 4, 4)), np.full((1, 1, 4, 4), 255.0)], y)
    with pytest.raises(ValueError, match=r"values in \[-0.5, -0.5\] but"):
        model.fit(np.full((2, 1, 4, 4), -0.5), y)
    with pytest.raises(ValueError, match=r"expected \(N, \*image_shape\) = \(N, 1, 4, 4\)"):
        model.fit(np.zeros((2, 1, 8, 8)), y)
    assert not model.is_fitted
    model.fit(np.full((2, 1, 4, 4), 0.5), y)
    with pytest.raises(ValueError, match=r"learns images in \[0, 1\]"):
        model.decoder_log_likelihood(np.full((2, 1, 4, 4), 2.0), y)
    with pytest.raises(ValueError, match="n_draws must be an integer >= 1"):
        model.decoder_log_likelihood(np.zeros((2, 1, 4, 4)), y, n_draws=0)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"image_shape": (8, 8)}, r"image_shape must be \(C, H, W\)"),
        ({"latent_dim": 0}, "latent_dim must be an integer >= 1"),
        ({"learning_rate": 0.0}, "learning_rate must be a finite number > 0"),
        ({"epoch_size": 0}, "epoch_size must be an integer >= 1"),
    ],
)
def test_rejects_bad_parameters(params, message) -> None:
    with pytest.raises(ValueError, match=message):
        SymmetricVAE(2, **params).fit(np.zeros((2, 1, 28, 28)), np.zeros(2, dtype=int))


# ---- (e) registration ---------------------------------------------------------------------


def test_build_generator_and_run_config() -> None:
    assert "symvae" in GENERATORS and "symvae" not in DENSITY_GENERATORS
    settings = RunSettings(dataset="digits", generator="symvae")
    params = generator_params(settings, "symvae", 0, 100)
    assert "latent_prior" not in params and "kl_weight" not in params
    assert params.items() <= generator_params(settings, "cvae", 0, 100).items()
    model = build_generator("symvae", 2, (1, 4, 4), **params | {"hidden_dim": 16})
    assert type(model) is SymmetricVAE and model.image_shape == (1, 4, 4)
    assert model.latent_dim == settings.latent_dim and model.epoch_size == params["epoch_size"]
    X = np.random.default_rng(0).uniform(size=(20, 1, 4, 4))
    Xs, ys = model.fit(X, np.arange(20) % 2).sample(6, random_state=0)
    assert Xs.shape == (6, 1, 4, 4) and Xs.dtype == np.float32 and ys.shape == (6,)
    with pytest.raises(NotImplementedError, match="no class posterior"):
        model.predict(X)
    with pytest.raises(ValueError, match=r"symvae generates images: .* got \(64,\)"):
        build_generator("symvae", 10, (64,))
