"""The client side of strategies in which every client trains its own model and shares
per-class feature summaries (prototypes) instead of weights, free of Flower's APIs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np
from flwr.app import RecordDict
from flwr.common import Scalar
from torch import nn

from flower_synth.data.client_data import ClientData
from flower_synth.data.image_dataset import ImageDataset
from flower_synth.learning.classifier_training import ClassifierTraining
from flower_synth.learning.devices import check_device
from flower_synth.learning.distillation import adjust_prior
from flower_synth.learning.learner import (
    Evaluated,
    Fitted,
    check_partition_id,
    round_seed,
    server_round,
    step_size,
)
from flower_synth.learning.state import (
    count_round,
    fresh_start,
    load_arrays,
    load_module,
    save_arrays,
    save_module,
)
from flower_synth.learning.training import (
    Device,
    class_probabilities,
    extract_features,
    make_loader,
    model_inputs,
    score,
    to_unit_range,
    train,
)
from flower_synth.models.feature_split import check_feature_width, require_feature_split
from flower_synth.privacy.audit import audit_release


class PrototypeLearner(ABC):
    """A client whose model never leaves it; each round it trains on its real data with
    extra terms derived from the received global summary, then returns a new summary of
    its features. A :class:`~flower_synth.learning.learner.Learner`.

    :meth:`fit` decodes the global summary (empty in round 1) into training terms
    (:meth:`training_terms`), runs ``local_epochs`` of SGD, and returns
    :meth:`summarize` of the features of its training split, its size, and the metrics
    ``partition_id``, ``train_loss`` and ``client_rounds``; with ``audit``, also what
    that summary reveals of its training images (:meth:`audit_summary`).
    :meth:`evaluate` scores the model on the local test split (``accuracy``) and, if
    given and the config's ``global_eval`` (default true) asks, the global test set
    (``global_accuracy``); a client that has not trained yet evaluates nothing (0
    examples). A learner whose head trains on another label mix than its real data
    (:meth:`trained_prior`) predicts on the global test set with the uniform prior
    restored by logit adjustment, and on its local test split with its real label mix restored if
    ``restore_prior`` (both figures are reported either way, see :meth:`evaluate`).
    The model persists across rounds in ``state`` (the node's ``Context.state``) under
    ``state_key``.

    Args:
        model: torch classifier with ``features`` and ``head`` (and ``feature_dim``).
        data: the client's training and local test splits.
        state: where the model is kept between rounds.
        state_key: name of the model's entry in ``state``.
        partition_id: reported to the server, and part of every round's seed; required.
        training: local SGD (``local_epochs``, ``batch_size``, ``learning_rate``,
            ``momentum`` of :class:`~flower_synth.learning.classifier_training.ClassifierTraining`;
            the learning rate a round's config sends overrides it).
        seed: run seed.
        prototype_dtype: float format of uploads, ``"float16"`` or ``"float32"``.
        restore_prior: personalized predictions restore the client's real label mix
            where the head learnt another one.
        global_test: if given, ``evaluate`` also scores the global test set.
        device: where the model trains and predicts.
        audit: every summary sent is also audited against the training images and
            held-out ones in the client's own feature space (:meth:`audit_summary`).
    """

    def __init__(
        self,
        model: nn.Module,
        data: ClientData,
        state: RecordDict,
        state_key: str,
        *,
        partition_id: int,
        training: ClassifierTraining | None = None,
        seed: int = 0,
        prototype_dtype: str = "float16",
        restore_prior: bool = False,
        global_test: ImageDataset | None = None,
        device: Device = "cpu",
        audit: bool = False,
    ) -> None:
        require_feature_split(model)
        if audit and len(data.test) == 0 and global_test is None:
            raise ValueError(
                "audit needs images the client never trained on: give it a local test "
                "split or global_test"
            )
        check_feature_width(model, model_inputs(data.train.images[:1], data.normalization))
        self.model = model
        self.data = data
        self.state = state
        self.state_key = state_key
        self.partition_id = check_partition_id(partition_id)
        self.training = training or ClassifierTraining()
        self.seed = seed
        self.prototype_dtype = prototype_dtype
        self.restore_prior = restore_prior
        self.global_test = global_test
        self.device = check_device(device)
        self.audit = audit
        self.trained = load_module(state, f"{state_key}.model", model)

    @property
    def num_classes(self) -> int:
        """Classes of the dataset (not only those this client holds)."""
        return self.data.train.num_classes

    @abstractmethod
    def training_terms(self, received: list[np.ndarray], seed: int) -> dict[str, Any]:
        """Keyword arguments for :func:`~flower_synth.learning.training.train` (``feature_loss``,
        ``pseudo``) derived from the received global summary (possibly empty)."""

    @abstractmethod
    def summarize(self, seed: int) -> list[np.ndarray]:
        """The payload: a per-class summary of the training split's features
        (:meth:`training_features`), after this round's training."""

    @abstractmethod
    def shared_points(self, summary: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The feature vectors a payload of :meth:`summarize` discloses (a mean per
        class, or per mixture component) and their classes, as the wire decodes them."""

    def trained_prior(self, terms: Mapping[str, Any]) -> np.ndarray | None:
        """The label mix the head learns with ``terms`` when it differs from the real
        data's (None: the real label mix, nothing to adjust)."""
        return None

    @property
    def real_prior(self) -> np.ndarray:
        """The label mix of the client's real training split."""
        return self.data.train.label_mix()

    def training_features(self) -> tuple[np.ndarray, np.ndarray]:
        """Features of the training split under the current model, and their labels."""
        features = extract_features(
            self.model, to_unit_range(self.data.train), self.data.normalization, self.device
        )
        return features, self.data.train.labels

    def fit(self, arrays: list[np.ndarray], config: Mapping[str, Scalar]) -> Fitted:
        """Train with the global summary's terms; return this client's new summary."""
        seed = round_seed(self.seed, self.partition_id, server_round(config))
        real, labels = to_unit_range(self.data.train), self.data.train.labels
        terms = self.training_terms(arrays, seed)
        # a partly labelled client draws as many labelled examples per epoch as it has
        # images, so it trains as many steps as a fully labelled client of its size
        draws = self.data.num_images if self.data.num_unlabelled else None
        loader = make_loader(
            real,
            labels,
            self.training.batch_size,
            True,
            seed,
            draws=draws,
            normalization=self.data.normalization,
        )
        loss = train(
            self.model,
            loader,
            self.training.local_epochs,
            step_size(config, self.training.learning_rate),
            self.training.momentum,
            seed=seed,
            device=self.device,
            **terms,
        )
        save_module(self.state, f"{self.state_key}.model", self.model)
        prior = self.trained_prior(terms)
        if prior is not None:
            save_arrays(self.state, f"{self.state_key}.prior", {"trained": prior})
        self.trained = True
        rounds = count_round(self.state, f"{self.state_key}.progress")
        metrics: dict[str, Scalar] = {
            "partition_id": self.partition_id,
            "train_loss": loss,
            "client_rounds": rounds,
            "fresh_start": fresh_start(rounds, server_round(config)),
        }
        if terms.get("pseudo") is not None:
            metrics["pseudo_features"] = len(terms["pseudo"])
        summary = self.summarize(seed)
        metrics |= self.release_metrics()
        if self.audit:
            metrics |= self.audit_summary(summary)
        return Fitted(summary, self.data.num_images, metrics)

    def release_metrics(self) -> dict[str, Scalar]:
        """Metrics of the summary :meth:`summarize` last made (none here)."""
        return {}

    def audit_summary(self, summary: list[np.ndarray]) -> dict[str, Scalar]:
        """What ``summary`` reveals of the training images, measured by the one party
        that holds the feature extractor (the worst case: an attacker who had it): the
        attack and the memorisation ratio of :func:`~flower_synth.privacy.audit.audit_release`
        on features, with the summary's points (:meth:`shared_points`) as the shared
        samples, the training split as members and as many held-out images of the same
        classes (the local test split, else the global test set) as non-members.
        Reported as ``release_membership_auc`` and, where a class is in all three,
        ``release_memorisation_ratio``; nothing for a summary without points."""
        points, point_labels = self.shared_points(summary)
        if len(points) == 0:
            return {}
        train, labels = self.training_features()
        held_out = self.data.test if len(self.data.test) else self.global_test
        assert held_out is not None  # checked in __init__
        unseen = extract_features(
            self.model, to_unit_range(held_out), self.data.normalization, self.device
        )
        audit = audit_release(
            points, point_labels, train, labels, unseen, held_out.labels, seed=self.seed
        )
        metrics: dict[str, Scalar] = {"release_membership_auc": audit.membership_auc}
        if np.isfinite(audit.memorisation_ratio):
            metrics["release_memorisation_ratio"] = audit.memorisation_ratio
        return metrics

    def evaluate(self, arrays: list[np.ndarray], config: Mapping[str, Scalar]) -> Evaluated:
        """The client's own model on its local test split (``accuracy``) and, if set and
        the config's ``global_eval`` (default true) asks, the global test set
        (``global_accuracy``). Where the head learnt another label mix than the real
        one (:meth:`trained_prior`), the global test set is scored with the uniform mix
        restored (``global_accuracy_uncorrected`` without), and the local test split
        both as the head predicts (``accuracy_uncorrected``) and with the real mix
        restored (``accuracy_restored``); ``accuracy`` is the latter with
        ``restore_prior``, else the former; and ``partition_id``."""
        if not self.trained:
            return Evaluated(0.0, 0, {"accuracy": 0.0})
        stored = load_arrays(self.state, f"{self.state_key}.prior")
        trained = None if stored is None else stored["trained"]
        metrics: dict[str, Scalar] = {"partition_id": self.partition_id}
        if self.global_test is not None and bool(config.get("global_eval", True)):
            probabilities = self.probabilities(self.global_test)
            labels = self.global_test.labels
            metrics["global_accuracy"] = score(probabilities, labels)[1]
            if trained is not None:
                uniform = np.full(self.num_classes, 1.0 / self.num_classes)
                metrics["global_accuracy_uncorrected"] = metrics["global_accuracy"]
                metrics["global_accuracy"] = score(
                    adjust_prior(probabilities, trained, uniform), labels
                )[1]
        if len(self.data.test) == 0:
            return Evaluated(0.0, 0, metrics)
        probabilities, labels = self.probabilities(self.data.test), self.data.test.labels
        if trained is not None:
            restored = adjust_prior(probabilities, trained, self.real_prior)
            metrics["accuracy_uncorrected"] = score(probabilities, labels)[1]
            metrics["accuracy_restored"] = score(restored, labels)[1]
            if self.restore_prior:
                probabilities = restored
        loss, metrics["accuracy"] = score(probabilities, labels)
        return Evaluated(loss, len(self.data.test), metrics)

    def probabilities(self, data: ImageDataset) -> np.ndarray:
        """The model's class probabilities for ``data``."""
        return class_probabilities(self.model, data.images, self.data.normalization, self.device)
