"""The synthetic-sample exchange inside a ClientApp's own handlers: the user's loader
is read once per node, its batches reach the user's train function as they are, and the
received samples come in between in the same form, normalised as the user's inputs."""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from torch import nn
from user_loaders import SHAPE, CountingLoader, Rows

from flower_synth import Normalization, SyntheticSampleHooks
from flower_synth.generative import ConditionalVAE
from flower_synth.wire.payload import decode_samples, encode_samples


def message(arrays: list[np.ndarray], server_round: int) -> Message:
    config = ConfigRecord({"server-round": server_round, "self_trust": 0.5, "num_samples": 30})
    content = RecordDict({"arrays": ArrayRecord(arrays), "config": config})
    return Message(content, dst_node_id=7, message_type=MessageType.TRAIN)


def test_the_users_batches_and_the_received_samples_reach_the_train_function() -> None:
    hooks = SyntheticSampleHooks(ConditionalVAE(10, image_shape=SHAPE, epochs=1), num_classes=10)
    context = Context(7, 7, {"partition-id": 0, "num-partitions": 2}, RecordDict(), {})
    loader = CountingLoader(Rows(40), batch_size=8, shuffle=True)
    before = CountingLoader.iterations
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    first = hooks.mix(message([], 1), context, model, loader)
    assert len(first) == 5 and len(first.dataset) == 40  # nothing received yet
    reply = hooks.reply(message([], 1), context, {"train_loss": 1.0})
    sent = decode_samples(reply["arrays"].to_numpy_ndarrays())
    assert len(sent) == 30 and reply["metrics"]["num-examples"] == 40
    assert reply["metrics"]["train_loss"] == 1.0
    assert reply["metrics"]["input_mean_0"] == 0.1307  # for a server classifier given none
    read_off = hooks.images.data[(7, 7)].normalization
    assert read_off == Normalization((0.1307,), (0.3081,))

    received = encode_samples(np.full((20, *SHAPE), 1.0), np.full(20, 3), "uint8")
    second = hooks.mix(message(received, 2), context, model, loader)
    assert len(second) == 5 + 5 and len(second.dataset) == 80  # trust 0.5: as many again
    batches = list(second)
    assert CountingLoader.iterations == before + 2  # read once by the first mix, then this epoch
    synthetic = [b for b in batches if b["label"].ndim == 2]  # soft labels (N, C)
    assert len(synthetic) == 5 and all(len(b["label"]) == 8 for b in synthetic)
    assert all(torch.allclose(b["label"].sum(1), torch.ones(8)) for b in synthetic)
    white = (1.0 - 0.1307) / 0.3081  # a white pixel as the user's inputs have it
    assert torch.allclose(synthetic[0]["img"], torch.full((8, *SHAPE), white), atol=1e-3)
    assert set(batches[0]) == {"img", "label"}
    hooks.reply(message(received, 2), context, {})
    hooks.soft_labels = False  # the class each sample was generated for, as integers
    hard = [
        b for b in hooks.mix(message(received, 3), context, model, loader) if len(b["label"]) == 8
    ]
    assert any((b["label"] == 3).all() and b["label"].dtype == torch.int64 for b in hard)
    hooks.reply(message(received, 3), context, {})
    trained = hooks.load_model(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), context)
    assert torch.equal(trained[1].weight, model[1].weight)  # the node's own weights, kept


def test_loaders_are_read_once_per_cache_key() -> None:
    from flower_synth import client_data_from_loaders

    loader = CountingLoader(Rows(16), batch_size=8)
    before = CountingLoader.iterations
    first = client_data_from_loaders(loader, loader, 10, cache_key=("run", 1))
    again = client_data_from_loaders(loader, loader, 10, cache_key=("run", 1))
    assert again is first and CountingLoader.iterations == before + 2  # train and test, once
    client_data_from_loaders(loader, loader, 10)
    assert CountingLoader.iterations == before + 4  # no key: read again
