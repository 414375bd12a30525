"""Differentially private generators: the ledger spends what Opacus' accountant says,
budgets no noise reaches are refused by name, a private generator records every step
it takes and keeps it in its state, and a private client sends only what DP covers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import RecordDict
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

from flower_synth.app.client_app import private_params
from flower_synth.app.config import RunSettings
from flower_synth.data import load_client_data
from flower_synth.generative import ConditionalVAE, FlowMatching
from flower_synth.models import build_model
from flower_synth.privacy import DPSGD, PrivacyLedger, noise_for_budget
from flower_synth.privacy.release import LABEL_COUNT_NOISE
from flower_synth.synthetic.learner import RELEASED_COUNTS_STATE, SyntheticLearner
from flower_synth.wire.payload import decode_samples

DELTA = 1e-5


def test_the_ledger_spends_what_opacus_accountant_says_and_grows_with_rounds() -> None:
    ledger, reference = PrivacyLedger(), RDPAccountant()
    spent = []
    for _ in range(3):  # three rounds of 50 steps
        ledger.spend(1.1, 0.02, 50)
        for _ in range(50):
            reference.step(noise_multiplier=1.1, sample_rate=0.02)
        spent.append(ledger.epsilon(DELTA))
        assert spent[-1] == pytest.approx(reference.get_epsilon(DELTA), rel=1e-9)
    assert 0 < spent[0] < spent[1] < spent[2]
    assert PrivacyLedger(ledger.to_array()).epsilon(DELTA) == spent[-1]  # kept as an array


def test_the_noise_for_a_budget_is_opacus_own() -> None:
    noise = noise_for_budget(8.0, DELTA, 0.01, 3000)
    assert noise == pytest.approx(
        get_noise_multiplier(target_epsilon=8.0, target_delta=DELTA, sample_rate=0.01, steps=3000),
        rel=0.02,
    )
    ledger = PrivacyLedger()
    ledger.spend(noise, 0.01, 3000)
    assert 7.8 < ledger.epsilon(DELTA) <= 8.0
    released = PrivacyLedger()
    released.spend(LABEL_COUNT_NOISE, 1.0, 1)
    assert 0 < released.epsilon(DELTA) < 0.5  # the label counts' release, alone
    released.spend(noise, 0.01, 3000)
    assert released.epsilon(DELTA) > ledger.epsilon(DELTA)  # ... and together
    assert noise_for_budget(8.0, DELTA, 0.01, 3000, released) > noise  # spent already


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"dp_epsilon": 0.01, "num_server_rounds": 30}, "no noise spends at most epsilon=0.01"),
        ({"dp_epsilon": 8.0, "dp_delta": 1.0}, "dp-delta must lie in"),
        ({"dp_epsilon": -1.0}, "dp-epsilon must be >= 0"),
        ({"dp_epsilon": 8.0, "generator": "symvae"}, "generator 'symvae' cannot train with"),
        ({"dp_epsilon": 8.0, "generator": "flow", "hjb_weight": 0.1}, "hjb-weight must be 0"),
        ({"dp_epsilon": 8.0, "share_real": "true"}, "share-real sends real images"),
    ],
)
def test_a_private_run_refuses_what_it_cannot_cover(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run = RunSettings(**({"strategy": "synthetic"} | settings))
        private_params(run, run.generator, {"epoch_size": 3000}, num_labelled=480)


def test_the_app_derives_the_noise_that_spends_the_budget_over_the_run() -> None:
    run = RunSettings(strategy="synthetic", dp_epsilon=8.0, num_server_rounds=10)
    params = private_params(run, "cvae", {"epoch_size": 1000}, num_labelled=500)
    dp = params["dp"]
    assert params["latent_prior"] == "standard"  # the class prior is fitted without noise
    ledger = PrivacyLedger()
    ledger.spend(LABEL_COUNT_NOISE, 1.0, 1)
    steps = 10 * run.generator_epochs * -(-1000 // run.generator_batch_size)
    ledger.spend(dp.noise_multiplier, run.generator_batch_size / 500, steps)
    assert 7.8 < ledger.epsilon(DELTA) <= 8.0
    fixed = RunSettings(strategy="synthetic", dp_noise_multiplier=2.0)
    dp = private_params(fixed, "flow", {"epoch_size": 1000}, num_labelled=500)["dp"]
    assert dp.noise_multiplier == 2.0


def test_fedavg_with_dp_runs_inside_flowers_central_dp_with_equal_weights() -> None:
    from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping

    from flower_synth.app.server_app import build_baseline_strategy

    run = RunSettings(
        strategy="fedavg", dp_epsilon=8.0, num_server_rounds=30, min_available_clients=10
    )
    strategy = build_baseline_strategy(run)
    assert isinstance(strategy, DifferentialPrivacyServerSideFixedClipping)
    assert strategy.num_sampled_clients == 10 and strategy.clipping_norm == 1.0
    assert strategy.strategy.weighted_by_key == "unit-weight"
    ledger = PrivacyLedger()
    ledger.spend(strategy.noise_multiplier, 1.0, 30)  # every client in every round
    assert 7.8 < ledger.epsilon(DELTA) <= 8.0
    assert not isinstance(build_baseline_strategy(RunSettings()), type(strategy))


def small_cvae(dp: DPSGD | None, batch_size: int) -> ConditionalVAE:
    return ConditionalVAE(
        10,
        (1, 8, 8),
        latent_dim=4,
        hidden_dim=32,
        epochs=2,
        batch_size=batch_size,
        latent_prior="standard",
        dp=dp,
    )


def images(n: int = 96) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((n, 1, 8, 8)), np.arange(n) % 10


@pytest.mark.parametrize(
    "make",
    [
        lambda dp: small_cvae(dp, batch_size=16),
        lambda dp: FlowMatching(10, (1, 8, 8), channels=4, epochs=1, batch_size=16, dp=dp),
    ],
    ids=["cvae", "flow"],
)
def test_a_private_generator_records_every_step_and_keeps_them_in_its_state(make) -> None:
    X, y = images()
    model = make(DPSGD(1.5, 1.0))
    model.fit(X, y)
    epochs = model.epochs
    assert model.privacy_.to_array().tolist() == [[1.5, 16 / 96, epochs * 6]]
    first = model.privacy_.epsilon(DELTA)
    model.fit(X, y)
    assert model.privacy_.to_array().tolist() == [[1.5, 16 / 96, 2 * epochs * 6]]
    assert model.privacy_.epsilon(DELTA) > first > 0
    restored = make(DPSGD(1.5, 1.0))
    restored.set_state(model.get_state())
    assert restored.privacy_.epsilon(DELTA) == model.privacy_.epsilon(DELTA)
    assert restored.sample(5, labels=np.arange(5))[0].shape == (5, 1, 8, 8)
    again = make(DPSGD(1.5, 1.0))
    again.fit(X, y)
    again.fit(X, y)  # the same seed draws the same batches and the same noise
    for key, value in model.get_state().items():
        np.testing.assert_array_equal(value, again.get_state()[key], err_msg=key)


def test_a_cvae_refuses_the_class_latent_prior_with_dp() -> None:
    model = ConditionalVAE(10, (1, 8, 8), latent_prior="class", dp=DPSGD(1.0))
    with pytest.raises(ValueError, match="latent_prior='standard' with dp"):
        model.fit(*images())


def private_learner(digits_settings, state: RecordDict, **options) -> SyntheticLearner:  # noqa: ANN001
    data = load_client_data(digits_settings.partition_scheme(3), 0)
    generator = small_cvae(DPSGD(1.2, 1.0), batch_size=32)
    return SyntheticLearner(
        generator,
        classifier(),
        data,
        state,
        **({"partition_id": 0, "soft_labels": False, "private_delta": DELTA} | options),
    )


def classifier() -> torch.nn.Module:
    return build_model((1, 8, 8), 10)


def test_a_private_client_sends_no_soft_labels_and_labels_from_noised_counts(
    digits_settings,
) -> None:
    state = RecordDict()
    spent = []
    for server_round in (1, 2):
        learner = private_learner(digits_settings, state)
        fitted = learner.fit([], {"server_round": server_round, "num_samples": 200})
        sent = decode_samples(fitted.arrays)
        assert sent.probabilities is None and len(sent) == 200
        spent.append(fitted.metrics["dp_epsilon"])
    assert 0 < spent[0] < spent[1]
    released = state[RELEASED_COUNTS_STATE]  # released once, reused in round 2
    assert released is not None
    real = np.bincount(learner.data.train.labels, minlength=10)
    labels = np.bincount(sent.labels, minlength=10) / 200
    assert np.abs(labels - real / real.sum()).max() < 0.15  # noise 20 on counts of ~50


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"soft_labels": True}, "soft labels come from the classifier"),
        ({"sample_labels": "prior"}, "use 'real'"),
        ({"share_real": True}, "share_real sends real examples"),
    ],
)
def test_a_private_client_refuses_what_would_leak(digits_settings, options, message) -> None:
    with pytest.raises(ValueError, match=message):
        private_learner(digits_settings, RecordDict(), **options)


def test_a_private_client_needs_a_private_generator(digits_settings) -> None:
    data = load_client_data(digits_settings.partition_scheme(3), 0)
    plain = ConditionalVAE(10, (1, 8, 8), latent_prior="standard")
    with pytest.raises(ValueError, match="dp=DPSGD"):
        SyntheticLearner(
            plain,
            classifier(),
            data,
            RecordDict(),
            partition_id=0,
            soft_labels=False,
            private_delta=DELTA,
        )


@pytest.mark.slow
def test_a_private_run_records_the_privacy_every_client_spends(tmp_path: Path) -> None:
    """`flwr run`, 3 digits clients, epsilon 4 over 3 rounds: every round records each
    client's epsilon, growing, never above the budget, and most of the budget spent
    by the last round (the noise is sized for a client that trains every round at the
    sampling rate of its real images alone; the received samples lower the rate)."""
    from test_end_to_end import simulate

    rounds, budget = 3, 4.0
    run_config = {"strategy": "synthetic", "num-server-rounds": rounds, "dp-epsilon": budget}
    data = simulate(tmp_path, run_config, clients=3)
    spent = [r["dp_epsilon_by_client"] for r in data["rounds"]]
    assert all(set(by_client) == {"0", "1", "2"} for by_client in spent)
    for client in ("0", "1", "2"):
        series = [by_client[client] for by_client in spent]
        assert 0 < series[0] < series[1] < series[2] <= budget
        assert series[2] > 0.6 * budget
    assert data["rounds"][-1]["dp_epsilon_max"] == max(spent[-1].values())
    assert all(r["fit_failures"] == 0 for r in data["rounds"])


def test_private_class_gaussians_fit_the_sphere_and_spend_three_releases() -> None:
    from flower_synth.prototypes.private_gaussians import RELEASES, private_class_gaussians
    from flower_synth.prototypes.wire import decode_mixtures, encode_mixtures

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16))
    labels = np.repeat([0, 1, 2], [2000, 2000, 5])  # class 2 too small to show through noise
    features = centres[labels] + 0.3 * rng.normal(size=(len(labels), 16))
    features *= 4.0 / np.linalg.norm(features, axis=1, keepdims=True)  # on the sphere
    ledger = PrivacyLedger()
    released = private_class_gaussians(features, labels, 3, 5.0, 4.0, ledger, rng)
    assert ledger.to_array().tolist() == [[5.0, 1.0, RELEASES]]
    assert released.labels.tolist() == [0, 1]
    assert released.class_counts[2] == 0 and abs(released.class_counts[0] - 2000) < 30
    for index, label in enumerate(released.labels):
        true_mean = features[labels == label].mean(axis=0)
        assert np.abs(released.means[index] - true_mean).max() < 0.1
    decoded = decode_mixtures(encode_mixtures(released), 3, 16, feature_radius=4.0)
    assert decoded.labels.tolist() == [0, 1]  # what the server accepts of sphere features


def test_a_private_gmm_client_uploads_released_gaussians_and_reports_its_spending(
    digits_settings,
) -> None:
    from flower_synth.models import build_dual_head_model
    from flower_synth.prototypes.gmm_learner import GMMPrototypeLearner
    from flower_synth.prototypes.wire import decode_mixtures

    data = load_client_data(digits_settings.partition_scheme(3), 0)
    state, spent = RecordDict(), []
    for server_round in (1, 2):
        model = build_dual_head_model((1, 8, 8), 10, 0, normalize_features=True)
        learner = GMMPrototypeLearner(model, data, state, partition_id=0, private=(4.0, DELTA))
        fitted = learner.fit([], {"server_round": server_round})
        radius = float(np.sqrt(model.feature_dim))
        summary = decode_mixtures(fitted.arrays, 10, model.feature_dim, feature_radius=radius)
        assert np.all(np.bincount(summary.labels) <= 1)  # one Gaussian a class
        assert summary.class_counts.sum() <= fitted.num_examples
        spent.append(fitted.metrics["dp_epsilon"])
    assert 0 < spent[0] < spent[1]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"strategy": "gmm-prototype", "gmm_covariance": "full"}, "set gmm-covariance to diag"),
        ({"strategy": "fedproto"}, "strategy 'fedproto' has no DP"),
    ],
)
def test_private_prototypes_refuse_what_they_cannot_release(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RunSettings(**(settings | {"dp_epsilon": 8.0}))


@pytest.mark.slow
def test_a_private_gmm_prototype_run_is_accepted_and_accounted(tmp_path: Path) -> None:
    """`flwr run`, 3 digits clients of GMM prototypes at epsilon 8 over 3 rounds: the
    server accepts every released summary (they fit its feature sphere) and records
    the clients' spending growing to at most the budget."""
    from test_end_to_end import simulate

    run_config = {"strategy": "gmm-prototype", "num-server-rounds": 3, "dp-epsilon": 8.0}
    rounds = simulate(tmp_path, run_config, clients=3)["rounds"]
    assert all(r["rejected_payloads"] == r["fit_failures"] == 0 for r in rounds)
    spent = [r["dp_epsilon_max"] for r in rounds]
    assert 0 < spent[0] < spent[1] < spent[2] <= 8.0 and spent[2] > 7.0
    assert rounds[-1]["global_components"] > 0


@pytest.mark.slow
def test_fedavg_inside_flowers_central_dp_runs_with_equal_weights(tmp_path: Path) -> None:
    """`flwr run`, FedAvg at epsilon 8 over 2 rounds inside Flower's wrapper: every
    training and evaluation reply carries the weight its equal-weight mean needs."""
    from test_end_to_end import simulate

    run_config = {"strategy": "fedavg", "num-server-rounds": 2, "dp-epsilon": 8.0}
    rounds = simulate(tmp_path, run_config, clients=3)["rounds"]
    assert [r["round"] for r in rounds] == [1, 2]
    assert all(r["fit_failures"] == r["evaluate_failures"] == 0 for r in rounds)
    assert all(r["global_accuracy"] is not None for r in rounds)
