"""The dual-head model and the GMM-prototype and FedProto clients, on real digits data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from flwr.app import RecordDict

from flower_synth.app.config import RunSettings
from flower_synth.clients import FedProtoClient, GMMPrototypeClient
from flower_synth.data import load_client_data
from flower_synth.models import (
    DualHeadClassifier,
    build_dual_head_model,
    build_model,
    dot_regression_loss,
    simplex_etf,
)
from flower_synth.prototypes import (
    ClassPrototypes,
    decode_mixtures,
    decode_prototypes,
    encode_mixtures,
    encode_prototypes,
    fit_class_mixtures,
)
from flower_synth.training import extract_features, get_weights, to_unit_range

DIGITS_SHAPE = (1, 8, 8)


@pytest.mark.parametrize(("classes", "dim"), [(10, 84), (10, 10), (3, 64)])
def test_simplex_etf_is_unit_norm_and_equiangular(classes: int, dim: int) -> None:
    etf = simplex_etf(classes, dim, seed=3)
    assert etf.shape == (classes, dim)
    torch.testing.assert_close(etf.norm(dim=1), torch.ones(classes))
    cosines = etf @ etf.T
    off_diagonal = cosines[~torch.eye(classes, dtype=torch.bool)]
    torch.testing.assert_close(off_diagonal, torch.full_like(off_diagonal, -1 / (classes - 1)))


def test_simplex_etf_is_shared_through_its_seed() -> None:
    torch.testing.assert_close(simplex_etf(10, 64, seed=7), simplex_etf(10, 64, seed=7))
    assert not torch.allclose(simplex_etf(10, 64, seed=7), simplex_etf(10, 64, seed=8))
    with pytest.raises(ValueError, match="num_classes <= dim"):
        simplex_etf(10, 5)


def test_dot_regression_is_zero_only_on_the_class_vector() -> None:
    etf = simplex_etf(4, 6)
    labels = torch.tensor([0, 1, 2])
    aligned = 3.0 * etf[labels]  # scale does not matter: features are normalised
    torch.testing.assert_close(dot_regression_loss(aligned, labels, etf), torch.zeros(3))
    wrong = dot_regression_loss(etf[torch.tensor([1, 2, 0])], labels, etf)
    # cosine -1/3 to the target: 1/2 (-1/3 - 1)^2 = 8/9
    torch.testing.assert_close(wrong, torch.full((3,), 8 / 9))


def test_dual_head_prediction_modes() -> None:
    torch.manual_seed(0)
    model = build_dual_head_model(DIGITS_SHAPE, 10, etf_seed=1)
    x = torch.rand(16, *DIGITS_SHAPE)
    h = model.features(x)
    ce = model(x)
    torch.testing.assert_close(ce, model.head(h))
    model.prediction = "etf"
    torch.testing.assert_close(
        model(x).argmax(1), (torch.nn.functional.normalize(h) @ model.etf.T).argmax(1)
    )
    model.prediction = "both"
    expected = 0.5 * (torch.softmax(ce, 1) + torch.softmax(model.etf_logits(h), 1))
    torch.testing.assert_close(torch.softmax(model(x), 1), expected)
    assert "etf" in dict(model.named_buffers()) and "etf" not in dict(model.named_parameters())
    with pytest.raises(ValueError, match="prediction head"):
        DualHeadClassifier(torch.nn.Identity(), 64, 10, prediction="max")


@pytest.fixture
def client_settings(digits_settings: RunSettings) -> RunSettings:
    return dataclasses.replace(digits_settings, dirichlet_alpha=0.3, local_epochs=2)


def gmm_client(settings: RunSettings, state: RecordDict, partition_id: int = 0, **options):
    torch.manual_seed(0)
    model = build_dual_head_model(DIGITS_SHAPE, 10, etf_seed=0)
    data = load_client_data(settings.partition_scheme(4), partition_id)
    return GMMPrototypeClient(
        model, data, state, partition_id=partition_id, local_epochs=1, **options
    )


def global_mixtures_for_all_classes(settings: RunSettings) -> list[np.ndarray]:
    """A plausible global summary: mixtures fitted to one client's features of every class."""
    client = gmm_client(settings, RecordDict())
    rng = np.random.default_rng(0)
    features = rng.normal(size=(500, 64)) + np.repeat(np.arange(10), 50)[:, None]
    labels = np.repeat(np.arange(10), 50)
    return encode_mixtures(
        fit_class_mixtures(features, labels, 10, 2), client.learner.prototype_dtype
    )


@pytest.mark.parametrize("per_class", [0, 40])
def test_gmm_client_tops_classes_up_as_configured(
    client_settings: RunSettings, per_class: int
) -> None:
    client = gmm_client(client_settings, RecordDict(), pseudo_per_class=per_class)
    counts = np.bincount(client.learner.data.train.labels, minlength=10)
    target = per_class or counts.max()
    _, _, metrics = client.fit(
        global_mixtures_for_all_classes(client_settings), {"server_round": 2}
    )
    assert metrics["pseudo_features"] == np.maximum(target - counts, 0).sum()
    terms = client.learner.training_terms(global_mixtures_for_all_classes(client_settings), seed=1)
    drawn = np.bincount(terms["pseudo"].labels, minlength=10)
    np.testing.assert_array_equal(drawn, np.maximum(target - counts, 0))
    if per_class == 0:  # class-balanced: real + pseudo equal for every class
        assert len(set((counts + drawn).tolist())) == 1


def test_gmm_client_uploads_mixtures_of_its_classes_and_keeps_its_model(
    client_settings: RunSettings,
) -> None:
    state = RecordDict()
    client = gmm_client(client_settings, state, partition_id=1, min_samples=10)
    arrays, num_examples, metrics = client.fit([], {"server_round": 1})
    assert "pseudo_features" not in metrics and metrics["client_rounds"] == 1
    mixtures = decode_mixtures(arrays, 10, 64, max_components_per_class=3)
    counts = np.bincount(client.learner.data.train.labels, minlength=10)
    np.testing.assert_array_equal(mixtures.class_counts, np.where(counts >= 10, counts, 0))
    assert num_examples == counts.sum()
    assert all(a.dtype.name in ("int32", "float16") for a in arrays)
    trained = get_weights(client.learner.model)
    rebuilt = gmm_client(client_settings, state, partition_id=1)
    for before, after in zip(trained, get_weights(rebuilt.learner.model), strict=True):
        np.testing.assert_array_equal(before, after)
    assert rebuilt.fit([], {"server_round": 2})[2]["client_rounds"] == 2


def test_gmm_client_learns_its_local_classes(client_settings: RunSettings) -> None:
    client = gmm_client(client_settings, RecordDict(), learning_rate=0.05)
    client.learner.local_epochs = 10
    client.fit([], {"server_round": 1})
    _, _, metrics = client.evaluate([], {})
    assert metrics["accuracy"] > 0.8  # local test split, same label distribution


def fedproto_client(settings: RunSettings, proto_lambda: float) -> FedProtoClient:
    torch.manual_seed(0)
    data = load_client_data(settings.partition_scheme(4), 0)
    return FedProtoClient(
        build_model(DIGITS_SHAPE, 10),
        data,
        RecordDict(),
        partition_id=0,
        proto_lambda=proto_lambda,
        local_epochs=3,
    )


def test_fedproto_client_uploads_its_class_means(client_settings: RunSettings) -> None:
    client = fedproto_client(client_settings, 1.0)
    arrays, _, _ = client.fit([], {"server_round": 1})
    prototypes = decode_prototypes(arrays, 10, 64)
    features = extract_features(client.learner.model, to_unit_range(client.learner.data.train))
    labels = client.learner.data.train.labels
    np.testing.assert_array_equal(prototypes.labels, np.unique(labels))
    for label, mean in zip(prototypes.labels, prototypes.means, strict=True):
        np.testing.assert_allclose(
            mean, features[labels == label].mean(axis=0), rtol=1e-2, atol=1e-2
        )


def test_fedproto_regulariser_pulls_features_to_the_global_prototypes(
    client_settings: RunSettings,
) -> None:
    target = ClassPrototypes(
        np.arange(10), np.full((10, 64), 0.5) + np.arange(10)[:, None] * 0.1, np.ones(10, int)
    )
    received = encode_prototypes(target, "float32")

    def distance_after_training(proto_lambda: float) -> float:
        client = fedproto_client(client_settings, proto_lambda)
        client.fit(received, {"server_round": 2})
        features = extract_features(client.learner.model, to_unit_range(client.learner.data.train))
        return float(((features - target.means[client.learner.data.train.labels]) ** 2).mean())

    assert distance_after_training(10.0) < 0.5 * distance_after_training(0.0)
