"""The Flower ServerApp (Message API): builds the configured strategy, runs it and
records the run."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import flwr
import numpy as np
import torch
from flwr.app import ArrayRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideFixedClipping,
    FedAvg,
    FedProx,
    Strategy,
)
from torch import nn

from flower_synth.app.config import OWN_MODEL_STRATEGIES, RunSettings
from flower_synth.app.quality import RealFeatures, ReferenceClassifier, generation_quality_against
from flower_synth.app.results_files import results_file_name
from flower_synth.app.run_files import (
    OwnedFile,
    checkpoint_of,
    new_results_file,
    resumable_results,
)
from flower_synth.app.shared_files import keep_model, keep_pools, shared_of
from flower_synth.data import ImageDataset, load_global_test, load_global_train
from flower_synth.exchange.metrics import (
    client_evaluation,
    client_fit_metrics,
    clients_as_global_evaluation,
    for_messages,
    personalized_accuracy,
    stateful_client_fit_metrics,
)
from flower_synth.exchange.recorder import RunRecorder
from flower_synth.learning.devices import check_device
from flower_synth.learning.fedavg_learner import UNIT_WEIGHT_KEY
from flower_synth.learning.training import evaluate, get_weights, set_weights, to_unit_range
from flower_synth.models import build_dual_head_model, build_model, count_parameters
from flower_synth.serverapp.strategy import (
    FedProtoStrategy,
    GMMPrototypeStrategy,
    LocalOnlyStrategy,
    MeteredStrategy,
    SyntheticSampleStrategy,
)
from flower_synth.serverapp.strategy.model_free import EvaluateFn
from flower_synth.synthetic.equilibrium import TRUST_MODES, parse_trust_matrix
from flower_synth.synthetic.learned_trust import LearnedTrust
from flower_synth.synthetic.server import PoolCallback
from flower_synth.synthetic.server_classifier import PooledClassifier

app = ServerApp()


def global_evaluate_fn(model: nn.Module, test: ImageDataset) -> EvaluateFn:
    """Server-side evaluation of the global weights on the global test set."""

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        set_weights(model, arrays.to_numpy_ndarrays())
        loss, accuracy = evaluate(model, test)
        return MetricRecord({"global_accuracy": accuracy, "loss": loss})

    return evaluate_fn


def sampling(settings: RunSettings) -> dict:
    """Node sampling of every strategy (the run config's fractions; any one node may
    train or evaluate once ``min-available-clients`` are connected)."""
    return {
        "fraction_train": settings.fraction_fit,
        "fraction_evaluate": settings.fraction_evaluate,
        "min_train_nodes": 1,
        "min_evaluate_nodes": 1,
        "min_available_nodes": settings.min_available_clients,
    }


def federation_examples(settings: RunSettings) -> int:
    """The training examples the whole federation holds: the partitions split the
    dataset's training set, so no client's claimed size can exceed it."""
    return len(load_global_train(settings.data_source))


def build_baseline_strategy(settings: RunSettings) -> Strategy:
    """flwr's own Message-API FedAvg or FedProx; with ``dp-epsilon``, inside Flower's
    central DP (:func:`with_central_privacy`)."""
    common = sampling(settings) | {
        "train_metrics_aggr_fn": for_messages(client_fit_metrics),
        "evaluate_metrics_aggr_fn": for_messages(personalized_accuracy),
    }
    if settings.private:
        common["weighted_by_key"] = UNIT_WEIGHT_KEY  # equal weights, as the noise assumes
    if settings.strategy == "fedprox":
        strategy: Strategy = FedProx(proximal_mu=settings.proximal_mu, **common)
    else:
        strategy = FedAvg(**common)
    return with_central_privacy(strategy, settings) if settings.private else strategy


def with_central_privacy(strategy: Strategy, settings: RunSettings) -> Strategy:
    """Flower's central DP with server-side fixed clipping around ``strategy``: every
    client's update clipped to ``dp-max-grad-norm``, Gaussian noise on their equal-weight
    mean, with ``dp-noise-multiplier`` or the noise that spends ``dp-epsilon`` at
    ``dp-delta`` over the run's rounds. Client-level DP (a whole client's data added or
    removed), without amplification by sampling: ``fraction-fit`` of
    ``min-available-clients`` clients a round."""
    noise = settings.dp_noise(1.0, settings.num_server_rounds)
    sampled = max(1, round(settings.fraction_fit * settings.min_available_clients))
    return DifferentialPrivacyServerSideFixedClipping(
        strategy,
        noise_multiplier=noise,
        clipping_norm=settings.dp_max_grad_norm,
        num_sampled_clients=sampled,
    )


REFERENCE_CACHE = Path.home() / ".cache" / "flower-synth" / "reference"
REFERENCE_EPOCHS = 3
REFERENCE_SEED = 0  # one judge for every run, so figures compare across seeds


def generation_judge(settings: RunSettings) -> ReferenceClassifier | None:
    """With ``generation-quality``, the reference classifier that scores the clients'
    samples: the default CNN trained once (``REFERENCE_EPOCHS``, ``REFERENCE_SEED``)
    on all real training images and cached under ``REFERENCE_CACHE``."""
    if not settings.generation_quality:
        return None
    return ReferenceClassifier.load_or_train(
        settings.dataset,
        load_global_train(settings.data_source),
        REFERENCE_CACHE,
        epochs=REFERENCE_EPOCHS,
        seed=REFERENCE_SEED,
    )


def partition_name(pool_key: str) -> str:
    """The partition id a pool is kept under (``partition-3`` -> ``3``)."""
    return pool_key.removeprefix("partition-")


def pool_quality(judge: ReferenceClassifier, pools: dict, test: RealFeatures) -> dict:
    """Every pool's :func:`~flower_synth.app.quality.generation_quality_against` the test
    set's features (Fréchet distance overall and per class in the judge's feature space,
    the judge's accuracy on the samples' conditioning labels), keyed by partition id."""
    scores = {}
    for key, pool in pools.items():
        batch = pool.decode()
        quality = generation_quality_against(judge, batch.samples, batch.labels, test)
        scores[partition_name(key)] = quality.as_metrics()
    return scores


def record_pools(
    recorder: RunRecorder,
    num_classes: int,
    means: bool,
    quality: Callable[[int, dict], dict] | None = None,
    learned: LearnedTrust | None = None,
) -> PoolCallback:
    """``on_pools`` callback: record the label agreement each client reported this
    round, with ``means`` every pool's mean sample and label frequencies (the mean
    parameters the equilibrium analysis compares), where ``quality(round, pools)``
    answers, its figures (``generation_quality_by_client`` and their means over
    clients), with ``learned`` trust every source's weight and last agreement with
    the others' pools (``learned_trust_by_client``, ``agreement_by_client``), and
    the privacy each private client has spent (``dp_epsilon_by_client``), keyed by
    partition id."""

    def callback(server_round: int, pools: dict, metrics: dict) -> None:
        values: dict = {
            "label_agreement_by_client": {
                partition_name(key): m["label_agreement"]
                for key, m in metrics.items()
                if "label_agreement" in m
            }
        }
        spent = {
            partition_name(k): m["dp_epsilon"] for k, m in metrics.items() if "dp_epsilon" in m
        }
        if spent:
            values["dp_epsilon_by_client"] = spent
        if means:
            values["pool_means"] = {
                partition_name(key): pool.decode()
                .samples.reshape(len(pool), -1)
                .mean(axis=0, dtype=np.float64)
                .tolist()
                for key, pool in pools.items()
            }
            values["pool_label_frequencies"] = {
                partition_name(key): (
                    np.bincount(pool.labels, minlength=num_classes) / len(pool)
                ).tolist()
                for key, pool in pools.items()
            }
        if learned is not None:
            values["learned_trust_by_client"] = {
                partition_name(key): learned.weight(key) for key in pools
            }
            values["agreement_by_client"] = {
                partition_name(key): learned.agreement[key]
                for key in pools
                if key in learned.agreement
            }
        scores = quality(server_round, pools) if quality is not None else {}
        if scores:
            values["generation_quality_by_client"] = scores
            for figure in ("frechet", "mean_class_frechet", "reference_accuracy"):
                values[f"generation_{figure}"] = float(
                    np.mean([score[figure] for score in scores.values()])
                )
        recorder.update(server_round, **values)

    return callback


def quality_schedule(
    settings: RunSettings, test: ImageDataset
) -> Callable[[int, dict], dict] | None:
    """With ``generation-quality``: score the pools (:func:`pool_quality`) in the rounds
    the clients score their models on the global test set (``client-global-eval-every``
    and the last round)."""
    judge = generation_judge(settings)
    if judge is None:
        return None
    real = RealFeatures.of(judge, to_unit_range(test), test.labels)  # once per run

    def scores(server_round: int, pools: dict) -> dict:
        return pool_quality(judge, pools, real) if settings.global_eval_round(server_round) else {}

    return scores


def build_synthetic_strategy(
    settings: RunSettings, model: nn.Module, test: ImageDataset, recorder: RunRecorder
) -> SyntheticSampleStrategy:
    """The synthetic-sample strategy; its global model is a classifier trained on the
    pooled synthetic samples (``server-epochs`` per round; 0 turns it off)."""
    classifier = None
    if settings.server_epochs > 0:
        check_device(settings.device)
        classifier = PooledClassifier(
            model,
            test,
            epochs=settings.server_epochs,
            max_draws=settings.server_max_draws or None,
            replay_rounds=settings.replay_rounds,
            weight_decay=settings.server_weight_decay,
            lr_decay=settings.server_lr_decay,
            temperature=settings.distill_temperature,
            hard_label_weight=settings.hard_label_weight,
            **settings.server_sgd_params(),
        )
    trust = settings.trust if settings.trust in TRUST_MODES else parse_trust_matrix(settings.trust)
    learned = LearnedTrust() if settings.trust == "learned" else None
    return SyntheticSampleStrategy(
        sample_shape=test.image_shape,
        num_classes=test.num_classes,
        samples_per_client=settings.samples_per_client,
        sample_ratio=settings.sample_ratio,
        download_budget=settings.download_budget,
        download_ratio=settings.download_ratio,
        trust=learned or trust,
        self_trust=settings.self_trust,
        sample_dtype=settings.sample_dtype,
        sample_allocation=settings.sample_allocation,
        soft_label_top_k=settings.soft_label_top_k,
        compression=settings.compression,
        pool_max_age=settings.pool_lifetime,
        pool_age_decay=settings.pool_age_decay,
        server_classifier=classifier,
        on_pools=record_pools(
            recorder,
            test.num_classes,
            settings.record_pool_means,
            quality_schedule(settings, test),
            learned,
        ),
        seed=settings.seed,
        max_missed_rounds=settings.departure,
        partition_handover=settings.partition_handover,
        total_examples=federation_examples(settings),
        train_metrics_aggr_fn=for_messages(stateful_client_fit_metrics),
        evaluate_metrics_aggr_fn=for_messages(client_evaluation),
        **sampling(settings),
    )


def build_own_model_strategy(settings: RunSettings, feature_dim: int, num_classes: int) -> Strategy:
    """GMM-prototype, FedProto or local-only: every client keeps its own model, and
    ``global_accuracy`` is the mean of those models on the global test set."""
    common = sampling(settings) | {
        "train_metrics_aggr_fn": for_messages(stateful_client_fit_metrics),
        "evaluate_metrics_aggr_fn": for_messages(clients_as_global_evaluation),
    }
    if settings.strategy == "local-only":
        return LocalOnlyStrategy(**common)
    prototypes = {
        "num_classes": num_classes,
        "feature_dim": feature_dim,
        "max_missed_rounds": settings.departure,
        "partition_handover": settings.partition_handover,
        "total_examples": federation_examples(settings),
    }
    if settings.strategy == "fedproto":
        return FedProtoStrategy(dtype=settings.prototype_dtype, **prototypes, **common)
    return GMMPrototypeStrategy(
        covariance="diag" if settings.gmm_covariance in ("diag", "spherical") else "full",
        tau=settings.fusion_tau,
        max_components=settings.fusion_max_components or None,
        max_client_components=settings.gmm_components,
        dtype=settings.prototype_dtype,
        feature_radius=math.sqrt(feature_dim) if settings.feature_norm else None,
        **prototypes,
        **common,
    )


def server_model(settings: RunSettings, test: ImageDataset) -> nn.Module:
    """The model the strategy's clients train (recorded with its parameter count)."""
    if settings.strategy == "gmm-prototype":
        return build_dual_head_model(
            test.image_shape,
            test.num_classes,
            settings.seed,
            normalize_features=settings.feature_norm,
            architecture=settings.model,
        )
    return build_model(test.image_shape, test.num_classes, architecture=settings.model)


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the strategy named by the run config, metered into a results file and
    checkpointed after every round; with ``resume``, continue the newest unfinished
    run of the same settings in ``output-dir`` from its checkpoint (a fresh run if
    there is none). The run owns its results file while it runs
    (:mod:`flower_synth.app.run_files` says the rules)."""
    settings = RunSettings.from_run_config(context.run_config)
    torch.manual_seed(settings.seed)
    test = load_global_test(settings.data_source)
    model = server_model(settings, test)
    config = settings.to_run_config() | {
        "model_parameters": count_parameters(model),
        "flwr_version": flwr.__version__,
    }
    directory = Path(settings.output_dir).expanduser().resolve()
    names = (settings.strategy, settings.dataset, settings.partitioner, settings.seed)
    resumed = resumable_results(directory, names, config) if settings.resume else None
    owned = resumed or new_results_file(directory / results_file_name(*names))
    try:
        run(grid, settings, model, test, RunRecorder(owned.path, config=config), resumed)
    finally:
        owned.release()


def run(
    grid: Grid,
    settings: RunSettings,
    model: nn.Module,
    test: ImageDataset,
    recorder: RunRecorder,
    resumed: OwnedFile | None,
) -> None:
    """The run of ``main`` once its results file is chosen: the strategy, metered into
    ``recorder`` and checkpointed beside it; continued from the checkpoint where the
    file was ``resumed``."""
    initial_arrays, evaluate_fn = None, None
    if settings.strategy == "synthetic":
        strategy: Strategy = build_synthetic_strategy(settings, model, test, recorder)
    elif settings.strategy in OWN_MODEL_STRATEGIES:
        strategy = build_own_model_strategy(settings, model.feature_dim, test.num_classes)
    else:
        strategy = build_baseline_strategy(settings)
        initial_arrays = ArrayRecord(get_weights(model))
        evaluate_fn = global_evaluate_fn(model, test)
    checkpoint = checkpoint_of(recorder.path)
    metered = MeteredStrategy(strategy, recorder, checkpoint)
    if resumed is not None:
        metered.resume()
    result = metered.start(
        grid=grid,
        initial_arrays=initial_arrays,
        num_rounds=settings.num_server_rounds,
        evaluate_fn=evaluate_fn,
    )
    if settings.keep_shared:
        kept = shared_of(recorder.path)
        if isinstance(strategy, SyntheticSampleStrategy):
            keep_pools(kept, strategy.exchange.pools.pools)
        elif initial_arrays is not None:
            keep_model(kept, result.arrays)
    recorder.finish()
    checkpoint.remove()
