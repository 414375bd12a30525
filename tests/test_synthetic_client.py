"""SyntheticSampleClient and its SyntheticLearner: mixture weighting, soft labels,
label agreement, prior correction, state across rebuilt clients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import RecordDict
from torch import nn

from flower_synth.app.config import RunSettings
from flower_synth.clients import SyntheticSampleClient
from flower_synth.data import load_client_data, load_global_test
from flower_synth.generative import ClassConditionalGaussian, ConditionalVAE
from flower_synth.learning.classifier_training import ClassifierTraining
from flower_synth.learning.state import load_arrays
from flower_synth.learning.training import to_unit_range
from flower_synth.models import build_model
from flower_synth.synthetic.learner import (
    CLASSIFIER_STATE,
    GENERATOR_STATE,
    OWN_CLASS_SHARE,
    PRIOR_STATE,
    SyntheticLearner,
    mixture_weights,
)
from flower_synth.wire.deflate import inflate, is_deflated
from flower_synth.wire.payload import decode_samples, encode_samples, validate_payload

# every real example drawn about once per epoch: one round trains the classifier enough
# for its soft labels to be checked against the generated classes
TRAINING = ClassifierTraining(local_epochs=5, learning_rate=0.05, epoch_scale=1.0)


def make_client(
    settings: RunSettings,
    state: RecordDict,
    with_model: bool,
    seed: int = 0,
    sample_labels: str = "real",
    **options,
) -> SyntheticSampleClient:
    data = load_client_data(settings.partition_scheme(3), 0)
    torch.manual_seed(seed)
    model = build_model(data.train.image_shape, 10) if with_model else None
    return SyntheticSampleClient(
        ClassConditionalGaussian(10),
        model,
        data,
        state,
        partition_id=0,
        training=TRAINING,
        sample_labels=sample_labels,
        samples_per_round=200,
        global_test=load_global_test(settings.data_source),
        **options,
    )


def test_mixture_weights_give_real_data_a_ii_and_received_the_rest() -> None:
    weights = mixture_weights(num_real=4, num_received=6, self_trust=0.3)
    assert weights[:4] == pytest.approx([0.075] * 4)
    assert weights[4:] == pytest.approx([0.7 / 6] * 6)
    assert weights.sum() == pytest.approx(1.0)
    assert mixture_weights(5, 0, self_trust=0.3) == pytest.approx([0.2] * 5)  # nothing received
    # 2 labelled + 8 pseudo-labelled real examples: each half of the real data's 0.3
    weights = mixture_weights(num_real=10, num_received=6, self_trust=0.3, num_pseudo=8)
    assert weights[:2] == pytest.approx([0.075] * 2)
    assert weights[2:10] == pytest.approx([0.15 / 8] * 8)
    assert weights.sum() == pytest.approx(1.0)


def test_fit_returns_samples_with_soft_labels_and_state_survives_a_rebuild(digits_settings) -> None:
    state = RecordDict()
    client = make_client(digits_settings, state, with_model=True)
    arrays, num_examples, metrics = client.fit([], {"server_round": 1, "num_samples": 150})
    assert is_deflated(arrays)  # the default wire form
    inflated = inflate(arrays, max_bytes=10**6)
    assert [a.dtype for a in inflated] == [np.uint8, np.int32, np.float16]
    assert set(np.unique(inflated[0]).tolist()) <= set(range(0, 256, 17))  # 16 levels
    batch = validate_payload(arrays, (1, 8, 8), 10, max_samples=150)  # a valid payload
    assert len(batch) == 150 and num_examples == len(client.learner.data.train)
    assert metrics["partition_id"] == 0 and metrics["received_samples"] == 0
    # soft labels are the classifier's: they mostly agree with the generated labels
    assert metrics["label_agreement"] > 0.8
    agreement = np.mean(batch.probabilities.argmax(axis=1) == batch.labels)
    assert agreement == pytest.approx(metrics["label_agreement"], abs=0.02)
    assert GENERATOR_STATE in state and CLASSIFIER_STATE in state

    rebuilt = make_client(digits_settings, state, with_model=True, seed=99)  # other init
    first = client.learner.generator.sample(40, random_state=3)
    second = rebuilt.learner.generator.sample(40, random_state=3)
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    for a, b in zip(
        client.learner.classifier.parameters(), rebuilt.learner.classifier.parameters(), strict=True
    ):
        assert torch.equal(a, b)
    _, n_test, evaluation = rebuilt.evaluate([], {})
    assert n_test == len(rebuilt.learner.data.test)
    assert evaluation["accuracy"] > 0.6
    assert {"global_accuracy", "global_accuracy_uncorrected"} <= evaluation.keys()
    # the global accuracy splits into the classes the client holds and the others
    test_labels = load_global_test(digits_settings.data_source).labels
    own = (rebuilt.learner.real_prior >= OWN_CLASS_SHARE)[test_labels].mean()
    parts = own * evaluation["global_accuracy_own_classes"]
    if own < 1:
        parts += (1 - own) * evaluation["global_accuracy_other_classes"]
    assert parts == pytest.approx(evaluation["global_accuracy"])


def test_generated_labels_follow_the_real_class_counts(digits_settings) -> None:
    client = make_client(digits_settings, RecordDict(), with_model=False)
    counts = client.learner.data.train.class_counts()
    arrays, _, _ = client.fit([], {"server_round": 1, "num_samples": 1000})
    generated = np.bincount(decode_samples(arrays).labels, minlength=10)
    assert np.abs(generated - 1000 * counts / counts.sum()).max() <= 1  # exact, up to rounding


def test_a_label_shifting_client_sends_every_label_and_soft_label_shifted(digits_settings) -> None:
    config = {"server_round": 1, "num_samples": 300}
    honest, _, _ = make_client(digits_settings, RecordDict(), with_model=True).fit([], config)
    rogue = make_client(digits_settings, RecordDict(), with_model=True, label_shift=3)
    shifted, _, _ = rogue.fit([], config)
    honest, shifted = decode_samples(honest), decode_samples(shifted)
    assert np.array_equal(shifted.labels, (honest.labels + 3) % 10)
    assert np.allclose(shifted.probabilities, np.roll(honest.probabilities, 3, axis=1), atol=1e-3)
    assert np.array_equal(shifted.samples, honest.samples)


def test_received_samples_get_weight_one_minus_self_trust(digits_settings) -> None:
    """Without a torch classifier the generator is the classifier: it learns the
    round's mixture whatever generator_trust says."""
    client = make_client(digits_settings, RecordDict(), with_model=False, sample_labels="prior")
    train = client.learner.data.train
    real_frequency = np.bincount(train.labels, minlength=10) / len(train)
    received = encode_samples(np.full((300, 1, 8, 8), 0.25), np.full(300, 9), "uint8")
    arrays, _, metrics = client.fit(
        received, {"server_round": 2, "self_trust": 0.7, "num_samples": 400}
    )
    assert metrics["received_samples"] == 300
    prior = client.learner.generator.class_prior_
    assert prior[9] == pytest.approx(0.7 * real_frequency[9] + 0.3, abs=1e-9)
    assert prior[0] == pytest.approx(0.7 * real_frequency[0], abs=1e-9)
    # sample_labels="prior": the game's label mix, received class 9 included
    assert np.mean(decode_samples(arrays).labels == 9) == pytest.approx(prior[9], abs=0.08)


@pytest.mark.parametrize(
    ("options", "generator_trust"),
    [({}, 1.0), ({"generator_trust": 0.9}, 0.9), ({"generator_trust": None}, 0.5)],
    ids=["default-own-data-only", "0.9", "none-round-self-trust"],
)
def test_the_generator_weighs_received_samples_by_its_own_trust(
    digits_settings, options: dict, generator_trust: float
) -> None:
    """generator_trust sets the generator's mixture alone: by default (1) it learns the
    client's data only, while the classifier's label mix still takes the received class
    in; None gives the generator the round's self-trust (0.5 here) as well."""
    client = make_client(digits_settings, RecordDict(), with_model=True, **options)
    train = client.learner.data.train
    real_frequency = np.bincount(train.labels, minlength=10) / len(train)
    received = encode_samples(np.full((300, 1, 8, 8), 0.25), np.full(300, 9), "uint8")
    client.fit(received, {"server_round": 2, "self_trust": 0.5, "num_samples": 100})
    prior = client.learner.generator.class_prior_
    expected = generator_trust * real_frequency[9] + (1 - generator_trust)
    assert prior[9] == pytest.approx(expected, abs=1e-9)
    trained = load_arrays(client.learner.state, PRIOR_STATE)["trained"]  # the classifier's
    assert trained[9] == pytest.approx(0.5 * real_frequency[9] + 0.5, abs=1e-6)  # a_ii 0.5


def test_a_personal_model_is_scored_while_the_classifier_labels_what_the_client_sends(
    digits_settings,
) -> None:
    """personal_self_trust: a second network learns the round's mixture with that a_ii
    and is what evaluate scores; the classifier, at the round's a_ii, labels the
    samples, so the client sends what it would send without the personal model."""
    received = encode_samples(np.full((300, 1, 8, 8), 0.25), np.full(300, 9), "uint8")
    config = {"server_round": 2, "self_trust": 0.5, "num_samples": 100}
    state = RecordDict()
    client = make_client(digits_settings, state, with_model=True, personal_self_trust=0.2)
    alone = make_client(digits_settings, RecordDict(), with_model=True)
    sent, _, metrics = client.fit(received, config)
    sent_alone, _, metrics_alone = alone.fit(received, config)
    assert len(sent) == len(sent_alone)
    assert all(np.array_equal(a, b) for a, b in zip(sent, sent_alone, strict=True))
    assert "personal_train_loss" in metrics and "personal_train_loss" not in metrics_alone
    train = client.learner.data.train
    real_frequency = np.bincount(train.labels, minlength=10) / len(train)
    priors = load_arrays(state, PRIOR_STATE)
    assert priors["personal"][9] == pytest.approx(0.2 * real_frequency[9] + 0.8, abs=1e-6)
    assert priors["trained"][9] == pytest.approx(0.5 * real_frequency[9] + 0.5, abs=1e-6)
    # the personal model learnt more of the received class: on the real test images it
    # calls class 9 more often than the classifier does
    learner = client.learner
    images = to_unit_range(learner.data.test)
    personal_nines = learner.probabilities(images, learner.personal)[:, 9].mean()
    assert personal_nines > learner.probabilities(images)[:, 9].mean() + 0.05
    _, n_test, scored = client.evaluate([], {})
    _, _, scored_alone = alone.evaluate([], {})
    assert n_test > 0 and scored["global_accuracy"] != scored_alone["global_accuracy"]
    rebuilt = make_client(digits_settings, state, with_model=True, personal_self_trust=0.2)
    assert rebuilt.evaluate([], {})[2] == scored  # the personal model kept in the state


def test_hard_labels_only_when_soft_labels_are_off(digits_settings) -> None:
    client = make_client(digits_settings, RecordDict(), with_model=False, soft_labels=False)
    arrays, _, _ = client.fit([], {"server_round": 1, "num_samples": 20})
    assert len(inflate(arrays, max_bytes=10**6)) == 2


def test_scoring_a_torch_classifier_leaves_the_generator_state_unread(
    digits_settings, monkeypatch
) -> None:
    state = RecordDict()
    make_client(digits_settings, state, with_model=True).fit([], {"server_round": 1})
    restored: list[int] = []
    original = ClassConditionalGaussian.set_state

    def counting(self, stored):
        restored.append(1)
        return original(self, stored)

    monkeypatch.setattr(ClassConditionalGaussian, "set_state", counting)
    rebuilt = make_client(digits_settings, state, with_model=True)
    _, n_test, metrics = rebuilt.evaluate([], {})
    assert n_test > 0 and metrics["accuracy"] > 0.6 and restored == []
    rebuilt.learner.generator.sample(5, random_state=0)  # first use restores it, once
    rebuilt.learner.generator.sample(5, random_state=1)
    assert restored == [1]


def test_a_classifier_epoch_draws_half_the_clients_images_and_a_small_client_all(
    digits_settings, monkeypatch
) -> None:
    import flower_synth.synthetic.learner as learner_module

    drawn: list[int] = []
    original = learner_module.train

    def counting(model, loader, *args, **kwargs):
        drawn.append(sum(len(batch[1]) for batch in loader))
        return original(model, loader, *args, **kwargs)

    monkeypatch.setattr(learner_module, "train", counting)
    data = load_client_data(digits_settings.partition_scheme(3), 0)
    assert data.num_images < 8 * 64  # small: the default floor of 8 batches keeps it whole
    for training in (ClassifierTraining(), ClassifierTraining(min_batches=0)):
        learner = SyntheticLearner(
            ClassConditionalGaussian(10),
            build_model(data.train.image_shape, 10),
            data,
            RecordDict(),
            partition_id=0,
            training=training,
        )
        learner.fit([], {"server_round": 1, "num_samples": 20})
    assert drawn == [data.num_images, round(0.5 * data.num_images)]
    defaults = ClassifierTraining()
    assert (defaults.epoch_scale, defaults.min_batches) == (0.5, 8)
    app = RunSettings().classifier_training()
    assert (app.epoch_scale, app.min_batches) == (0.5, 8)  # the app's defaults are the library's
    assert defaults.epoch_draws(4800) == 2400 and defaults.epoch_draws(900) == 512


def test_a_client_that_never_trained_reports_no_accuracy(digits_settings) -> None:
    client = make_client(digits_settings, RecordDict(), with_model=True)
    assert client.evaluate([], {}) == (0.0, 0, {"accuracy": 0.0})  # weight 0: left out


def test_global_evaluation_only_when_the_round_asks(digits_settings) -> None:
    client = make_client(digits_settings, RecordDict(), with_model=False)
    client.fit([], {"server_round": 1})
    _, _, metrics = client.evaluate([], {"global_eval": False})
    assert "accuracy" in metrics and "global_accuracy" not in metrics


def test_bayes_classifier_scores_the_global_test_set(digits_settings) -> None:
    client = make_client(digits_settings, RecordDict(), with_model=False)
    client.fit([], {"server_round": 1})
    _, _, metrics = client.evaluate([], {})
    assert metrics["accuracy"] > 0.6
    assert 0.1 < metrics["global_accuracy"] < metrics["accuracy"] + 0.3


def test_bayes_classifier_needs_a_generator_with_a_posterior(digits_settings) -> None:
    data = load_client_data(digits_settings.partition_scheme(3), 0)
    with pytest.raises(ValueError, match="does not have; give a torch classifier"):
        SyntheticLearner(ConditionalVAE(10, (1, 8, 8)), None, data, RecordDict(), partition_id=0)


def test_partition_id_is_required(digits_settings) -> None:
    data = load_client_data(digits_settings.partition_scheme(3), 0)
    with pytest.raises(TypeError, match="partition_id"):
        SyntheticLearner(ClassConditionalGaussian(10), None, data, RecordDict())


def test_any_torch_classifier_without_a_feature_split_trains(digits_settings) -> None:
    """A user's own model (no ``features``/``head``) is trained through ``forward``."""
    data = load_client_data(digits_settings.partition_scheme(3), 0)
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    client = SyntheticSampleClient(
        ClassConditionalGaussian(10), plain, data, RecordDict(), partition_id=0, training=TRAINING
    )
    client.fit([], {"server_round": 1, "num_samples": 50})
    _, _, metrics = client.evaluate([], {})
    assert metrics["accuracy"] > 0.6


def test_a_client_generates_samples_in_proportion_to_its_data_when_asked(digits_settings) -> None:
    client = make_client(digits_settings, RecordDict(), with_model=False)
    learner = client.learner
    real = len(learner.data.train)
    assert learner.samples_asked({"num_samples": 1000, "sample_ratio": 0.2}) == round(0.2 * real)
    assert learner.samples_asked({"num_samples": 10, "sample_ratio": 0.2}) == 10  # the cap
    assert learner.samples_asked({"num_samples": 70}) == 70  # no ratio: as asked
    arrays, _, metrics = client.fit(
        [], {"server_round": 1, "num_samples": 1000, "sample_ratio": 0.1}
    )
    assert metrics["generated_samples"] == len(decode_samples(arrays)) == round(0.1 * real)


def test_a_rolling_pool_regenerates_only_its_fresh_share(digits_settings) -> None:
    state = RecordDict()
    config = {"num_samples": 100}

    def fit(round_number: int):
        client = make_client(digits_settings, state, with_model=True, fresh_fraction=0.25)
        arrays, _, metrics = client.fit([], config | {"server_round": round_number})
        batch = decode_samples(arrays)
        return batch, metrics

    first, _ = fit(1)
    second, metrics = fit(2)
    assert len(first) == len(second) == metrics["generated_samples"] == 100
    # the first 75 samples of round 2 are the last 75 of round 1 (16 levels on the wire,
    # 256 in the pool: a pixel may round to the neighbouring level)
    assert np.abs(second.samples[:75] - first.samples[25:]).max() <= 1 / 15 + 1e-6
    assert np.mean(second.samples[:75] == first.samples[25:]) > 0.95
    np.testing.assert_array_equal(second.labels[:75], first.labels[25:])
    assert not np.array_equal(second.samples[75:], first.samples[:25])
    with pytest.raises(ValueError, match=r"fresh_fraction must lie in \(0, 1\], got 0"):
        make_client(digits_settings, RecordDict(), with_model=True, fresh_fraction=0)
