"""A two-round Message-API run of both strategy families with nothing but the library's
core dependencies installed (flwr, torch, numpy, scipy, scikit-learn): scikit-learn's
bundled 8x8 digits as the user's data, plain torch DataLoaders, and the ServerApp and
ClientApp driven in this process by a Grid that hands each message to the ClientApp.

Run by tests/test_install.py in a fresh virtual environment. Prints one JSON line:
the modules imported, and per strategy the rounds run, the server classifier's accuracy
(central evaluation through ``evaluate_fn``) and the shapes of ``result.arrays``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from uuid import uuid4

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import flower_synth
from flower_synth import (
    ClientData,
    GMMPrototypeLearner,
    GMMPrototypeStrategy,
    SyntheticLearner,
    SyntheticSampleStrategy,
    client_data_from_loaders,
    learner_app,
)
from flower_synth.generative import ConditionalVAE
from flower_synth.models import DualHeadClassifier

NODES = 2
ROUNDS = 2


class InProcessGrid(Grid):
    """A Grid whose nodes are one ClientApp in this process, each with its own Context."""

    def __init__(self, client_app, num_nodes: int) -> None:
        TaskIdentity.task_id, TaskIdentity.run_id = 1, 1  # what a SuperLink sets
        TaskIdentity.node_id = SUPERLINK_NODE_ID
        self.client_app = client_app
        self.contexts = {
            node: Context(
                run_id=1,
                node_id=node,
                node_config={"partition-id": node - 1, "num-partitions": num_nodes},
                state=RecordDict(),
                run_config={},
            )
            for node in range(1, num_nodes + 1)
        }

    def set_run(self, run) -> None:  # noqa: D102 - one run only
        pass

    @property
    def run(self):  # noqa: D102
        return None

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def push_messages(self, messages):  # noqa: D102
        raise NotImplementedError

    def pull_messages(self, message_ids):  # noqa: D102
        raise NotImplementedError

    def send_and_receive(self, messages: Iterable[Message], *, timeout=None) -> Iterable[Message]:
        replies = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = str(uuid4())
            context = self.contexts[message.metadata.dst_node_id]
            replies.append(self.client_app(message, context))
        return replies


def loaders(partition: int) -> tuple[DataLoader, DataLoader]:
    """The user's DataLoaders: half the digits each, images scaled to [-1, 1]."""
    digits = load_digits()
    images = torch.tensor(digits.images[:, None] / 16.0 * 2 - 1, dtype=torch.float32)
    labels = torch.tensor(digits.target)
    order = np.random.default_rng(0).permutation(len(labels))
    mine = order[partition::NODES]
    train, test = mine[: int(0.8 * len(mine))], mine[int(0.8 * len(mine)) :]
    return (
        DataLoader(TensorDataset(images[train], labels[train]), batch_size=32, shuffle=True),
        DataLoader(TensorDataset(images[test], labels[test]), batch_size=64),
    )


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def client_data(context: Context) -> ClientData:
    train, test = loaders(int(context.node_config["partition-id"]))
    return client_data_from_loaders(train, test, num_classes=10)


def synthetic_learner(context: Context) -> SyntheticLearner:
    generator = ConditionalVAE(10, image_shape=(1, 8, 8))
    partition = int(context.node_config["partition-id"])
    return SyntheticLearner(
        generator, mlp(), client_data(context), context.state, partition_id=partition
    )


def gmm_learner(context: Context) -> GMMPrototypeLearner:
    partition = int(context.node_config["partition-id"])
    model = DualHeadClassifier(nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU()), 32, 10)
    return GMMPrototypeLearner(model, client_data(context), context.state, partition_id=partition)


def central_accuracy(model_factory):
    """``evaluate_fn`` of Flower's examples: the arrays scored on the whole digits set."""
    digits = load_digits()
    images = torch.tensor(digits.images[:, None] / 16.0 * 2 - 1, dtype=torch.float32)
    scores: list[float] = []

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model = model_factory()
        model.load_state_dict(arrays.to_torch_state_dict())
        with torch.no_grad():
            logits = model(images)
        accuracy = float((logits.argmax(1).numpy() == digits.target).mean())
        scores.append(accuracy)
        return MetricRecord({"accuracy": accuracy})

    return evaluate, scores


def run(strategy, learner_factory, model_factory=None) -> dict:
    """``strategy.start`` as Flower's examples call it; with ``model_factory``, also
    ``initial_arrays`` and an ``evaluate_fn`` that loads the arrays into that model."""
    grid = InProcessGrid(learner_app(learner_factory), NODES)
    scores: list[float] = []
    options = {}
    if model_factory is not None:
        evaluate, scores = central_accuracy(model_factory)
        options = {
            "initial_arrays": ArrayRecord(model_factory().state_dict()),
            "evaluate_fn": evaluate,
        }
    result = strategy.start(grid=grid, num_rounds=ROUNDS, **options)
    state = result.arrays.to_torch_state_dict() if result.arrays else {}
    return {
        "rounds": len(result.train_metrics_clientapp),
        "central_accuracy": scores,
        "client_accuracy": float(result.evaluate_metrics_clientapp[ROUNDS]["accuracy"]),
        "arrays": {name: list(value.shape) for name, value in state.items()},
    }


def main() -> None:
    torch.manual_seed(0)
    synthetic = SyntheticSampleStrategy(
        sample_shape=(1, 8, 8), num_classes=10, server_classifier=mlp()
    )
    gmm = GMMPrototypeStrategy(num_classes=10, feature_dim=32)
    outcome = {
        "version": flower_synth.__version__,
        "synthetic": run(synthetic, synthetic_learner, mlp),
        "gmm": run(gmm, gmm_learner),
        "modules": sorted(name for name in sys.modules if "." not in name),
    }
    print(json.dumps(outcome))


if __name__ == "__main__":
    main()
