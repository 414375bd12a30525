"""The mean-embedding generator: it learns images of the requested classes from the
data's kernel mean embedding, and with ``release_noise`` it releases its private rows
once, spends one Gaussian mechanism whatever the number of fits, and refuses other
private data."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import RecordDict
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from flower_synth.app.client_app import private_params
from flower_synth.app.config import RunSettings
from flower_synth.data import load_client_data
from flower_synth.generative import MeanEmbedding
from flower_synth.models import build_model
from flower_synth.privacy import PrivacyLedger, noise_for_budget
from flower_synth.synthetic.learner import SyntheticLearner

DELTA = 1e-5
PARAMS = {
    "image_shape": (1, 8, 8),
    "num_features": 2000,
    "length_scale": 2.0,
    "steps": 150,
    "batch_size": 200,
    "learning_rate": 3e-3,
}


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    return (data.images / 16.0).astype(np.float32)[:, None], data.target


@pytest.fixture(scope="module")
def reader(digits) -> LogisticRegression:  # noqa: ANN001
    """A classifier of real digits, to read what the generators draw."""
    X, y = digits
    return LogisticRegression(max_iter=2000).fit(X.reshape(len(X), -1), y)


def agreement(model: MeanEmbedding, reader: LogisticRegression) -> float:
    """Share of 500 samples (50 a class) the reader assigns their requested class."""
    labels = np.repeat(np.arange(10), 50)
    samples, _ = model.sample(500, labels=labels, random_state=0)
    assert samples.shape == (500, 1, 8, 8) and 0 <= samples.min() and samples.max() <= 1
    return float(np.mean(reader.predict(samples.reshape(500, -1)) == labels))


def test_it_learns_images_of_the_requested_classes(digits, reader) -> None:
    X, y = digits
    model = MeanEmbedding(10, **PARAMS)
    untrained = MeanEmbedding(10, **(PARAMS | {"steps": 1})).fit(X, y)
    model.fit(X, y)
    first = model.last_fit_loss_
    model.fit(X, y)  # warm: the second fit continues the first
    assert model.last_fit_loss_ < first
    assert agreement(model, reader) > 0.8  # chance: 0.1
    assert agreement(untrained, reader) < 0.5


def test_a_private_release_costs_one_mechanism_whatever_the_fits(digits, reader) -> None:
    X, y = digits
    noise = noise_for_budget(8.0, DELTA, 1.0, 1)
    model = MeanEmbedding(10, **PARAMS, release_noise=noise)
    assert model.is_private
    model.fit(X, y)
    spent = model.privacy_.epsilon(DELTA)
    assert 7.8 < spent <= 8.0
    received = model.sample(300, random_state=1)  # public rows: enter exactly, spend nothing
    mixture = np.concatenate([X, received[0]]), np.concatenate([y, received[1]])
    public = np.arange(len(mixture[1])) >= len(X)
    weights = np.where(public, 0.3, 1.0)
    for _ in range(2):
        model.fit(*mixture, weights, public=public)
    assert model.privacy_.to_array().tolist() == [[noise, 1.0, 1.0]]
    assert agreement(model, reader) > 0.7  # at epsilon 8 on 1,797 digits
    restored = MeanEmbedding(10, **PARAMS, release_noise=noise)
    restored.set_state(model.get_state())
    np.testing.assert_array_equal(
        restored.sample(5, labels=np.arange(5), random_state=2)[0],
        model.sample(5, labels=np.arange(5), random_state=2)[0],
    )
    restored.fit(*mixture, weights, public=public)  # the kept release: nothing more spent
    assert restored.privacy_.epsilon(DELTA) == spent


def test_a_release_covers_one_dataset_of_equally_weighted_rows(digits) -> None:
    X, y = digits
    model = MeanEmbedding(10, **(PARAMS | {"steps": 2}), release_noise=1.0)
    model.fit(X[:500], y[:500])
    with pytest.raises(ValueError, match="private rows differ from those this model released"):
        model.fit(X[:400], y[:400])
    with pytest.raises(ValueError, match="weigh the private rows equally"):
        MeanEmbedding(10, **PARAMS, release_noise=1.0).fit(X[:4], y[:4], [1, 1, 2, 1])
    with pytest.raises(ValueError, match="public has shape"):
        model.fit(X[:500], y[:500], public=np.zeros(3, bool))
    with pytest.raises(ValueError, match="num_features must be even"):
        MeanEmbedding(10, **(PARAMS | {"num_features": 7})).fit(X, y)
    with pytest.raises(ValueError, match="release_noise must be"):
        MeanEmbedding(10, **PARAMS, release_noise=-1.0).fit(X, y)


def test_the_app_sizes_the_one_release_to_the_budget() -> None:
    run = RunSettings(strategy="synthetic", dp_epsilon=8.0, generator="mean-embedding")
    noise = private_params(run, "mean-embedding", {}, num_labelled=500)["release_noise"]
    ledger = PrivacyLedger()
    ledger.spend(noise, 1.0, 1)
    assert 7.8 < ledger.epsilon(DELTA) <= 8.0  # whatever the number of rounds
    with pytest.raises(ValueError, match="pseudo-labels change every round"):
        RunSettings(
            strategy="synthetic",
            dp_epsilon=8.0,
            generator="mean-embedding",
            labelled_fraction="0.5",
        )


def test_a_private_mean_embedding_client_spends_its_budget_in_its_first_round(
    digits_settings,
) -> None:
    data = load_client_data(digits_settings.partition_scheme(3), 0)
    state, spent, received = RecordDict(), [], []
    for server_round in (1, 2, 3):
        generator = MeanEmbedding(10, **(PARAMS | {"steps": 5}), release_noise=2.0)
        learner = SyntheticLearner(
            generator,
            build_model((1, 8, 8), 10),
            data,
            state,
            partition_id=0,
            soft_labels=False,
            private_delta=DELTA,
        )
        config = {"server_round": server_round, "num_samples": 100}
        fitted = learner.fit(received, config)
        received = fitted.arrays  # its own samples back: public rows in the next rounds
        spent.append(fitted.metrics["dp_epsilon"])
    assert spent[0] > 0 and spent[0] == spent[1] == spent[2]


def test_classes_too_small_to_show_through_the_noise_are_left_out(digits) -> None:
    X, _ = digits
    y = np.repeat([0, 1, 2], [1500, 292, 5])
    model = MeanEmbedding(10, **(PARAMS | {"steps": 2}), release_noise=0.5).fit(X, y)
    counts = model.released_counts_
    assert abs(counts[0] - 1500) < 5 and abs(counts[1] - 292) < 5  # noise 0.7 a count
    assert counts[2] == 0 and not counts[3:].any()  # 5 examples: under the noise


@pytest.mark.slow
def test_a_private_mean_embedding_run_spends_each_budget_once(tmp_path) -> None:  # noqa: ANN001
    """`flwr run`, 3 digits clients, epsilon 8: every client spends its budget in
    round 1 (one release) and nothing after it, and the server classifier learns from
    the private samples."""
    from test_end_to_end import simulate

    budget = 8.0
    run_config = {
        "strategy": "synthetic",
        "num-server-rounds": 3,
        "dp-epsilon": budget,
        "generator": "mean-embedding",
        "embedding-features": 200,
        "embedding-length-scale": 2.0,
    }
    data = simulate(tmp_path, run_config, clients=3)
    spent = [r["dp_epsilon_by_client"] for r in data["rounds"]]
    assert all(set(by_client) == {"0", "1", "2"} for by_client in spent)
    for client in ("0", "1", "2"):
        series = [by_client[client] for by_client in spent]
        assert 0.95 * budget < series[0] == series[1] == series[2] <= budget
    assert all(r["fit_failures"] == 0 for r in data["rounds"])
    assert data["rounds"][-1]["global_accuracy"] > 0.3  # chance: 0.1


def test_generator_bound_scores_a_private_client_sized_generator(tmp_path) -> None:  # noqa: ANN001
    from flower_synth.bench.generator_bound import generator_bound

    common = {"num_samples": 1000, "classifier_epochs": 10, "reference_cache": tmp_path}
    client = {"train_per_class": 100, "dp_epsilon": 8.0}
    (private,) = generator_bound(
        "digits",
        "mean-embedding",
        generator_epochs=2,
        num_features=1000,
        length_scale=2.0,
        batch_size=200,
        **common,
        **client,
    )
    (real,) = generator_bound("digits", "real", train_per_class=100, **common)
    # more samples asked than the client holds: its 1,000 images are scored as they are
    (same,) = generator_bound(
        "digits", "real", train_per_class=100, **common | {"num_samples": 5000}
    )
    assert same["cas_hard"] == real["cas_hard"]
    assert private["cas_hard"] > 0.7 and real["cas_hard"] > 0.8  # chance: 0.1
    with pytest.raises(ValueError, match="'symvae' cannot learn with differential privacy"):
        generator_bound("digits", "symvae", **common, **client)
