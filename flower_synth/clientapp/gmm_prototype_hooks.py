"""GMM-prototype learning inside a ClientApp's own ``@app.train()`` and
``@app.evaluate()`` handlers: the user's model, DataLoaders, device, epochs, learning
rate and train/test functions stay as they are; three calls add the exchange."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from torch import nn
from torch.utils.data import DataLoader

from flower_synth.clientapp.feature_terms_loader import FeatureTermsLoader
from flower_synth.clientapp.node_images import NodeImages
from flower_synth.clientapp.replies import NUM_EXAMPLES_KEY, message_config, received_arrays
from flower_synth.data.client_data import ClientData
from flower_synth.learning.learner import check_partition_id, round_seed, server_round
from flower_synth.learning.normalization import Normalization
from flower_synth.learning.state import count_round, fresh_start, load_module, save_module
from flower_synth.learning.training import extract_features, to_unit_range
from flower_synth.models.dual_head import simplex_etf
from flower_synth.models.feature_split import SplitClassifier
from flower_synth.prototypes.gmm_terms import GMMPrototypeTerms
from flower_synth.prototypes.wire import PROTOTYPE_DTYPES

MODEL_STATE = "gmm-prototype-hooks.model"
PROGRESS_STATE = "gmm-prototype-hooks.progress"


@dataclass
class PendingRound:
    """A node's round between :meth:`GMMPrototypeHooks.mix` and :meth:`~GMMPrototypeHooks.reply`."""

    model: nn.Module
    split: SplitClassifier
    loader: FeatureTermsLoader
    data: ClientData
    partition_id: int
    seed: int


class GMMPrototypeHooks:
    """GMM-prototype learning (GFPL-style) added to your own Message-API handlers.

    Used as :class:`~flower_synth.clientapp.SyntheticSampleHooks` is, with the same
    three calls in your own handlers: ``exchange = GMMPrototypeHooks(num_classes=10)``
    beside the ClientApp; in ``train``, ``trainloader = exchange.mix(msg, context,
    model, trainloader)`` before your train function and ``exchange.reply(msg, context,
    metrics)`` as the reply's content; in ``evaluate``, ``model =
    exchange.load_model(Net(), context)``.

    Your model's last ``nn.Linear`` is the head; its input is the feature space the
    clients share (:class:`~flower_synth.models.SplitClassifier`; give the strategy
    ``feature_dim`` = that layer's ``in_features``). :meth:`mix` loads the node's own
    weights into ``model``, decodes the fused mixtures the server sent and returns
    a :class:`FeatureTermsLoader`: your batches as they are, while your loss's gradient
    gains the terms of :class:`~flower_synth.prototypes.gmm_terms.GMMPrototypeTerms`
    (Dot-Regression towards a fixed simplex ETF, the pull towards the fused mixtures,
    pseudo-features for the head), as the :class:`GMMPrototypeLearner` trains. Your
    ``train`` function needs nothing new; a mean-reduced loss (as
    ``nn.CrossEntropyLoss()``) gives the terms their intended weight. :meth:`reply`
    fits the per-class mixtures of the features of your training images (read from
    your loader once per node and process) and stores the model in ``context.state``.
    The node's weights never leave it. Unlike the learner, predictions are your
    model's as they are (no label-mix correction after pseudo-features).

    Args:
        num_classes: classes of the task.
        normalization: how your inputs were made from images in [0, 1]; None: read
            off your training data.
        etf_seed: the simplex ETF's seed; every client of a federation needs the same.
        prototype_dtype: float format of uploads, ``"float16"`` or ``"float32"``.
        seed: the node's seeds derive from it, its partition id and the round.
        **terms: the options of
            :class:`~flower_synth.prototypes.gmm_terms.GMMPrototypeTerms`
            (``n_components``, ``covariance_type``, ``min_samples``,
            ``pseudo_per_class``, ``pseudo_weight``, ``pull_weight``, ``dr_lambda``;
            its defaults are the learner's).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        normalization: Normalization | None = None,
        etf_seed: int = 0,
        prototype_dtype: str = "float16",
        seed: int = 0,
        **terms: Any,
    ) -> None:
        if prototype_dtype not in PROTOTYPE_DTYPES:
            raise ValueError(
                f"prototype_dtype must be one of {PROTOTYPE_DTYPES}, got {prototype_dtype!r}"
            )
        GMMPrototypeTerms(num_classes, num_classes, **terms)  # unknown or negative: now
        self.num_classes = num_classes
        self.options = terms
        self.etf_seed = etf_seed
        self.prototype_dtype = prototype_dtype
        self.seed = seed
        self.images = NodeImages(num_classes, normalization)
        self.pending: dict[int, PendingRound] = {}

    def load_model(self, model: nn.Module, context: Context) -> nn.Module:
        """``model`` with the node's own trained weights; before its first round, the
        federation's common starting point (:meth:`common_start`); returns it."""
        if not load_module(context.state, MODEL_STATE, model):
            self.common_start(model)
        return model

    def common_start(self, model: nn.Module) -> None:
        """Re-initialise every layer of ``model`` that can (``reset_parameters``) from
        ``seed``, so that every node starts from the same weights, as FedAvg's nodes
        start from one global model: feature spaces that start apart make the fused
        mixtures and the pull towards them meaningless at first (on the quickstart,
        whose ``Net()`` is initialised at random on each node, clients fell from 0.45
        to 0.24-0.32 over six rounds in one of three runs)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            for module in model.modules():
                reset = getattr(module, "reset_parameters", None)
                if callable(reset):
                    reset()

    def terms(self, feature_dim: int) -> GMMPrototypeTerms:
        """The training terms and summary for features ``feature_dim`` wide."""
        return GMMPrototypeTerms(self.num_classes, feature_dim, **self.options)

    def mix(
        self, message: Message, context: Context, model: nn.Module, trainloader: DataLoader
    ) -> FeatureTermsLoader:
        """Start the node's round: ``model`` given the node's weights, the received
        mixtures decoded into training terms; the loader your ``train`` function iterates."""
        partition_id = check_partition_id(context.node_config.get("partition-id"))
        data = self.images.client_data(context, trainloader)
        self.load_model(model, context)
        split = SplitClassifier(model)
        device = next(model.parameters()).device
        etf = simplex_etf(self.num_classes, split.feature_dim, self.etf_seed).to(device)
        seed = round_seed(self.seed, partition_id, server_round(message_config(message)))
        counts = np.bincount(data.train.labels, minlength=self.num_classes)
        terms = self.terms(split.feature_dim).training_terms(
            received_arrays(message), etf, counts, seed
        )
        loader = FeatureTermsLoader(trainloader, split.head, terms, seed)
        self.pending[context.node_id] = PendingRound(model, split, loader, data, partition_id, seed)
        return loader

    def reply(self, message: Message, context: Context, metrics: Mapping[str, Any]) -> RecordDict:
        """Finish the node's round after your training: the per-class mixtures of its
        features and the metrics (yours, ``partition_id``, ``client_rounds``,
        ``fresh_start``, ``pseudo_features``, ``num-examples``) as the reply's content;
        the model stored in ``context.state``."""
        if context.node_id not in self.pending:
            raise RuntimeError("call exchange.mix(...) in the train handler before reply(...)")
        pending = self.pending.pop(context.node_id)
        pending.loader.close()
        save_module(context.state, MODEL_STATE, pending.model)
        device = next(pending.model.parameters()).device
        data = pending.data
        features = extract_features(
            pending.split, to_unit_range(data.train), data.normalization, device
        )
        arrays = self.terms(pending.split.feature_dim).summarize(
            features, data.train.labels, pending.seed, self.prototype_dtype
        )
        rounds = count_round(context.state, PROGRESS_STATE)
        pseudo = pending.loader.terms.get("pseudo")
        values = dict(metrics) | {
            "partition_id": pending.partition_id,
            "client_rounds": rounds,
            "fresh_start": fresh_start(rounds, server_round(message_config(message))),
            "pseudo_features": 0 if pseudo is None else len(pseudo),
            NUM_EXAMPLES_KEY: data.num_images,
        }
        return RecordDict({"arrays": ArrayRecord(arrays), "metrics": MetricRecord(values)})
