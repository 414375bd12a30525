"""SyntheticSampleClient: mixture weighting, payloads, state across rebuilt clients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import RecordDict

from flower_synth.clients import SyntheticSampleClient
from flower_synth.clients.synthetic_client import CLASSIFIER_STATE, GENERATOR_STATE
from flower_synth.config import RunSettings
from flower_synth.data import load_client_data, load_global_test
from flower_synth.generative import ClassConditionalGaussian
from flower_synth.models import build_model
from flower_synth.payload import encode_samples


def make_client(settings: RunSettings, state: RecordDict, with_model: bool, seed: int = 0):
    data = load_client_data(settings, 0, 3)
    torch.manual_seed(seed)
    model = build_model(data.train.image_shape, 10) if with_model else None
    return SyntheticSampleClient(
        ClassConditionalGaussian(10),
        model,
        data,
        state,
        sample_dtype="uint8",
        samples_per_round=200,
        local_epochs=5,
        learning_rate=0.05,
    )


def test_fit_returns_uint8_samples_and_state_survives_a_rebuild(digits_settings) -> None:
    state = RecordDict()
    client = make_client(digits_settings, state, with_model=True)
    arrays, num_examples, metrics = client.fit([], {"server_round": 1, "num_samples": 150})
    samples, labels = arrays
    assert samples.dtype == np.uint8 and samples.shape == (150, 1, 8, 8)
    assert labels.dtype == np.int32 and set(labels) <= set(client.data.train.labels)
    assert num_examples == len(client.data.train)
    assert metrics["partition_id"] == 0 and metrics["received_samples"] == 0
    assert GENERATOR_STATE in state and CLASSIFIER_STATE in state

    rebuilt = make_client(digits_settings, state, with_model=True, seed=99)  # other init
    first = client.generator.sample(40, random_state=3)
    second = rebuilt.generator.sample(40, random_state=3)
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    for a, b in zip(client.classifier.parameters(), rebuilt.classifier.parameters(), strict=True):
        assert torch.equal(a, b)
    _, n_test, evaluation = rebuilt.evaluate([], {})
    assert n_test == len(rebuilt.data.test)
    assert evaluation["accuracy"] > 0.6


def test_received_samples_get_weight_one_minus_self_trust(digits_settings) -> None:
    client = make_client(digits_settings, RecordDict(), with_model=False)
    real_frequency = np.bincount(client.data.train.labels, minlength=10) / len(client.data.train)
    received = encode_samples(np.full((300, 1, 8, 8), 0.25), np.full(300, 9), "uint8")
    _, _, metrics = client.fit(received, {"server_round": 2, "self_trust": 0.7, "num_samples": 10})
    assert metrics["received_samples"] == 300
    prior = client.generator.class_prior_
    assert prior[9] == pytest.approx(0.7 * real_frequency[9] + 0.3, abs=1e-9)
    assert prior[0] == pytest.approx(0.7 * real_frequency[0], abs=1e-9)


def test_bayes_classifier_scores_the_global_test_set(digits_settings) -> None:
    client = make_client(digits_settings, RecordDict(), with_model=False)
    client.global_test = load_global_test(digits_settings)
    client.fit([], {"server_round": 1})
    _, _, metrics = client.evaluate([], {})
    assert metrics["accuracy"] > 0.6
    assert 0.1 < metrics["global_accuracy"] < metrics["accuracy"] + 0.3
