"""GMM-prototype learning inside a ClientApp's own handlers: the user's loss trains on
exactly the terms the learner adds, the reply carries the node's mixtures, and the
user's batches, model and weights stay the user's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from torch import nn
from torch.utils.data import DataLoader
from user_loaders import CountingLoader, Rows

from flower_synth import GMMPrototypeHooks
from flower_synth.clientapp.feature_terms_loader import FeatureTermsLoader
from flower_synth.models import SplitClassifier
from flower_synth.models.dual_head import simplex_etf
from flower_synth.prototypes import decode_mixtures
from flower_synth.prototypes.gmm_terms import PSEUDO_WEIGHT, GMMPrototypeTerms

WIDTH = 16  # the features: the input of the last linear layer


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, WIDTH), nn.ReLU(), nn.Linear(WIDTH, 10))


def received_mixtures() -> list[np.ndarray]:
    """Fused mixtures as a server broadcasts them: every class, 3 components."""
    rng = np.random.default_rng(1)
    labels = np.arange(300) % 10
    features = rng.normal(size=(300, WIDTH)) + labels[:, None]
    return GMMPrototypeTerms(10, WIDTH).summarize(features, labels, 0, "float32")


def message(arrays: list[np.ndarray], server_round: int) -> Message:
    content = RecordDict(
        {"arrays": ArrayRecord(arrays), "config": ConfigRecord({"server-round": server_round})}
    )
    return Message(content, dst_node_id=7, message_type=MessageType.TRAIN)


def context(node_config: dict | None = None) -> Context:
    config = {"partition-id": 0, "num-partitions": 2} if node_config is None else node_config
    return Context(7, 7, config, RecordDict(), {})


def test_the_users_loss_trains_on_the_learners_terms() -> None:
    """One step of the user's plain cross-entropy through the loader has the gradient of
    cross-entropy + Dot-Regression + pull + weighted pseudo-feature loss, as the
    learner's training loop computes it (pseudo-features held within the range the
    batch's features take)."""
    model, twin = net(), net()
    etf = simplex_etf(10, WIDTH)
    counts = np.array([8, 1, 2, 3, 4, 5, 6, 7, 8, 8])  # pseudo-features top it up
    terms = GMMPrototypeTerms(10, WIDTH).training_terms(received_mixtures(), etf, counts, 5)
    assert len(terms["pseudo"]) > 0
    loader = FeatureTermsLoader(DataLoader(Rows(40), batch_size=8), model[-1], terms, seed=3)
    batch = next(iter(loader))
    F.cross_entropy(model(batch["img"]), batch["label"]).backward()

    split = SplitClassifier(twin)
    features = split.features(batch["img"])
    pseudo_features, pseudo_labels = terms["pseudo"].batches(len(loader), 3)[0]
    low, high = features.detach().amin(0), features.detach().amax(0)  # the batch's range
    pseudo_features = torch.maximum(torch.minimum(pseudo_features, high), low)
    expected = (
        F.cross_entropy(split.head(features), batch["label"])
        + terms["feature_loss"](features, batch["label"]).mean()
        + PSEUDO_WEIGHT * F.cross_entropy(split.head(pseudo_features), pseudo_labels)
    )
    expected.backward()
    for mine, theirs in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.allclose(mine.grad, theirs.grad, atol=1e-6)

    plain = net()
    F.cross_entropy(plain(batch["img"]), batch["label"]).backward()
    assert not torch.allclose(plain[1].weight.grad, model[1].weight.grad, atol=1e-4)

    loader.close()  # the model's own forward again, and eval-mode passes never carried terms
    assert not model[-1]._forward_hooks


def test_a_round_through_the_users_handlers_sends_the_nodes_mixtures() -> None:
    hooks = GMMPrototypeHooks(num_classes=10, pseudo_per_class=30)  # 20 of each class here
    node = context()
    loader = CountingLoader(Rows(200), batch_size=20, shuffle=True)
    before = CountingLoader.iterations
    model = net()
    first = hooks.mix(message([], 1), node, model, loader)
    assert len(first) == 10 and len(first.dataset) == 200  # the user's loader, as it is
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for batch in first:  # the user's own train function
        optimizer.zero_grad()
        F.cross_entropy(model(batch["img"]), batch["label"]).backward()
        optimizer.step()
    reply = hooks.reply(message([], 1), node, {"train_loss": 1.5})
    metrics = reply["metrics"]
    assert metrics["num-examples"] == 200 and metrics["train_loss"] == 1.5
    assert metrics["partition_id"] == 0 and metrics["client_rounds"] == 1
    assert metrics["pseudo_features"] == 0  # nothing fused yet
    sent = decode_mixtures(reply["arrays"].to_numpy_ndarrays(), 10, WIDTH, "diag")
    assert set(sent.classes) == set(range(10))  # 20 examples of each class
    assert not model[-1]._forward_hooks

    second = hooks.mix(message(received_mixtures(), 2), node, net(), loader)
    list(second)
    metrics = hooks.reply(message([], 2), node, {})["metrics"]
    assert metrics["pseudo_features"] == 100 and metrics["client_rounds"] == 2
    assert CountingLoader.iterations == before + 3  # read once, then the two epochs
    trained = hooks.load_model(net(), node)
    assert torch.equal(trained[1].weight, model[1].weight)  # the node's own weights, kept


def test_mistakes_are_named_before_training() -> None:
    hooks = GMMPrototypeHooks(num_classes=10)
    loader = DataLoader(Rows(40), batch_size=8)
    with pytest.raises(ValueError, match="partition"):
        hooks.mix(message([], 1), context({}), net(), loader)
    with pytest.raises(RuntimeError, match="mix"):
        hooks.reply(message([], 1), context(), {})
    with pytest.raises(ValueError, match="prototype_dtype"):
        GMMPrototypeHooks(num_classes=10, prototype_dtype="int8")
    with pytest.raises(ValueError, match=">= 0"):
        GMMPrototypeHooks(num_classes=10, pull_weight=-1.0)
    narrow = nn.Sequential(nn.Flatten(), nn.Linear(64, 4), nn.Linear(4, 10))
    with pytest.raises(ValueError, match="simplex ETF"):
        hooks.mix(message([], 1), context(), narrow, loader)


def test_nodes_start_from_the_same_weights() -> None:
    """Before its first round every node's model is the federation's common start,
    whatever the user's random initialisation gave it."""
    hooks = GMMPrototypeHooks(num_classes=10)
    torch.manual_seed(1)
    first = hooks.load_model(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), context())
    torch.manual_seed(2)
    other = Context(8, 8, {"partition-id": 1}, RecordDict(), {})
    second = hooks.load_model(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), other)
    assert torch.equal(first[1].weight, second[1].weight)
