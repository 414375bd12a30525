"""Mistakes in building a learner fail when it is built, naming the fix, not as a failed
round deep in torch: a feature extractor of another width than the head takes, a missing
partition id, an accelerator this machine lacks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from flwr.app import RecordDict
from torch import nn

from flower_synth import (
    ClientData,
    FedAvgLearner,
    GMMPrototypeLearner,
    ImageDataset,
    SyntheticLearner,
)
from flower_synth.generative import ConditionalVAE
from flower_synth.models import DualHeadClassifier


def data() -> ClientData:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 1, 8, 8), dtype=np.uint8)
    labels = np.arange(20) % 10
    return ClientData(ImageDataset(images, labels, 10), ImageDataset(images, labels, 10))


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


def cvae_learner(**options: Any) -> SyntheticLearner:
    """A synthetic learner with a CVAE and an MLP on ``data()``, built with ``options``."""
    return SyntheticLearner(
        ConditionalVAE(10, image_shape=(1, 8, 8)),
        mlp(),
        data(),
        RecordDict(),
        partition_id=0,
        **options,
    )


def test_a_dual_head_of_the_wrong_feature_width_is_refused_with_the_width_to_use() -> None:
    model = DualHeadClassifier(nn.Sequential(nn.Flatten(), nn.Linear(64, 32)), 84, 10)
    with pytest.raises(ValueError, match="features are 32 wide.*head takes 84.*feature_dim=32"):
        GMMPrototypeLearner(model, data(), RecordDict(), partition_id=0)
    right = DualHeadClassifier(nn.Sequential(nn.Flatten(), nn.Linear(64, 32)), 32, 10)
    GMMPrototypeLearner(right, data(), RecordDict(), partition_id=0)


@pytest.mark.parametrize("partition_id", [None, "0", 1.0, True, -1])
def test_a_missing_or_malformed_partition_id_names_where_to_take_it(partition_id) -> None:
    match = "partition-id" if partition_id != -1 else ">= 0"
    with pytest.raises(ValueError, match=match):
        FedAvgLearner(mlp(), data(), partition_id=partition_id)
    with pytest.raises(ValueError, match=match):
        SyntheticLearner(
            ConditionalVAE(10, image_shape=(1, 8, 8)),
            mlp(),
            data(),
            RecordDict(),
            partition_id=partition_id,
        )


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_cuda_device_without_a_gpu_is_refused_when_the_learner_is_built() -> None:
    with pytest.raises(ValueError, match="asks for CUDA, which this machine lacks; use 'cpu'"):
        FedAvgLearner(mlp(), data(), partition_id=0, device="cuda")
    with pytest.raises(ValueError, match="lacks"):
        cvae_learner(device="cuda")


def test_hooks_on_a_node_without_a_partition_id_name_where_to_set_it() -> None:
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType
    from torch.utils.data import DataLoader, TensorDataset

    from flower_synth import SyntheticSampleHooks

    images = torch.rand(8, *data().train.image_shape)
    loader = DataLoader(TensorDataset(images, torch.arange(8) % 10), batch_size=4)
    content = RecordDict({"arrays": ArrayRecord(), "config": ConfigRecord({"server-round": 1})})
    message = Message(content, dst_node_id=3, message_type=MessageType.TRAIN)
    context = Context(3, 3, {}, RecordDict(), {})
    with pytest.raises(ValueError, match="partition-id"):
        SyntheticSampleHooks(num_classes=10).mix(message, context, mlp(), loader)


def test_a_personal_model_needs_a_torch_classifier_and_training_of_its_own() -> None:
    from flower_synth import SyntheticSampleHooks
    from flower_synth.generative import ClassConditionalGaussian

    with pytest.raises(ValueError, match="give a torch classifier"):
        SyntheticLearner(
            ClassConditionalGaussian(10),
            None,
            data(),
            RecordDict(),
            partition_id=0,
            personal_self_trust=0.3,
        )
    with pytest.raises(ValueError, match=r"personal_self_trust must lie in \(0, 1\]"):
        cvae_learner(personal_self_trust=0.0)
    with pytest.raises(TypeError, match="train a personal model beside it"):
        SyntheticSampleHooks(num_classes=10, personal_self_trust=0.3)
