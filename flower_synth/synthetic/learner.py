"""The client side of synthetic-sample exchange, free of Flower's client APIs.

A :class:`SyntheticLearner` owns a generative model and a classifier. Each round it
learns from its real data mixed with the samples it received, then generates the
samples it sends. It is a :class:`~flower_synth.learning.learner.Learner`: the legacy
``NumPyClient`` and the Message-API handlers only carry its arrays and config.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from flwr.app import RecordDict
from flwr.common import Scalar
from torch import nn

from flower_synth.data.client_data import ClientData
from flower_synth.data.image_dataset import ImageDataset
from flower_synth.generative import DensityModel, GenerativeModel, MeanEmbedding
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
    make_loader,
    score,
    to_unit_range,
    train,
)
from flower_synth.privacy.release import release_counts
from flower_synth.synthetic.allocation import labels_in_proportion
from flower_synth.synthetic.modality import CleanModality, Modality
from flower_synth.wire.deflate import check_compression
from flower_synth.wire.input_normalization import normalization_metrics
from flower_synth.wire.payload import SampleBatch, encode_samples, validate_payload
from flower_synth.wire.variables import CLEAN, download_groups, variables_code

GENERATOR_STATE = "synthetic.generator"
CLASSIFIER_STATE = "synthetic.classifier"
PERSONAL_STATE = "synthetic.personal"
PROGRESS_STATE = "synthetic.progress"
OWN_CLASS_SHARE = 0.05  # a class the client holds: this share of its real data or more
PRIOR_STATE = "synthetic.prior"
POOL_STATE = "synthetic.pool"
RELEASED_COUNTS_STATE = "synthetic.released_counts"  # a private client's noised label counts
PSEUDO_SHARE = 0.5  # of the real data's weight, for the pseudo-labelled images
SAMPLE_LABELS = ("real", "prior")
# Received payloads are as large as the server's download budget: a client trusts the
# server's size and checks everything else.
UNBOUNDED = 2**62


def mixture_weights(
    num_real: int, num_received: int, self_trust: float, num_pseudo: int = 0
) -> np.ndarray:
    """Per-example weights of the trust-weighted mixture: real data share ``a_ii``,
    received samples share ``1 - a_ii`` (all on real data when nothing was received).
    Where the last ``num_pseudo`` of the ``num_real`` real examples carry pseudo-labels,
    they share ``PSEUDO_SHARE`` of the real data's weight and the labelled ones the
    rest, however many more of them there are: the labels the client knows keep
    anchoring what it learns."""
    labelled = num_real - num_pseudo
    real = np.full(num_real, 1.0 / num_real)
    if num_pseudo and labelled:
        real = np.concatenate(
            [
                np.full(labelled, (1 - PSEUDO_SHARE) / labelled),
                np.full(num_pseudo, PSEUDO_SHARE / num_pseudo),
            ]
        )
    if num_received == 0:
        return real
    return np.concatenate(
        [self_trust * real, np.full(num_received, (1 - self_trust) / num_received)]
    )


@dataclass
class PreparedRound:
    """A round between fitting the generator and training the classifier: the
    mixture (the client's own examples first, ``num_real`` of them, then the received
    ones), its example weights and targets, the metrics so far, when the generator
    was done, and the personal model's example weights (None without one)."""

    mixture: SampleBatch
    num_real: int
    weights: np.ndarray
    targets: np.ndarray
    metrics: dict[str, Scalar]
    fitted_at: float
    personal_weights: np.ndarray | None = None


def check_private(
    generator: GenerativeModel, soft_labels: bool, share_real: bool, sample_labels: str
) -> None:
    """Refuse what would let a private client's real data leave it without noise."""
    if not generator.is_private:
        raise ValueError(
            f"a private client needs a generator that learns with differential privacy; "
            f"give {type(generator).__name__} dp=DPSGD(...) (torch image generators) or "
            "use MeanEmbedding(release_noise=...)"
        )
    if soft_labels:
        raise ValueError(
            "soft labels come from the classifier trained on the real data without noise: "
            "set soft_labels=False for a private client"
        )
    if share_real:
        raise ValueError("share_real sends real examples: not for a private client")
    if sample_labels != "real":
        raise ValueError(
            "sample_labels='prior' follows the generator's class prior, counted on the real "
            "data without noise: use 'real' (a private client releases its counts with noise)"
        )


class SyntheticLearner:
    """One client of synthetic-sample exchange: generator, classifier and their state.

    ``fit`` fits the generator on the mixture of the real training split (weight
    ``a_ii``) and the received samples (weight ``1 - a_ii``), trains the classifier on
    the same mixture, and generates this round's samples: labels follow the real
    class counts (``sample_labels="real"``) or the generator's own prior, the class mix
    of the mixture it learnt (``"prior"``: the game of Schlesinger & Flach exactly).
    Each sample carries the classifier's class probabilities (soft labels) as they
    are, with the classifier's own training prior: moving them to a uniform prior
    divides by the tiny prior of classes a client barely holds, which turns a sure
    call into a wrong one. ``label_agreement`` is the share of samples whose soft
    label's most probable class is the class they were generated for.

    The classifier learns with the mixture's label mix as its prior. ``evaluate``
    scores it on the local test split with that prior replaced by the client's real
    label mix (logit adjustment; ``accuracy``), and on the global test set with a
    uniform prior (``global_accuracy``; ``global_accuracy_uncorrected`` without),
    split into the classes the client holds (at least ``OWN_CLASS_SHARE`` of its real
    data; ``global_accuracy_own_classes``) and the others, which it knows from
    received samples alone (``global_accuracy_other_classes``).

    On the wire (:meth:`fit`): it receives a payload of
    :mod:`flower_synth.wire.payload` (possibly empty, possibly deflated) with the config keys
    ``self_trust`` (a_ii), ``num_samples``, ``server_round`` and, where the server sizes
    samples by the client's data, ``sample_ratio`` (the client then generates that many
    samples per training image, at most ``num_samples``), and returns its
    samples encoded as ``sample_dtype`` (``uint8`` images at ``sample_levels``
    intensity levels) with soft labels (unless ``soft_labels`` is off; only the top
    ``soft_label_top_k`` per sample if set), ``compression`` applied, the size of its
    real training split and its metrics. :meth:`evaluate` scores the global test set
    when the config's ``global_eval`` (default true) asks.

    Args:
        generator: any :class:`GenerativeModel` (``fit``/``sample``).
        classifier: any torch classifier on images normalised as ``data.normalization``
            says (a model with ``features`` and ``head`` is trained through them), or
            None to classify with the generator's Bayes posterior (the generator must
            then be a :class:`DensityModel`).
        data: the client's training split and local test split (from your own loaders:
            :func:`~flower_synth.data.client_data_from_loaders`).
        state: where everything persists between rounds (the node's ``Context.state``).
        partition_id: this client's identity: the server keys its pool and trust row by
            it, and every round's seed derives from it; required.
        training: classifier training settings.
        sample_labels: ``"real"`` or ``"prior"`` (see above).
        sample_dtype: ``"uint8"`` (images) or ``"float16"`` on the wire.
        samples_per_round: samples to generate when the config does not say.
        fresh_fraction: share of the samples generated anew each round (1: all); the
            rest are the client's most recent earlier samples (a rolling pool kept in
            ``state`` as ``uint8`` images), relabelled with the current classifier's
            probabilities. Sampling an ODE generator costs more than training it.
        soft_labels: send the classifier's class probabilities with the samples.
        soft_label_top_k: send only the top k of them per sample (0: all).
        sample_levels: intensity levels of ``uint8`` images on the wire (2 to 256).
        compression: ``"deflate"`` or ``"none"``: how the samples travel.
        seed: run seed.
        global_test: the global test set, for ``global_accuracy``.
        device: where the classifier trains and predicts (e.g. ``"cuda"``).
        pseudo_label_threshold: a partly labelled client (``data.unlabelled``) learns
            from those of its unlabelled images that its classifier, as the last round
            left it, puts in one class with at least this probability, labelled with
            that class (self-training), together weighing as much as its labelled
            images (``PSEUDO_SHARE``); 1 (the default) leaves them out: measured on
            Fashion-MNIST at 1 % labelled, the confirmation bias of self-training cost
            more than the images gave.
        modality: what the client's model has and sends, and how it takes received
            pools into its own modality (:mod:`flower_synth.wire.variables`): clean items
            ``(c, s)`` by default; a
            :class:`~flower_synth.synthetic.composited.CompositedModality` for a client
            on composited images. A download with a pool the model lacks is refused
            (:class:`~flower_synth.wire.payload.PayloadError`).
        share_real: send the client's own labelled (and pseudo-labelled) examples in
            place of generated samples, drawn as the generator's would be: the ceiling
            of the exchange in experiments, never for a deployment (it discloses the
            client's data).
        label_shift: send every label shifted by this many classes (soft labels
            likewise): a rogue client whose samples' labels do not say what they show,
            for robustness experiments (0: the labels as generated).
        private_delta: the generator learns with differential privacy (a torch
            generator given ``dp``, or a :class:`~flower_synth.generative.MeanEmbedding`
            given ``release_noise``, which learns the received samples as public rows),
            and only what that covers leaves the client: the samples, whose labels
            follow the class counts released once with Gaussian noise (the
            mean-embedding's own release, or
            :func:`~flower_synth.privacy.release.release_counts`, spent in the
            generator's ``privacy_`` ledger); no soft labels (``soft_labels`` off), no
            real examples. The metrics carry ``dp_epsilon``, what the client has spent
            at this delta. None: no differential privacy.
        generator_trust: the weight of the client's own examples in its generator's
            training mixture (the received samples share the rest). 1 (the default):
            the generator learns from the client's data alone while its classifier
            still learns from what it receives, so no generator learns the blur of
            the others' samples; None: the round's ``self_trust``, as for the
            classifier (the mixture the exchange's equilibrium is stated for). Not read
            with ``classifier=None``: the generator is then the classifier and learns
            the classifier's mixture.
        personal_self_trust: keep a personal model beside the classifier: a second
            network of the classifier's architecture that learns the round's mixture
            with this weight on the client's own examples (lower: more of the
            received samples) and is what :meth:`evaluate` scores, while the
            classifier, learning with the round's ``self_trust``, still labels the
            samples the client sends. A classifier that learns more of the others'
            samples serves its own client better and labels that client's samples
            worse for the others (measured at Dirichlet 0.1: docs/RESULTS.md); the
            two networks keep both, at the cost of a second classifier's training a
            round. None (the default): one network does both.

    Raises:
        ValueError: a Bayes classifier over a generator without a posterior, an
            unknown ``sample_labels``, a negative ``partition_id``, or with
            ``private_delta`` anything that would leave the client without the
            privacy (a generator that is not private, soft labels, real examples, the
            generator's class prior as the label mix).
    """

    def __init__(
        self,
        generator: GenerativeModel,
        classifier: nn.Module | None,
        data: ClientData,
        state: RecordDict,
        *,
        partition_id: int,
        training: ClassifierTraining | None = None,
        sample_labels: str = "real",
        sample_dtype: str = "uint8",
        samples_per_round: int = 1000,
        fresh_fraction: float = 1.0,
        soft_labels: bool = True,
        soft_label_top_k: int = 0,
        sample_levels: int = 16,
        compression: str = "deflate",
        seed: int = 0,
        global_test: ImageDataset | None = None,
        device: Device = "cpu",
        pseudo_label_threshold: float = 1.0,
        modality: Modality | None = None,
        share_real: bool = False,
        label_shift: int = 0,
        private_delta: float | None = None,
        generator_trust: float | None = 1.0,
        personal_self_trust: float | None = None,
    ) -> None:
        if classifier is None and not isinstance(generator, DensityModel):
            raise ValueError(
                f"classifier=None classifies with the generator's posterior, which "
                f"{type(generator).__name__} does not have; give a torch classifier or use "
                "a generator with a class posterior (gaussian, gaussian-full, gmm)"
            )
        if sample_labels not in SAMPLE_LABELS:
            raise ValueError(f"sample_labels must be one of {SAMPLE_LABELS}, got {sample_labels!r}")
        if not 2 <= sample_levels <= 256:
            raise ValueError(f"sample_levels must lie in [2, 256], got {sample_levels}")
        check_compression(compression)
        if not 0.0 < fresh_fraction <= 1.0:
            raise ValueError(f"fresh_fraction must lie in (0, 1], got {fresh_fraction}")
        if not 0.0 <= pseudo_label_threshold <= 1.0:
            raise ValueError(
                f"pseudo_label_threshold must lie in [0, 1], got {pseudo_label_threshold}"
            )
        if generator_trust is not None and not 0.0 < generator_trust <= 1.0:
            raise ValueError(f"generator_trust must lie in (0, 1], got {generator_trust}")
        if personal_self_trust is not None:
            if not 0.0 < personal_self_trust <= 1.0:
                raise ValueError(
                    f"personal_self_trust must lie in (0, 1], got {personal_self_trust}"
                )
            if classifier is None:
                raise ValueError(
                    "personal_self_trust keeps a second network of the classifier's "
                    "architecture: give a torch classifier, or leave personal_self_trust None"
                )
        if private_delta is not None:
            check_private(generator, soft_labels, share_real, sample_labels)
        self._generator = generator
        self._generator_restored = False
        self.classifier = classifier
        self.data = data
        self.state = state
        self.partition_id = check_partition_id(partition_id)
        self.training = training or ClassifierTraining()
        self.sample_labels = sample_labels
        self.sample_dtype = sample_dtype
        self.samples_per_round = samples_per_round
        self.fresh_fraction = fresh_fraction
        self.soft_labels = soft_labels
        self.soft_label_top_k = soft_label_top_k
        self.sample_levels = sample_levels
        self.compression = compression
        self.seed = seed
        self.global_test = global_test
        self.device = check_device(device)
        self.pseudo_label_threshold = pseudo_label_threshold
        self.modality = modality or CleanModality()
        self.share_real = share_real
        self.label_shift = label_shift
        self.private_delta = private_delta
        self.generator_trust = generator_trust
        self.personal_self_trust = personal_self_trust
        self.num_classes = data.train.num_classes
        if classifier is not None:
            load_module(state, CLASSIFIER_STATE, classifier)
        self.personal: nn.Module | None = None
        if personal_self_trust is not None:
            self.personal = copy.deepcopy(classifier)
            load_module(state, PERSONAL_STATE, self.personal)

    @property
    def generator(self) -> GenerativeModel:
        """The generative model, restored from ``state`` when first used: scoring a
        torch classifier never reads it, and its state (Adam's moments included) is
        most of what a client keeps."""
        if not self._generator_restored:
            stored = load_arrays(self.state, GENERATOR_STATE)
            if stored is not None:
                self._generator.set_state(stored)
            self._generator_restored = True
        return self._generator

    @property
    def real_prior(self) -> np.ndarray:
        """The label mix of the client's real training split."""
        return self.data.train.label_mix()

    @property
    def trained_prior(self) -> np.ndarray | None:
        """The label mix the classifier last learnt with (None before the first fit)."""
        stored = load_arrays(self.state, PRIOR_STATE)
        return None if stored is None else stored["trained"]

    def scored_model(self) -> tuple[nn.Module | None, np.ndarray | None]:
        """The model :meth:`evaluate` scores, the personal one where the client keeps
        one, else the classifier, with the label mix it last learnt with (None before
        the first fit)."""
        if self.personal is None:
            return self.classifier, self.trained_prior
        stored = load_arrays(self.state, PRIOR_STATE)
        return self.personal, None if stored is None else stored.get("personal")

    def fit(self, arrays: list[np.ndarray], config: Mapping[str, Scalar]) -> Fitted:
        """One round on the wire (see the class docstring)."""
        seed = round_seed(self.seed, self.partition_id, server_round(config))
        generated, metrics = self.learn(
            self.receive(arrays, config, seed),
            self_trust=float(config.get("self_trust", 1.0)),
            num_samples=self.samples_asked(config),
            seed=seed,
            learning_rate=step_size(config, self.training.learning_rate),
        )
        return self.reply(generated, metrics, config)

    def receive(
        self, arrays: list[np.ndarray], config: Mapping[str, Scalar], seed: int
    ) -> SampleBatch | None:
        """The samples the server sent (validated; none in a first round), as this
        client's model takes them (its modality adopts them)."""
        if not arrays:
            return None
        train = self.data.train
        received = validate_payload(arrays, train.image_shape, self.num_classes, UNBOUNDED)
        model = self.modality.model_variables
        groups = download_groups(config.get("pool_variables"), len(received), model)
        return self.modality.adopt(received, groups, self.state, seed)

    def reply(
        self, generated: SampleBatch, metrics: dict[str, Scalar], config: Mapping[str, Scalar]
    ) -> Fitted:
        """What goes back: this round's samples encoded for the wire, the training-set
        size and the metrics, with how the classifier's inputs are normalised
        (``input_mean_<c>``, ``input_std_<c>``: a server classifier given no
        normalisation takes the clients')."""
        metrics["fresh_start"] = fresh_start(int(metrics["client_rounds"]), server_round(config))
        channels = self.data.train.image_shape[0]
        metrics |= normalization_metrics(self.data.normalization, channels)
        if self.modality.pool_variables != CLEAN:
            metrics["pool_variables"] = variables_code(self.modality.pool_variables)
            metrics["model_variables"] = variables_code(self.modality.model_variables)
        probabilities = generated.probabilities if self.soft_labels else None
        if probabilities is not None:
            probabilities = np.roll(probabilities, self.label_shift, axis=1)
        payload = encode_samples(
            generated.samples,
            (generated.labels + self.label_shift) % self.num_classes,
            self.sample_dtype,
            probabilities,
            self.soft_label_top_k,
            self.sample_levels,
            self.compression,
        )
        return Fitted(payload, self.data.num_images, metrics)

    def samples_asked(self, config: Mapping[str, Scalar]) -> int:
        """Samples to generate this round: the config's ``num_samples`` (else
        ``samples_per_round``), cut to ``sample_ratio`` times the training images,
        labelled or not (at least 1), where the config carries a ratio."""
        asked = int(config.get("num_samples", self.samples_per_round))
        ratio = float(config.get("sample_ratio", 0.0))
        if not 0.0 <= ratio < float("inf"):
            raise ValueError(f"config sample_ratio must be a finite number >= 0, got {ratio}")
        if ratio > 0:
            asked = min(asked, max(1, round(ratio * self.data.num_images)))
        return asked

    def learn(
        self,
        received: SampleBatch | None,
        self_trust: float,
        num_samples: int,
        seed: int,
        learning_rate: float | None = None,
    ) -> tuple[SampleBatch, dict[str, Scalar]]:
        """Learn from real + received data; return the new samples and the metrics
        ``partition_id``, ``received_samples``, ``client_rounds``,
        ``generated_samples``, ``label_agreement``, the seconds spent fitting the
        generator, training the classifier and generating (``generator_seconds``,
        ``classifier_seconds``, ``sampling_seconds``), ``train_loss`` with a torch
        classifier (``personal_train_loss`` with a personal model, whose training
        ``classifier_seconds`` includes), and ``pseudo_labelled`` for a partly labelled
        client."""
        prepared = self.prepare(received, self_trust)
        step = self.training.learning_rate if learning_rate is None else learning_rate
        if self.classifier is not None:
            prepared.metrics["train_loss"] = self._train_classifier(
                self.classifier, prepared, prepared.weights, seed, step
            )
            save_module(self.state, CLASSIFIER_STATE, self.classifier)
        if self.personal is not None and prepared.personal_weights is not None:
            prepared.metrics["personal_train_loss"] = self._train_classifier(
                self.personal, prepared, prepared.personal_weights, seed, step
            )
            save_module(self.state, PERSONAL_STATE, self.personal)
        return self.generate(prepared, num_samples, seed)

    def prepare(self, received: SampleBatch | None, self_trust: float) -> PreparedRound:
        """The first half of :meth:`learn`: the round's mixture of real and received
        examples, and the generator fitted on it."""
        started = time.perf_counter()
        real = self.own_examples()
        mixture = SampleBatch.concatenate(
            [real] if received is None else [real, received], real.samples.shape[1:]
        )
        num_received = len(mixture) - len(real)
        num_pseudo = len(real) - len(self.data.train)
        weights = mixture_weights(len(real), num_received, self_trust, num_pseudo)
        generator_weights = weights
        if self.generator_trust is not None and self.classifier is not None:
            generator_weights = mixture_weights(
                len(real), num_received, self.generator_trust, num_pseudo
            )
        if isinstance(self.generator, MeanEmbedding):  # the received samples are public
            public = np.arange(len(mixture)) >= len(real)
            self.generator.fit(mixture.samples, mixture.labels, generator_weights, public=public)
        else:
            self.generator.fit(mixture.samples, mixture.labels, sample_weight=generator_weights)
        metrics: dict[str, Scalar] = {
            "partition_id": self.partition_id,
            "received_samples": num_received,
            "client_rounds": count_round(self.state, PROGRESS_STATE),
            "generator_seconds": time.perf_counter() - started,
        }
        if self.data.num_unlabelled:
            metrics["pseudo_labelled"] = num_pseudo
        targets = mixture.targets(self.num_classes, self.training.hard_label_weight)
        personal_weights = None
        if self.personal_self_trust is not None:
            personal_weights = mixture_weights(
                len(real), num_received, self.personal_self_trust, num_pseudo
            )
        return PreparedRound(
            mixture, len(real), weights, targets, metrics, time.perf_counter(), personal_weights
        )

    def generate(
        self, prepared: PreparedRound, num_samples: int, seed: int
    ) -> tuple[SampleBatch, dict[str, Scalar]]:
        """The second half of :meth:`learn`, once the classifier has trained on the
        mixture: the state saved, this round's samples with the classifier's soft
        labels, and the round's metrics."""
        metrics = prepared.metrics
        trained = time.perf_counter()
        metrics["classifier_seconds"] = trained - prepared.fitted_at
        trained_prior = prepared.weights @ prepared.targets / prepared.weights.sum()
        if self.classifier is None:
            trained_prior = self.generator.class_prior_
        priors = {"trained": trained_prior}
        if prepared.personal_weights is not None:
            weights = prepared.personal_weights
            priors["personal"] = weights @ prepared.targets / weights.sum()
        save_arrays(self.state, PRIOR_STATE, priors)
        counts = self.label_counts(prepared.mixture.labels[: prepared.num_real], seed)
        save_arrays(self.state, GENERATOR_STATE, self.generator.get_state())
        if self.private_delta is not None:
            metrics["dp_epsilon"] = self.generator.privacy_.epsilon(self.private_delta)
        generated = self._generate(num_samples, seed, counts)
        metrics["sampling_seconds"] = time.perf_counter() - trained
        metrics["generated_samples"] = len(generated)
        metrics["label_agreement"] = float(
            np.mean(generated.probabilities.argmax(axis=1) == generated.labels)
        )
        return generated, metrics

    def _train_classifier(
        self,
        model: nn.Module,
        prepared: PreparedRound,
        weights: np.ndarray,
        seed: int,
        learning_rate: float,
    ) -> float:
        settings = self.training
        loader = make_loader(
            prepared.mixture.samples,
            prepared.targets,
            settings.batch_size,
            shuffle=True,
            seed=seed,
            weights=weights,
            draws=settings.epoch_draws(self.data.num_images),
            normalization=self.data.normalization,
        )
        return train(
            model,
            loader,
            settings.local_epochs,
            learning_rate,
            settings.momentum,
            temperature=settings.temperature,
            device=self.device,
        )

    def own_examples(self) -> SampleBatch:
        """The client's own training examples: its labelled images and, once its
        classifier has trained, the unlabelled ones it assigns a class with at least
        ``pseudo_label_threshold`` probability, with that class as their label."""
        labelled = SampleBatch(to_unit_range(self.data.train), self.data.train.labels)
        if (
            not self.data.num_unlabelled
            or self.pseudo_label_threshold >= 1.0
            or self.trained_prior is None  # read from the state only when it matters
        ):
            return labelled
        images = self.data.unlabelled.astype(np.float32) / 255.0
        probabilities = self.probabilities(images)
        confident = probabilities.max(axis=1) >= self.pseudo_label_threshold
        guessed = SampleBatch(images[confident], probabilities[confident].argmax(axis=1))
        return SampleBatch.concatenate([labelled, guessed], labelled.samples.shape[1:])

    def label_counts(self, own_labels: np.ndarray, seed: int) -> np.ndarray:
        """The class counts the samples' labels follow: those of ``own_labels``; for a
        private client, its counts as released (with noise) in its first round: by a
        :class:`~flower_synth.generative.MeanEmbedding` (its ``released_counts_``),
        else on their own."""
        counts = np.bincount(own_labels, minlength=self.num_classes)
        if self.private_delta is None:
            return counts
        if isinstance(self.generator, MeanEmbedding):  # counted in its release already
            released_counts = self.generator.released_counts_
            return released_counts if released_counts.sum() > 0 else np.ones(self.num_classes)
        released = load_arrays(self.state, RELEASED_COUNTS_STATE)
        if released is None:
            rng = np.random.default_rng(seed)
            released = {"counts": release_counts(counts, self.generator.privacy_, rng)}
            save_arrays(self.state, RELEASED_COUNTS_STATE, released)
        return released["counts"]

    def _generate(self, num_samples: int, seed: int, counts: np.ndarray) -> SampleBatch:
        """This round's samples (``fresh_fraction`` of them new, the rest the latest
        of the rolling pool), with the classifier's class probabilities; with
        ``sample_labels="real"``, their labels in the proportions of ``counts``."""
        rng = np.random.default_rng(seed)
        pool = load_arrays(self.state, POOL_STATE) if self.fresh_fraction < 1 else None
        reused = 0
        if pool is not None:
            wanted = num_samples - max(1, round(self.fresh_fraction * num_samples))
            reused = max(0, min(len(pool["labels"]), wanted))
        fresh = num_samples - reused
        labels = None
        if self.sample_labels == "real":
            labels = labels_in_proportion(fresh, counts, rng)
        if self.share_real:
            samples, labels = self._real_examples(fresh, labels, rng)
        else:
            samples, labels = self.generator.sample(fresh, labels=labels, random_state=rng)
        if self.fresh_fraction < 1:
            if reused:
                older = pool["samples"][-reused:].astype(np.float32) / 255
                samples = np.concatenate([older, samples])
                labels = np.concatenate([pool["labels"][-reused:], labels])
            stored = np.rint(np.clip(samples, 0.0, 1.0) * 255).astype(np.uint8)
            save_arrays(self.state, POOL_STATE, {"samples": stored, "labels": labels})
        return SampleBatch(samples, labels, self.probabilities(samples).astype(np.float32))

    def _real_examples(
        self, count: int, labels: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """``count`` of the client's own examples (with replacement where it has fewer),
        of the classes ``labels`` asks for where it holds them (``share_real``)."""
        own = self.own_examples()
        if labels is None:
            rows = rng.choice(len(own), count, replace=count > len(own))
            return own.samples[rows], own.labels[rows]
        rows = np.empty(count, dtype=np.int64)
        for label in np.unique(labels):
            wanted = np.flatnonzero(labels == label)
            pool = np.flatnonzero(own.labels == label)
            pool = pool if len(pool) else np.arange(len(own))
            rows[wanted] = rng.choice(pool, len(wanted), replace=len(wanted) > len(pool))
        return own.samples[rows], own.labels[rows]

    def probabilities(self, samples: np.ndarray, model: nn.Module | None = None) -> np.ndarray:
        """Class probabilities of images ``samples`` in [0, 1] under ``model`` (default:
        the classifier; without a torch classifier the generator's Bayes posterior),
        with its training prior."""
        model = self.classifier if model is None else model
        if model is None:
            return self.generator.predict_proba(samples)
        return class_probabilities(model, samples, self.data.normalization, self.device)

    def evaluate(self, arrays: list[np.ndarray], config: Mapping[str, Scalar]) -> Evaluated:
        """The loss on the local test split of the scored model (the personal one
        where the client keeps one, else the classifier) and its metrics:
        ``accuracy`` there with the real prior; ``global_accuracy`` (uniform prior) and
        ``global_accuracy_uncorrected`` on the global test set when one is given and
        the config's ``global_eval`` (default true) asks; ``partition_id``. A client
        that has not trained yet evaluates nothing: 0 examples and ``accuracy`` 0,
        which example-weighted aggregation leaves out."""
        model, trained = self.scored_model()
        if trained is None:
            return Evaluated(0.0, 0, {"accuracy": 0.0})
        metrics: dict[str, Scalar] = {"partition_id": self.partition_id}
        if bool(config.get("global_eval", True)) and self.global_test is not None:
            probabilities = self.probabilities(to_unit_range(self.global_test), model)
            labels = self.global_test.labels
            uniform = np.full(self.num_classes, 1.0 / self.num_classes)
            corrected = adjust_prior(probabilities, trained, uniform)
            metrics["global_accuracy"] = score(corrected, labels)[1]
            metrics["global_accuracy_uncorrected"] = score(probabilities, labels)[1]
            own = (self.real_prior >= OWN_CLASS_SHARE)[labels]
            for name, rows in (("own", own), ("other", ~own)):
                if rows.any():
                    metrics[f"global_accuracy_{name}_classes"] = score(
                        corrected[rows], labels[rows]
                    )[1]
        if len(self.data.test) == 0:
            return Evaluated(0.0, 0, metrics)
        probabilities = self.probabilities(to_unit_range(self.data.test), model)
        own = adjust_prior(probabilities, trained, self.real_prior)
        loss, metrics["accuracy"] = score(own, self.data.test.labels)
        return Evaluated(loss, len(self.data.test), metrics)
