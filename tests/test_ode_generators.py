"""The mean-field-game generators: flow matching and the score model sampled through
its probability-flow ODE (learning, class consistency, steps, HJB, state, errors)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import RecordDict
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from flower_synth.app.quality import frechet_distance
from flower_synth.generative import FlowMatching, ScoreModel
from flower_synth.generative.ode_sampling import integrate
from flower_synth.learning.state import load_arrays, save_arrays

ODE_MODELS = [FlowMatching, ScoreModel]


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    return (data.images / 16.0).astype(np.float32)[:, None], data.target


@pytest.fixture(scope="module")
def digit_reader(digits) -> LogisticRegression:
    """A reference classifier of real digits (~97 % on held-out digits)."""
    X, y = digits
    return LogisticRegression(max_iter=2000).fit(X.reshape(len(X), -1), y)


def toy_mixture(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """4x4 images: class 0 is bimodal (all pixels near 0.1 or all near 0.9), class 1
    one mode at 0.5; the velocity field of such a mixture is curved."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    level = np.where(y == 1, 0.5, np.where(rng.random(n) < 0.5, 0.1, 0.9))
    X = level[:, None] + 0.03 * rng.standard_normal((n, 16))
    return np.clip(X, 0, 1).reshape(n, 1, 4, 4).astype(np.float32), y


def fitted_on_toy(model_type=FlowMatching, **params) -> FlowMatching:
    X, y = toy_mixture()
    defaults = dict(image_shape=(1, 4, 4), channels=8, epochs=1, batch_size=64, seed=0)
    model = model_type(2, **(defaults | params))
    for _ in range(40):
        model.fit(X, y)
    return model


@pytest.mark.parametrize("model_type", ODE_MODELS)
def test_loss_falls_over_a_few_hundred_steps_on_digits(model_type, digits) -> None:
    X, y = digits
    model = model_type(10, image_shape=(1, 8, 8), channels=8, batch_size=64, seed=0)
    model.fit(X, y)  # 23 steps
    first = model.last_fit_loss_
    for _ in range(12):
        model.fit(X, y)
    assert model.last_fit_loss_ < 0.7 * first
    assert model.parameter_count() == sum(p.numel() for p in model._network.parameters())


@pytest.mark.parametrize("model_type", ODE_MODELS)
def test_samples_are_class_consistent_on_digits(model_type, digits, digit_reader) -> None:
    X, y = digits
    solver = {"steps": 8, "solver": "heun"} if model_type is ScoreModel else {}
    model = model_type(10, image_shape=(1, 8, 8), channels=16, batch_size=64, seed=0, **solver)
    for _ in range(45 if model_type is ScoreModel else 25):  # the curved path learns slower
        model.fit(X, y)
    labels = np.arange(500) % 10
    samples, returned = model.sample(500, labels=labels, random_state=0)
    assert samples.shape == (500, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 1
    np.testing.assert_array_equal(returned, labels)
    agreement = (digit_reader.predict(samples.reshape(500, -1)) == labels).mean()
    assert agreement > 0.9  # chance: 0.1


@pytest.mark.parametrize("model_type", ODE_MODELS)
def test_state_round_trip_through_context_state_gives_the_same_next_samples(
    model_type, digits
) -> None:
    X, y = digits
    params = dict(image_shape=(1, 8, 8), channels=8, batch_size=64, seed=3, steps=4)
    model = model_type(10, **params)
    model.fit(X[:300], y[:300])
    state = RecordDict()
    save_arrays(state, "generator", model.get_state())
    restored = model_type(10, **params)
    restored.set_state(load_arrays(state, "generator"))
    np.testing.assert_array_equal(
        restored.sample(20, random_state=5)[0], model.sample(20, random_state=5)[0]
    )
    # the optimizer's moments and the random stream continue too: the next fit is the same
    model.fit(X[300:600], y[300:600])
    restored.fit(X[300:600], y[300:600])
    assert restored.last_fit_loss_ == model.last_fit_loss_
    np.testing.assert_array_equal(
        restored.sample(20, random_state=6)[0], model.sample(20, random_state=6)[0]
    )


def test_more_steps_lower_the_frechet_distance_on_a_toy_mixture() -> None:
    model = fitted_on_toy()
    X, y = toy_mixture(seed=1)
    labels = np.arange(400) % 2
    distances = {}
    for steps in (1, 4, 16):
        model.steps = steps
        samples, _ = model.sample(400, labels=labels, random_state=0)
        distances[steps] = frechet_distance(samples.reshape(400, -1), X[:400].reshape(400, -1))
    # one Euler step lands on the mean of each class: the two modes of class 0 collapse
    assert distances[16] < distances[4] < distances[1]
    assert distances[16] < 0.2 * distances[1]


def test_second_order_solvers_integrate_a_rotation_better_than_euler() -> None:
    def rotation(x, t):
        return torch.stack([-x[:, 1], x[:, 0]], dim=1)

    start = torch.tensor([[1.0, 0.0]])
    exact = torch.tensor([[np.cos(1.0), np.sin(1.0)]], dtype=torch.float32)
    times = torch.linspace(0, 1, 9)
    errors = {
        solver: float((integrate(rotation, start, times, solver)[0] - exact).norm())
        for solver in ("euler", "midpoint", "heun")
    }
    assert errors["midpoint"] < 0.1 * errors["euler"] and errors["heun"] < 0.1 * errors["euler"]
    _, energy = integrate(rotation, start, times, "heun")
    assert energy.item() == pytest.approx(0.5, rel=0.02)  # |v|^2 = 1 on a 2-d circle


def test_the_hjb_option_changes_the_kinetic_energy_of_the_paths() -> None:
    plain = fitted_on_toy()
    regularized = fitted_on_toy(hjb_weight=1.0)
    assert plain.last_fit_hjb_ == 0.0 and regularized.last_fit_hjb_ > 0.0
    labels = np.arange(200) % 2
    energies = [m.kinetic_energy(labels, random_state=0, steps=16) for m in (plain, regularized)]
    assert abs(energies[0] - energies[1]) > 0.02 * energies[0]


def test_relative_kinetic_energy_tells_straight_paths_from_curved_ones() -> None:
    labels = np.arange(200) % 2
    flow, score = fitted_on_toy(), fitted_on_toy(ScoreModel)
    for model in (flow, score):  # one step is a straight segment; no path takes less
        one_step = model.kinetic_energy(labels, random_state=0, steps=1, relative=True)
        assert one_step == pytest.approx(1.0, abs=1e-4)
    straightness = [
        m.kinetic_energy(labels, random_state=0, steps=8, relative=True) for m in (flow, score)
    ]
    assert 1.0 <= straightness[0] < 1.5  # the straight path: nearly straight once learnt
    assert straightness[1] > 1.5 * straightness[0]  # the diffusion's bends


def test_classifier_free_guidance_samples_and_needs_dropout() -> None:
    model = fitted_on_toy(class_dropout=0.2, guidance_scale=2.0, steps=4)
    samples, labels = model.sample(40, labels=np.arange(40) % 2, random_state=0)
    means = samples.reshape(40, -1).mean(axis=1)
    assert np.all(np.abs(means[labels == 1] - 0.5) < 0.2)
    with pytest.raises(ValueError, match="guidance_scale=2.0 needs the unconditional velocity"):
        FlowMatching(2, image_shape=(1, 4, 4), guidance_scale=2.0).fit(*toy_mixture(20))
    unconditioned = fitted_on_toy(steps=4)  # no class dropout: no unconditional velocity
    unconditioned.guidance_scale = 2.0  # set after the fit, as generator-bound does
    with pytest.raises(ValueError, match="guidance_scale=2.0 needs the unconditional velocity"):
        unconditioned.sample(4, labels=np.arange(4) % 2, random_state=0)


@pytest.mark.parametrize("model_type", ODE_MODELS)
def test_bad_inputs_get_clear_errors(model_type) -> None:
    X, y = toy_mixture(20)
    model = model_type(2, image_shape=(1, 4, 4), channels=4)
    with pytest.raises(ValueError, match=r"X has shape \(20, 1, 8, 2\), expected"):
        model.fit(X.reshape(20, 1, 8, 2), y)
    bad = X.copy()
    bad[3, 0, 1, 1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        model.fit(bad, y)
    with pytest.raises(ValueError, match=r"learns images in \[0, 1\]"):
        model.fit(X * 255, y)
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        model_type(2, image_shape=(1, 4, 4), device="gpu").fit(X, y)
    with pytest.raises(ValueError, match="solver must be one of"):
        model_type(2, image_shape=(1, 4, 4), solver="rk4").fit(X, y)
    with pytest.raises(ValueError, match="sides must be divisible by 4"):
        model_type(2, image_shape=(1, 6, 6)).fit(np.zeros((4, 1, 6, 6), np.float32), y[:4])
    with pytest.raises(ValueError, match="channels must be an integer >= 1"):
        model_type(2, image_shape=(1, 4, 4), channels=0).fit(X, y)
