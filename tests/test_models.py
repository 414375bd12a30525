"""Model sizes and the feature-extractor / head split."""

from __future__ import annotations

import pytest
import torch

from flower_synth.models import (
    DigitsMLP,
    FedAvgCNN,
    SimpleCNN,
    build_dual_head_model,
    build_model,
    count_parameters,
)


def test_simple_cnn_matches_niid_bench_size() -> None:
    model = SimpleCNN(in_channels=1, image_size=28, num_classes=10)
    assert count_parameters(model) == 44_426
    assert 4 * count_parameters(model) == 177_704


def test_digits_mlp_size() -> None:
    assert count_parameters(DigitsMLP(64, 10)) == 17_226


@pytest.mark.parametrize(
    ("shape", "model_type", "feature_dim"),
    [((1, 28, 28), SimpleCNN, 84), ((3, 32, 32), SimpleCNN, 84), ((1, 8, 8), DigitsMLP, 64)],
)
def test_build_model_splits_features_and_head(shape, model_type, feature_dim) -> None:
    model = build_model(shape, 10)
    assert isinstance(model, model_type)
    x = torch.zeros(5, *shape)
    features = model.features(x)
    assert features.shape == (5, feature_dim) == (5, model.feature_dim)
    assert torch.equal(model.head(features), model(x))
    assert model(x).shape == (5, 10)


def test_width_scales_the_classifier_and_keeps_its_feature_dimension() -> None:
    sizes = [count_parameters(build_model((1, 28, 28), 10, width=w)) for w in (0.25, 0.5, 1.0)]
    assert sizes[0] < sizes[1] < sizes[2] == 44_426
    small = build_model((1, 28, 28), 10, width=0.25)
    assert small.features(torch.zeros(2, 1, 28, 28)).shape == (2, 84)
    assert count_parameters(build_model((1, 8, 8), 10, width=0.5)) < 17_226
    with pytest.raises(ValueError, match="width must be > 0"):
        build_model((1, 28, 28), 10, width=0.0)


def test_fedavg_cnn_has_the_size_of_mcmahan_et_al() -> None:
    model = build_model((1, 28, 28), 10, architecture="fedavg-cnn")
    assert isinstance(model, FedAvgCNN)
    assert count_parameters(model) == 1_663_370  # about 1.66 M, 6.65 MB in float32
    x = torch.zeros(3, 1, 28, 28)
    assert model.features(x).shape == (3, 512) and model(x).shape == (3, 10)
    signed = build_dual_head_model((1, 28, 28), 10, architecture="fedavg-cnn")
    assert signed.feature_dim == 512
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        build_model((1, 28, 28), 10, architecture="resnet")
