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
from flower_synth.learning.classifier_training import ClassifierTraining
from flower_synth.learning.training import (
    PseudoFeatures,
    extract_features,
    get_weights,
    make_loader,
    to_unit_range,
    train,
)
from flower_synth.models import (
    DualHeadClassifier,
    ScaledNormalize,
    build_dual_head_model,
    build_model,
    dot_regression_loss,
    simplex_etf,
)
from flower_synth.prototypes import (
    ClassMixtures,
    ClassPrototypes,
    decode_mixtures,
    decode_prototypes,
    encode_mixtures,
    encode_prototypes,
    fit_class_mixtures,
)
from flower_synth.prototypes.pull import MixturePull

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


def test_normalized_features_lie_on_one_sphere_and_keep_their_directions() -> None:
    torch.manual_seed(0)
    plain = build_dual_head_model(DIGITS_SHAPE, 10, etf_seed=1, normalize_features=False)
    torch.manual_seed(0)
    normed = build_dual_head_model(DIGITS_SHAPE, 10, etf_seed=1, normalize_features=True)
    x = torch.rand(16, *DIGITS_SHAPE)
    raw, h = plain.features(x), normed.features(x)
    radius = torch.full((16,), float(np.sqrt(normed.feature_dim)))
    torch.testing.assert_close(h.norm(dim=1), radius)  # every client's features: one norm
    torch.testing.assert_close(
        torch.nn.functional.normalize(h), torch.nn.functional.normalize(raw)
    )  # the same extractor, the same directions: Dot-Regression sees what it saw
    torch.testing.assert_close(normed(x), normed.head(h))
    with pytest.raises(ValueError, match="scale"):
        ScaledNormalize(0.0)


@pytest.fixture
def client_settings(digits_settings: RunSettings) -> RunSettings:
    return dataclasses.replace(digits_settings, dirichlet_alpha=0.3, local_epochs=2)


ONE_EPOCH = ClassifierTraining(local_epochs=1)


def gmm_client(
    settings: RunSettings,
    state: RecordDict,
    partition_id: int = 0,
    training: ClassifierTraining = ONE_EPOCH,
    **options,
):
    torch.manual_seed(0)
    model = build_dual_head_model(DIGITS_SHAPE, 10, etf_seed=0)
    data = load_client_data(settings.partition_scheme(4), partition_id)
    return GMMPrototypeClient(
        model, data, state, partition_id=partition_id, training=training, **options
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
    training = ClassifierTraining(local_epochs=10, learning_rate=0.05)
    client = gmm_client(client_settings, RecordDict(), training=training)
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
        training=ClassifierTraining(local_epochs=3),
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


def test_gmm_client_with_pseudo_weight_zero_trains_exactly_as_without_top_up(
    client_settings: RunSettings,
) -> None:
    received = global_mixtures_for_all_classes(client_settings)
    alone = gmm_client(client_settings, RecordDict(), pull_weight=0.0)
    alone.fit([], {"server_round": 2})
    weightless = gmm_client(client_settings, RecordDict(), pseudo_weight=0.0, pull_weight=0.0)
    _, _, metrics = weightless.fit(received, {"server_round": 2})
    assert "pseudo_features" not in metrics
    for a, b in zip(
        get_weights(alone.learner.model), get_weights(weightless.learner.model), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    topped_up = gmm_client(client_settings, RecordDict(), pseudo_weight=1.0, pull_weight=0.0)
    assert topped_up.fit(received, {"server_round": 2})[2]["pseudo_features"] > 0
    assert not np.array_equal(
        get_weights(alone.learner.model)[-1], get_weights(topped_up.learner.model)[-1]
    )


def test_pseudo_features_do_not_weaken_the_backbone_gradient(client_settings: RunSettings) -> None:
    """The real examples' loss keeps its size however many pseudo-features join it: the
    backbone (which pseudo-features never reach) takes the same step with 10 or 10,000
    (one batch, one step: later steps differ through the head they share)."""
    data = load_client_data(client_settings.partition_scheme(4), 0)
    images, labels = to_unit_range(data.train)[:64], data.train.labels[:64]
    loader = make_loader(images, labels, 64, True, seed=1)
    rng = np.random.default_rng(0)

    def backbone_after(num_pseudo: int) -> list[np.ndarray]:
        torch.manual_seed(0)
        model = build_dual_head_model(DIGITS_SHAPE, 10, etf_seed=0)
        pseudo = PseudoFeatures(
            rng.normal(size=(num_pseudo, 64)).astype(np.float32), rng.integers(0, 10, num_pseudo)
        )
        train(model, loader, 1, 0.05, pseudo=pseudo, pseudo_weight=1.0, seed=1)
        return [p.detach().numpy().copy() for p in model.features.parameters()]

    for few, many in zip(backbone_after(10), backbone_after(10_000), strict=True):
        np.testing.assert_allclose(few, many, rtol=1e-5, atol=1e-6)


def test_gmm_client_head_prior_is_restored_at_evaluation(client_settings: RunSettings) -> None:
    received = global_mixtures_for_all_classes(client_settings)
    client = gmm_client(client_settings, RecordDict(), pseudo_weight=0.5)
    terms = client.learner.training_terms(received, seed=1)
    real = client.learner.real_prior
    pseudo = np.bincount(terms["pseudo"].labels, minlength=10) / len(terms["pseudo"])
    expected = (real + 0.5 * pseudo) / 1.5
    np.testing.assert_allclose(client.learner.trained_prior(terms), expected)
    assert client.learner.trained_prior({"pseudo_weight": 0.5}) is None  # no pseudo: real mix
    client.learner.global_test = client.learner.data.test
    client.fit(received, {"server_round": 2})
    _, _, metrics = client.evaluate([], {})
    assert {"accuracy_uncorrected", "accuracy_restored", "global_accuracy_uncorrected"} <= set(
        metrics
    )
    assert metrics["accuracy"] == metrics["accuracy_uncorrected"]  # the head as it learnt
    client.learner.restore_prior = True
    assert client.evaluate([], {})[2]["accuracy"] == metrics["accuracy_restored"]


def test_the_pull_draws_class_features_to_their_fused_component(
    client_settings: RunSettings,
) -> None:
    torch.manual_seed(0)
    model = build_dual_head_model(DIGITS_SHAPE, 10, etf_seed=0)
    data = load_client_data(
        dataclasses.replace(client_settings, partitioner="iid").partition_scheme(4), 0
    )
    loader = make_loader(to_unit_range(data.train), data.train.labels, 256, False)
    images, labels, _ = next(iter(loader))
    target = ClassMixtures(
        np.repeat(np.arange(10), 2),
        np.full(20, 0.5),
        np.repeat(np.eye(10, 64) * 3.0, 2, axis=0) + np.tile([[0.0], [0.1]], (10, 64)),
        np.ones((20, 64)),
        np.full(10, 100),
    )
    pull = MixturePull(target, 10)

    def distance() -> float:
        with torch.no_grad():
            return float(pull(model.features(images), labels).mean())

    before = distance()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    for _ in range(30):
        optimizer.zero_grad()
        pull(model.features(images), labels).mean().backward()
        optimizer.step()
    assert distance() < 0.5 * before
    # a class without a fused mixture costs nothing
    partial = MixturePull(dataclasses.replace(target, labels=np.repeat([0] * 9 + [1], 2)), 10)
    assert float(partial(model.features(images[:1]), torch.tensor([5]))) == 0.0
