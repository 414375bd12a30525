"""Synthetic-sample exchange inside a ClientApp's own ``@app.train()`` and
``@app.evaluate()`` handlers: the user's model, DataLoaders, device, epochs, learning
rate and train/test functions stay as they are; three calls add the exchange."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from torch import nn
from torch.utils.data import DataLoader

from flower_synth.clientapp.mixed_loader import MixedLoader
from flower_synth.clientapp.node_images import NodeImages
from flower_synth.clientapp.replies import NUM_EXAMPLES_KEY, message_config, received_arrays
from flower_synth.generative.base import GenerativeModel
from flower_synth.generative.cvae import ConditionalVAE
from flower_synth.learning.learner import round_seed, server_round
from flower_synth.learning.normalization import Normalization
from flower_synth.learning.state import load_module, save_module
from flower_synth.synthetic.learner import CLASSIFIER_STATE, PreparedRound, SyntheticLearner
from flower_synth.wire.payload import SampleBatch


class SyntheticSampleHooks:
    """The synthetic-sample exchange added to your own Message-API handlers.

    Create one per ClientApp, next to it, and keep your handlers::

        exchange = SyntheticSampleHooks(num_classes=10)  # a ConditionalVAE per node

        @app.train()
        def train(msg, context):
            model = Net().to(device)
            trainloader, _ = load_data(...)
            trainloader = exchange.mix(msg, context, model, trainloader)
            loss = train_fn(model, trainloader, epochs, lr, device)   # yours
            ...
            return Message(exchange.reply(msg, context, metrics), reply_to=msg)

        @app.evaluate()
        def evaluate(msg, context):
            model = exchange.load_model(Net(), context)
            ...   # your test function on your own loader

    :meth:`mix` reads your training loader once per node and process (the generator
    learns from those images; your classifier keeps seeing your loader, augmentation
    included), fits the node's generator on its own images and the samples the server
    sent, loads the node's own classifier weights into ``model`` and returns the
    :class:`MixedLoader` your ``train`` function iterates. :meth:`reply` generates
    this round's samples (labelled by your trained model) and stores the model and
    generator in ``context.state``. The node's weights never leave it.

    Args:
        generator: the local generative model (copied for every node; the node's own
            fitted state lives in ``context.state``); None: a
            :class:`~flower_synth.generative.ConditionalVAE` for the images your loader
            holds.
        num_classes: classes of the task.
        normalization: how your inputs were made from images in [0, 1]; None: read
            off your training data (:meth:`Normalization.from_inputs`).
        soft_labels: give your ``train`` the received samples' soft labels (the
            senders' class probabilities, float ``(N, C)``) rather than the class each
            was generated for. On the quickstart (6 rounds, 2 runs each) the clients
            reached 0.50-0.59 with soft labels and 0.28-0.43 with the generated class
            (a poor sample's soft label is flat, its class is not). Set it False when
            your ``train`` needs integer labels.
        seed: the node's seeds derive from it, its partition id and the round.
        **learner_options: further options of
            :class:`~flower_synth.synthetic.learner.SyntheticLearner`
            (``samples_per_round``, ``soft_labels``, ``sample_dtype``, ...).
    """

    def __init__(
        self,
        generator: GenerativeModel | None = None,
        *,
        num_classes: int,
        normalization: Normalization | None = None,
        soft_labels: bool = True,
        seed: int = 0,
        **learner_options: Any,
    ) -> None:
        for taken in ("classifier", "data", "state", "partition_id", "training", "device"):
            if taken in learner_options:
                raise TypeError(
                    f"SyntheticSampleHooks takes {taken} from your handlers (your model, "
                    "loader, context and device); leave it out"
                )
        if learner_options.get("personal_self_trust") is not None:
            raise TypeError(
                "SyntheticSampleHooks leaves the training to your train function, which "
                "trains one model: train a personal model beside it there, and leave "
                "personal_self_trust out"
            )
        self.generator = generator
        self.num_classes = num_classes
        self.images = NodeImages(num_classes, normalization)
        self.soft_labels = soft_labels
        self.seed = seed
        self.learner_options = learner_options
        self.pending: dict[int, tuple[SyntheticLearner, PreparedRound, int]] = {}

    def load_model(self, model: nn.Module, context: Context) -> nn.Module:
        """``model`` with the node's own trained weights (unchanged before its first
        round); returns it."""
        load_module(context.state, CLASSIFIER_STATE, model)
        return model

    def mix(
        self, message: Message, context: Context, model: nn.Module, trainloader: DataLoader
    ) -> MixedLoader:
        """Start the node's round: the received samples decoded, the generator fitted,
        ``model`` given the node's weights; the loader your ``train`` function iterates."""
        data = self.images.client_data(context, trainloader)
        device = next(model.parameters()).device
        generator = copy.deepcopy(self.generator)
        if generator is None:
            generator = ConditionalVAE(self.num_classes, image_shape=data.train.image_shape)
        learner = SyntheticLearner(
            generator,
            model,
            data,
            context.state,
            partition_id=context.node_config.get("partition-id"),  # checked by the learner
            seed=self.seed,
            device=device,
            **self.learner_options,
        )
        config = message_config(message)
        seed = round_seed(self.seed, learner.partition_id, server_round(config))
        trust = float(config.get("self_trust", 1.0))
        received = learner.receive(received_arrays(message), config, seed)
        prepared = learner.prepare(received, trust)
        self.pending[context.node_id] = (learner, prepared, seed)
        received_part = prepared.mixture.samples[prepared.num_real :]
        num_received = 0
        if len(received_part) and trust > 0:
            num_received = round(len(trainloader.dataset) * (1 - trust) / trust)  # type: ignore[arg-type]
        return MixedLoader(
            trainloader,
            SampleBatch(
                received_part,
                prepared.mixture.labels[prepared.num_real :],
                prepared.targets[prepared.num_real :].astype(np.float32),
            ),
            prepared.weights[prepared.num_real :],
            num_received,
            data.normalization,
            seed,
            self.soft_labels,
        )

    def reply(self, message: Message, context: Context, metrics: Mapping[str, Any]) -> RecordDict:
        """Finish the node's round after your training: this round's samples and the
        metrics (yours, the exchange's, ``num-examples``) as the reply's content; the
        model and generator stored in ``context.state``."""
        if context.node_id not in self.pending:
            raise RuntimeError("call exchange.mix(...) in the train handler before reply(...)")
        learner, prepared, seed = self.pending.pop(context.node_id)
        config = message_config(message)
        save_module(context.state, CLASSIFIER_STATE, learner.classifier)
        generated, exchange_metrics = learner.generate(
            prepared, learner.samples_asked(config), seed
        )
        fitted = learner.reply(generated, exchange_metrics, config)
        values = dict(metrics) | dict(fitted.metrics) | {NUM_EXAMPLES_KEY: fitted.num_examples}
        return RecordDict({"arrays": ArrayRecord(fitted.arrays), "metrics": MetricRecord(values)})
