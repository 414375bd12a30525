"""Typed view of the Flower run config (``[tool.flwr.app.config]`` in pyproject.toml)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from flower_synth.data.federated import DataSource, PartitionScheme
from flower_synth.data.labels import check_labelled_fraction
from flower_synth.data.partition import PARTITIONERS
from flower_synth.data.sources import DATASETS
from flower_synth.generative import DENSITY_GENERATORS, GENERATORS, PRIVATE_GENERATORS
from flower_synth.generative.cvae import LATENT_PRIORS
from flower_synth.generative.ode_sampling import SOLVERS
from flower_synth.learning.classifier_training import ClassifierTraining
from flower_synth.learning.devices import check_device
from flower_synth.models import MODELS
from flower_synth.models.dual_head import PREDICTION_HEADS
from flower_synth.privacy import PrivacyLedger, noise_for_budget
from flower_synth.prototypes import COVARIANCE_TYPES, PROTOTYPE_DTYPES
from flower_synth.prototypes.exchange import FUSION_TAU
from flower_synth.prototypes.gmm_terms import PSEUDO_WEIGHT, PULL_WEIGHT
from flower_synth.synthetic.equilibrium import TRUST_MODES, parse_trust_matrix
from flower_synth.synthetic.learner import SAMPLE_LABELS
from flower_synth.synthetic.pools import SAMPLE_ALLOCATIONS
from flower_synth.wire.deflate import COMPRESSIONS
from flower_synth.wire.payload import SAMPLE_DTYPES

STRATEGIES = ("fedavg", "fedprox", "synthetic", "gmm-prototype", "fedproto", "local-only")
# Strategies whose clients may differ in model size (``capacity``): nothing is averaged
# and no feature space is shared.
CAPACITY_STRATEGIES = ("synthetic", "local-only")
OWN_MODEL_STRATEGIES = ("gmm-prototype", "fedproto", "local-only")  # no global model
CLASSIFIERS = ("model", "bayes")
MODALITIES = ("clean", "composited")  # what a client's images are (modality_for)
# Keys that say where a run writes and whether it continues an earlier one, never
# what it computes: two runs that differ only in these produce the same numbers.
BOOKKEEPING_KEYS = ("output-dir", "resume", "keep-shared")
# Keys whose default is not what runs did before the key existed (added with another
# default, or changed since), with that earlier behaviour: a results file written
# without the key ran with this value.
BEFORE_KEY_EXISTED = {
    "feature-norm": False,
    "client-global-eval-every": 1,
    "download-ratio": 0.0,
    "sample-levels": 256,
    "compression": "none",
    "pool-max-age": 0,
    "server-max-draws": 0,
    "generator-min-batches": 8,
    "server-batch-size": 0,
    "server-learning-rate": 0.0,
    "classifier-epoch-scale": 1.0,
    "generator-epoch-scale": 1.0,
    "classifier-min-batches": 0,
    "client-global-eval-size": 0,
    "generator-self-trust": 0.0,
}


# Run-config keys only synthetic-sample exchange reads: a run of another strategy is
# the same run whatever they say (the comparison runner ignores them there).
SYNTHETIC_ONLY_KEYS = (
    "generator",
    "classifier",
    "samples-per-client",
    "sample-ratio",
    "download-budget",
    "download-ratio",
    "trust",
    "self-trust",
    "generator-self-trust",
    "personal-self-trust",
    "sample-dtype",
    "sample-levels",
    "compression",
    "pool-max-age",
    "pool-age-decay",
    "generator-epochs",
    "generator-epoch-scale",
    "fresh-sample-fraction",
    "latent-dim",
    "generator-hidden",
    "generator-batch-size",
    "generator-min-batches",
    "generator-learning-rate",
    "latent-prior",
    "kl-weight",
    "generator-channels",
    "generator-steps",
    "generator-solver",
    "guidance-scale",
    "class-dropout",
    "hjb-weight",
    "embedding-features",
    "embedding-length-scale",
    "embedding-steps",
    "sample-labels",
    "sample-allocation",
    "soft-labels",
    "soft-label-top-k",
    "distill-temperature",
    "hard-label-weight",
    "classifier-epoch-scale",
    "classifier-min-batches",
    "server-epochs",
    "server-max-draws",
    "server-batch-size",
    "server-learning-rate",
    "replay-rounds",
    "server-weight-decay",
    "server-lr-decay",
    "record-pool-means",
    "generation-quality",
    "pseudo-label-threshold",
    "share-real",
    "label-shift",
    "mask-steps",
)
# Run-config keys only GMM prototypes read.
GMM_ONLY_KEYS = (
    "dr-lambda",
    "prediction-head",
    "gmm-components",
    "gmm-covariance",
    "gmm-min-samples",
    "fusion-tau",
    "fusion-max-components",
    "pseudo-per-class",
    "pseudo-weight",
    "pull-weight",
    "restore-prior",
    "feature-norm",
)
# Keys that one strategy alone reads, by strategy: a run of any other strategy is the
# same run whatever they say.
STRATEGY_ONLY_KEYS = {"synthetic": SYNTHETIC_ONLY_KEYS, "gmm-prototype": GMM_ONLY_KEYS}
# Keys that several strategies read, with the strategies that do (for the others a run
# is the same whatever they say): clients that keep their own models score them on
# the global test set; weight-averaging baselines have nothing of their own to score.
KEY_READERS = dict.fromkeys(
    ("client-global-eval", "client-global-eval-every", "client-global-eval-size"),
    ("synthetic", *OWN_MODEL_STRATEGIES),
) | {"partition-handover": ("synthetic", "gmm-prototype", "fedproto")}
KEY_READERS |= dict.fromkeys(
    ("dp-epsilon", "dp-delta", "dp-noise-multiplier", "dp-max-grad-norm"),
    ("synthetic", "gmm-prototype", "fedavg", "fedprox"),
)


def keys_not_read_by(strategy: str) -> set[str]:
    """Run-config keys ``strategy`` never reads (:data:`STRATEGY_ONLY_KEYS` of the others
    and :data:`KEY_READERS` it is not among)."""
    others = (keys for owner, keys in STRATEGY_ONLY_KEYS.items() if owner != strategy)
    unread = {key for key, readers in KEY_READERS.items() if strategy not in readers}
    return unread.union(*others)


@dataclass(frozen=True)
class RunSettings:
    """Every knob of a run. Field ``foo_bar`` is run-config key ``foo-bar``.

    The number of clients is not a setting: it comes from the federation
    (``num-supernodes``) in simulation and from each node's ``num-partitions`` in a
    deployment.
    """

    strategy: str = "fedavg"
    dataset: str = "fashion-mnist"
    data_dir: str = ""
    download: bool = False
    partitioner: str = "dirichlet"
    dirichlet_alpha: float = 0.5
    classes_per_client: int = 2
    local_test_fraction: float = 0.2
    imbalance_factor: float = 1.0
    examples_per_class: int = 0
    labelled_fraction: str = "1"
    modality: str = "clean"
    validation: bool = False
    num_server_rounds: int = 3
    centralized_epochs: int = 1
    fraction_fit: float = 1.0
    fraction_evaluate: float = 1.0
    min_available_clients: int = 2
    local_epochs: int = 2
    batch_size: int = 64
    learning_rate: float = 0.01
    momentum: float = 0.9
    proximal_mu: float = 0.01
    seed: int = 0
    output_dir: str = "results"
    resume: bool = False
    model: str = "default"
    device: str = "cpu"
    # synthetic-sample exchange
    capacity: str = "1"
    generator: str = "cvae"
    classifier: str = "model"
    samples_per_client: int = 1000
    sample_ratio: float = 0.2
    download_budget: int = 3000
    download_ratio: float = 0.6
    trust: str = "uniform"
    self_trust: float = 0.5
    generator_self_trust: float = 1.0
    personal_self_trust: float = 0.0
    sample_dtype: str = "uint8"
    sample_levels: int = 16
    compression: str = "deflate"
    pool_max_age: int = 20
    pool_age_decay: float = 1.0
    generator_epochs: int = 1
    generator_epoch_scale: float = 1.5
    fresh_sample_fraction: float = 1.0
    latent_dim: int = 20
    generator_hidden: int = 256
    generator_batch_size: int = 256
    generator_min_batches: int = 1
    generator_learning_rate: float = 0.003
    latent_prior: str = "class"
    kl_weight: float = 1.0
    generator_channels: int = 16
    generator_steps: int = 8
    generator_solver: str = "euler"
    guidance_scale: float = 1.0
    class_dropout: float = 0.0
    hjb_weight: float = 0.0
    embedding_features: int = 10_000
    embedding_length_scale: float = 5.0
    embedding_steps: int = 100
    dp_epsilon: float = 0.0
    dp_delta: float = 1e-5
    dp_noise_multiplier: float = 0.0
    dp_max_grad_norm: float = 1.0
    sample_labels: str = "real"
    sample_allocation: str = "ratio"
    soft_labels: bool = True
    soft_label_top_k: int = 0
    distill_temperature: float = 1.0
    hard_label_weight: float = 0.3
    classifier_epoch_scale: float = 0.5
    classifier_min_batches: int = 8
    server_epochs: int = 3
    server_max_draws: int = 20_000
    server_batch_size: int = 256
    server_learning_rate: float = 0.04
    replay_rounds: int = 5
    server_weight_decay: float = 5e-4
    server_lr_decay: float = 1.0
    client_global_eval: bool = True
    client_global_eval_every: int = 5
    client_global_eval_size: int = 2_000
    max_missed_rounds: int = 3
    partition_handover: bool = True
    record_pool_means: bool = False
    keep_shared: bool = False
    generation_quality: bool = False
    pseudo_label_threshold: float = 1.0
    share_real: str = "false"
    label_shift: str = "0"
    mask_steps: int = 0
    # prototype strategies
    prototype_dtype: str = "float16"
    dr_lambda: float = 1.0
    prediction_head: str = "ce"
    gmm_components: int = 3
    gmm_covariance: str = "diag"
    gmm_min_samples: int = 10
    fusion_tau: float = FUSION_TAU
    fusion_max_components: int = 5
    pseudo_per_class: int = 0
    pseudo_weight: float = PSEUDO_WEIGHT
    pull_weight: float = PULL_WEIGHT
    restore_prior: bool = False
    feature_norm: bool = True
    proto_lambda: float = 1.0

    def __post_init__(self) -> None:
        _check_choice("strategy", self.strategy, STRATEGIES)
        _check_choice("dataset", self.dataset, DATASETS)
        _check_choice("partitioner", self.partitioner, PARTITIONERS)
        _check_choice("model", self.model, MODELS)
        check_device(self.device, available=False)
        for key in ("fraction_fit", "fraction_evaluate"):
            value = getattr(self, key)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{_key(key)} must lie in (0, 1], got {value}")
        for key in (
            "num_server_rounds",
            "centralized_epochs",
            "local_epochs",
            "batch_size",
            "min_available_clients",
            "classes_per_client",
        ):
            if getattr(self, key) < 1:
                raise ValueError(f"{_key(key)} must be >= 1, got {getattr(self, key)}")
        for key, value in vars(self).items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{_key(key)} must be a finite number, got {value}")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be an integer in [0, 2**32), got {self.seed}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(
                f"momentum must lie in [0, 1) (SGD diverges beyond), got {self.momentum}"
            )
        if self.learning_rate <= 0:
            raise ValueError(f"learning-rate must be > 0, got {self.learning_rate}")
        if self.dirichlet_alpha <= 0:
            raise ValueError(f"dirichlet-alpha must be > 0, got {self.dirichlet_alpha}")
        if self.imbalance_factor < 1:
            raise ValueError(
                f"imbalance-factor must be >= 1 (1: no long tail), got {self.imbalance_factor}"
            )
        if self.partitioner == "per-class" and self.examples_per_class < 1:
            raise ValueError(
                f"the per-class partitioner needs examples-per-class >= 1, got "
                f"{self.examples_per_class}"
            )
        if not 0.0 <= self.local_test_fraction < 1.0:
            raise ValueError(
                f"local-test-fraction must lie in [0, 1), got {self.local_test_fraction}"
            )
        self._check_capacity()
        self._check_labelled_fraction()
        for kind in per_partition(self.modality):
            _check_choice("modality", kind, MODALITIES)
        for kind in per_partition(self.share_real):
            _check_choice("share-real", kind, ("true", "false"))
        shifts = _numbers("label-shift", self.label_shift, " (classes to shift labels by)")
        if any(shift < 0 or shift != int(shift) for shift in shifts):
            raise ValueError(f"label-shift must list whole numbers >= 0, got {self.label_shift!r}")
        if self.mask_steps < 0:
            raise ValueError(f"mask-steps must be >= 0, got {self.mask_steps}")
        if not 0.0 <= self.pseudo_label_threshold <= 1.0:
            raise ValueError(
                f"pseudo-label-threshold must lie in [0, 1] (1: unlabelled images unused), "
                f"got {self.pseudo_label_threshold}"
            )
        for kind in per_partition(self.generator):
            _check_choice("generator", kind, GENERATORS)
        for kind in per_partition(self.classifier):
            _check_choice("classifier", kind, CLASSIFIERS)
        _check_choice("sample-dtype", self.sample_dtype, SAMPLE_DTYPES)
        _check_choice("latent-prior", self.latent_prior, LATENT_PRIORS)
        _check_choice("sample-labels", self.sample_labels, SAMPLE_LABELS)
        _check_choice("sample-allocation", self.sample_allocation, SAMPLE_ALLOCATIONS)
        _check_choice("compression", self.compression, COMPRESSIONS)
        _check_choice("generator-solver", self.generator_solver, SOLVERS)
        if not 0.0 <= self.class_dropout < 1.0:
            raise ValueError(f"class-dropout must lie in [0, 1), got {self.class_dropout}")
        if self.guidance_scale != 1.0 and self.class_dropout == 0.0:
            raise ValueError(
                f"guidance-scale {self.guidance_scale} needs the unconditional velocity: set "
                "class-dropout > 0 (e.g. 0.1), or keep guidance-scale = 1"
            )
        self._check_privacy()
        if not 2 <= self.sample_levels <= 256:
            raise ValueError(f"sample-levels must lie in [2, 256], got {self.sample_levels}")
        if not 0.0 < self.sample_ratio:
            raise ValueError(f"sample-ratio must be a finite number > 0, got {self.sample_ratio}")
        if not 0.0 <= self.download_ratio:
            raise ValueError(
                f"download-ratio must be a finite number >= 0, got {self.download_ratio}"
            )
        if not 0.0 < self.pool_age_decay <= 1.0:
            raise ValueError(f"pool-age-decay must lie in (0, 1], got {self.pool_age_decay}")
        self._check_bayes_classifiers()
        if self.embedding_features < 2 or self.embedding_features % 2:
            raise ValueError(
                f"embedding-features must be an even number >= 2 (cos and sin), got "
                f"{self.embedding_features}"
            )
        if not self.embedding_length_scale > 0:
            raise ValueError(
                f"embedding-length-scale must be > 0, got {self.embedding_length_scale}"
            )
        if self.generator_learning_rate <= 0:
            raise ValueError(
                f"generator-learning-rate must be > 0, got {self.generator_learning_rate}"
            )
        if not 0.0 <= self.hard_label_weight <= 1.0:
            raise ValueError(f"hard-label-weight must lie in [0, 1], got {self.hard_label_weight}")
        if not 0.0 < self.generator_epoch_scale:
            raise ValueError(
                f"generator-epoch-scale must be a finite number > 0, got "
                f"{self.generator_epoch_scale}"
            )
        if not 0.0 < self.fresh_sample_fraction <= 1.0:
            raise ValueError(
                f"fresh-sample-fraction must lie in (0, 1], got {self.fresh_sample_fraction}"
            )
        if self.classifier_epoch_scale <= 0:
            raise ValueError(
                f"classifier-epoch-scale must be > 0, got {self.classifier_epoch_scale}"
            )
        if self.classifier_min_batches < 0:
            raise ValueError(
                f"classifier-min-batches must be >= 0, got {self.classifier_min_batches}"
            )
        if self.distill_temperature <= 0:
            raise ValueError(f"distill-temperature must be > 0, got {self.distill_temperature}")
        if not 0.0 < self.server_lr_decay <= 1.0:
            raise ValueError(f"server-lr-decay must lie in (0, 1], got {self.server_lr_decay}")
        if self.trust not in TRUST_MODES:
            parse_trust_matrix(self.trust)
        if not 0.0 < self.self_trust <= 1.0:
            raise ValueError(f"self-trust must lie in (0, 1], got {self.self_trust}")
        if not 0.0 <= self.generator_self_trust <= 1.0:
            raise ValueError(
                "generator-self-trust must lie in [0, 1] (0: the round's self-trust), got "
                f"{self.generator_self_trust}"
            )
        if not 0.0 <= self.personal_self_trust <= 1.0:
            raise ValueError(
                "personal-self-trust must lie in [0, 1] (0: no personal model), got "
                f"{self.personal_self_trust}"
            )
        for key in (
            "samples_per_client",
            "generator_epochs",
            "latent_dim",
            "generator_hidden",
            "generator_batch_size",
            "generator_min_batches",
            "generator_channels",
            "generator_steps",
            "embedding_steps",
            "replay_rounds",
            "client_global_eval_every",
        ):
            if getattr(self, key) < 1:
                raise ValueError(f"{_key(key)} must be >= 1, got {getattr(self, key)}")
        _check_choice("prototype-dtype", self.prototype_dtype, PROTOTYPE_DTYPES)
        _check_choice("prediction-head", self.prediction_head, PREDICTION_HEADS)
        _check_choice("gmm-covariance", self.gmm_covariance, COVARIANCE_TYPES)
        if self.gmm_components < 1 or self.gmm_min_samples < 2:
            raise ValueError("gmm-components must be >= 1 and gmm-min-samples >= 2")
        for key in (
            "proximal_mu",
            "examples_per_class",
            "download_budget",
            "pool_max_age",
            "server_max_draws",
            "server_batch_size",
            "server_learning_rate",
            "server_epochs",
            "fusion_max_components",
            "pseudo_per_class",
            "pseudo_weight",
            "pull_weight",
            "dr_lambda",
            "fusion_tau",
            "proto_lambda",
            "soft_label_top_k",
            "max_missed_rounds",
            "kl_weight",
            "server_weight_decay",
            "hjb_weight",
            "guidance_scale",
            "client_global_eval_size",
        ):
            if getattr(self, key) < 0:
                raise ValueError(f"{_key(key)} must be >= 0, got {getattr(self, key)}")

    def _check_capacity(self) -> None:
        """``capacity`` is a per-partition list of positive scales, and other than 1
        only where clients share no weights or features."""
        scales = _numbers("capacity", self.capacity)
        if any(not math.isfinite(scale) or scale <= 0 for scale in scales):
            raise ValueError(f"capacity scales must be finite and > 0, got {self.capacity!r}")
        if any(scale != 1 for scale in scales) and self.strategy not in CAPACITY_STRATEGIES:
            raise ValueError(
                f"capacity {self.capacity!r} gives clients models of different sizes, which "
                f"{self.strategy!r} cannot exchange; use it with "
                f"{' or '.join(CAPACITY_STRATEGIES)}, or capacity='1'"
            )

    def _check_labelled_fraction(self) -> None:
        """``labelled-fraction`` is a per-partition list of shares in (0, 1]."""
        for fraction in _numbers("labelled-fraction", self.labelled_fraction, " in (0, 1]"):
            check_labelled_fraction(fraction)

    def labelled_fraction_for(self, partition_id: int) -> float:
        """The share of ``partition_id``'s training images whose labels it knows
        (``labelled-fraction``, round-robin; the others are unlabelled)."""
        return float(self.kind_for(self.labelled_fraction, partition_id))

    def share_real_for(self, partition_id: int) -> bool:
        """Whether ``partition_id`` sends its own labelled examples in place of
        generated samples (``share-real``, round-robin: the exchange's ceiling)."""
        return self.kind_for(self.share_real, partition_id) == "true"

    def label_shift_for(self, partition_id: int) -> int:
        """Classes by which ``partition_id`` shifts the labels it sends
        (``label-shift``, round-robin; 0: none): a rogue client, for experiments."""
        return int(float(self.kind_for(self.label_shift, partition_id)))

    def modality_for(self, partition_id: int) -> str:
        """What ``partition_id``'s images are (``modality``, round-robin): ``clean``
        items, or ``composited`` over backgrounds
        (:mod:`flower_synth.data.composite`)."""
        return self.kind_for(self.modality, partition_id)

    def global_eval_round(self, server_round: int) -> bool:
        """Whether ``server_round`` is one in which the global test set is scored:
        divisible by ``client-global-eval-every``, or the last round."""
        every, last = self.client_global_eval_every, self.num_server_rounds
        return server_round % every == 0 or server_round == last

    def capacity_for(self, partition_id: int) -> float:
        """The model-size scale of ``partition_id`` (``capacity``, round-robin): it
        multiplies the generator's ``latent-dim`` and ``generator-hidden`` and the
        classifier's width (:func:`~flower_synth.models.build_model`)."""
        return float(self.kind_for(self.capacity, partition_id))

    @property
    def private(self) -> bool:
        """Whether the clients' generators train with differential privacy
        (``dp-epsilon`` or ``dp-noise-multiplier`` set)."""
        return self.dp_epsilon > 0 or self.dp_noise_multiplier > 0

    def dp_noise(self, sample_rate: float, steps: int, spent: PrivacyLedger | None = None) -> float:
        """The noise multiplier of a private run's Gaussian mechanisms: ``dp-noise-multiplier``,
        else the noise with which ``steps`` of them at ``sample_rate``, after what
        ``spent`` holds, spend ``dp-epsilon`` at ``dp-delta``
        (:func:`~flower_synth.privacy.noise_for_budget`)."""
        if self.dp_noise_multiplier > 0:
            return self.dp_noise_multiplier
        return noise_for_budget(self.dp_epsilon, self.dp_delta, sample_rate, steps, spent)

    def _check_privacy(self) -> None:
        """DP settings in range, and only where what leaves a client can be covered."""
        for key in ("dp_epsilon", "dp_noise_multiplier"):
            if getattr(self, key) < 0:
                raise ValueError(f"{_key(key)} must be >= 0 (0: off), got {getattr(self, key)}")
        if not 0.0 < self.dp_delta < 1.0:
            raise ValueError(f"dp-delta must lie in (0, 1), got {self.dp_delta}")
        if not self.dp_max_grad_norm > 0:
            raise ValueError(f"dp-max-grad-norm must be > 0, got {self.dp_max_grad_norm}")
        if not self.private:
            return
        if self.strategy in ("fedavg", "fedprox"):
            return  # Flower's central DP: every client's update clipped, the mean noised
        if self.strategy == "gmm-prototype":
            if self.gmm_covariance not in ("diag", "spherical"):
                raise ValueError(
                    "a private GMM-prototype client releases diagonal Gaussians: set "
                    "gmm-covariance to diag with dp-epsilon"
                )
            return
        if self.strategy != "synthetic":
            raise ValueError(
                f"dp-epsilon / dp-noise-multiplier make synthetic-exchange generators, "
                f"GMM prototypes and FedAvg / FedProx updates private; strategy "
                f"{self.strategy!r} has no DP"
            )
        for kind in per_partition(self.generator):
            if kind not in PRIVATE_GENERATORS:
                raise ValueError(
                    f"generator {kind!r} cannot train with differential privacy; with "
                    f"dp-epsilon use one of {PRIVATE_GENERATORS}"
                )
        if self.hjb_weight > 0:
            raise ValueError("hjb-weight must be 0 with dp-epsilon (DP-SGD cannot take it)")
        if "mean-embedding" in per_partition(self.generator) and any(
            fraction < 1 for fraction in _numbers("labelled-fraction", self.labelled_fraction)
        ):
            raise ValueError(
                "a private mean-embedding releases its client's data once, and a partly "
                "labelled client's pseudo-labels change every round: use labelled-fraction "
                "1, or a DP-SGD generator (cvae, cvae-conv, flow, score)"
            )
        if "true" in per_partition(self.share_real):
            raise ValueError("share-real sends real images: it cannot be set with dp-epsilon")

    def _check_bayes_classifiers(self) -> None:
        """``classifier='bayes'`` needs a generator with a class posterior on the same
        partitions (lists repeat round-robin, so every pairing is checked)."""
        generators, classifiers = per_partition(self.generator), per_partition(self.classifier)
        for index in range(math.lcm(len(generators), len(classifiers))):
            generator = self.kind_for(self.generator, index)
            if (
                self.kind_for(self.classifier, index) == "bayes"
                and generator not in DENSITY_GENERATORS
            ):
                raise ValueError(
                    f"classifier 'bayes' classifies with the generator's posterior, which "
                    f"{generator!r} does not have (partition {index} of the lists); pair "
                    f"'bayes' with one of {', '.join(DENSITY_GENERATORS)} or use 'model'"
                )

    @property
    def data_source(self) -> DataSource:
        """The dataset, where its files are and whether a validation split replaces the
        test set (``dataset``, ``data-dir``, ``download``, ``validation``)."""
        return DataSource(self.dataset, self.data_dir, self.download, self.validation)

    def check_federation(self, num_partitions: int) -> None:
        """``ValueError`` for settings that cannot fit a federation of
        ``num_partitions`` clients: an explicit trust matrix of another size."""
        if self.trust not in TRUST_MODES:
            size = len(parse_trust_matrix(self.trust))
            if size != num_partitions:
                raise ValueError(
                    f"the trust matrix has {size} rows but the federation has "
                    f"{num_partitions} partitions; give one row (and column) per partition"
                )

    def partition_scheme(self, num_partitions: int) -> PartitionScheme:
        """How the run splits the dataset over ``num_partitions`` clients."""
        return PartitionScheme(
            self.data_source,
            num_partitions,
            partitioner=self.partitioner,
            seed=self.seed,
            dirichlet_alpha=self.dirichlet_alpha,
            classes_per_client=self.classes_per_client,
            local_test_fraction=self.local_test_fraction,
            imbalance_factor=self.imbalance_factor,
            examples_per_class=self.examples_per_class,
        )

    @property
    def pool_lifetime(self) -> int | None:
        """``pool-max-age`` for the strategy (0: pools are kept until replaced)."""
        return self.pool_max_age or None

    @property
    def departure(self) -> int | None:
        """``max_missed_rounds`` for the strategies (``max-missed-rounds``; 0: never)."""
        return self.max_missed_rounds or None

    def sgd_params(self) -> dict[str, Any]:
        """``batch_size``, ``learning_rate``, ``momentum``, ``seed`` and ``device``: the
        keyword arguments every trainer here (clients, server classifier) takes."""
        return {
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "momentum": self.momentum,
            "seed": self.seed,
            "device": self.device,
        }

    def classifier_training(self) -> ClassifierTraining:
        """The clients' local SGD as every learner takes it (``training=``)."""
        return ClassifierTraining(
            local_epochs=self.local_epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            momentum=self.momentum,
            temperature=self.distill_temperature,
            hard_label_weight=self.hard_label_weight,
            epoch_scale=self.classifier_epoch_scale,
            min_batches=self.classifier_min_batches,
        )

    def server_sgd_params(self) -> dict[str, Any]:
        """:meth:`sgd_params` for the synthetic exchange's server classifier: its own
        ``server-batch-size`` and ``server-learning-rate`` (0: the clients')."""
        return self.sgd_params() | {
            "batch_size": self.server_batch_size or self.batch_size,
            "learning_rate": self.server_learning_rate or self.learning_rate,
        }

    def kind_for(self, spec: str, partition_id: int) -> str:
        """The entry of a comma-separated per-partition list (``generator``,
        ``classifier``, ``capacity``, ``labelled-fraction``, ``modality``, ``share-real``,
        ``label-shift``) that applies to
        ``partition_id``: entries repeat round-robin."""
        kinds = per_partition(spec)
        return kinds[partition_id % len(kinds)]

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> RunSettings:
        """Build settings from a Flower run config; keys this class does not know are
        ignored (a host project may carry its own), known keys are type-checked."""
        values: dict[str, Any] = {}
        for field in fields(cls):
            key = _key(field.name)
            if key in run_config:
                values[field.name] = _coerce(key, run_config[key], type(field.default))
        return cls(**values)

    def to_run_config(self) -> dict[str, Any]:
        """The settings as a kebab-case run config (what results files record)."""
        return {_key(name): value for name, value in dataclasses.asdict(self).items()}


def per_partition(spec: str) -> list[str]:
    """``"cvae,gaussian"`` -> ``["cvae", "gaussian"]``."""
    return [kind.strip() for kind in spec.split(",")]


def _numbers(key: str, spec: str, meaning: str = "") -> list[float]:
    """The numbers of the per-partition list ``spec`` of run-config key ``key``, or a
    ``ValueError`` that says what the list must hold (numbers, and ``meaning``)."""
    try:
        return [float(value) for value in per_partition(spec)]
    except ValueError:
        raise ValueError(
            f"{key} must be a comma-separated list of numbers{meaning}, got {spec!r}"
        ) from None


def _key(field_name: str) -> str:
    return field_name.replace("_", "-")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


def _coerce(key: str, value: Any, expected: type) -> Any:
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is str and isinstance(value, bool):
        return str(value).lower()  # a one-entry per-partition list given as a bool
    if expected is str and isinstance(value, int | float):
        return str(value)  # a one-entry per-partition list given as a number
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise TypeError(
            f"run-config key {key!r} must be {expected.__name__}, got {value!r} "
            f"({type(value).__name__}); in --run-config, quote strings: {key}='...'"
        )
    return value
