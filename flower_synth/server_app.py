"""The Flower ServerApp: builds the configured strategy and records the run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import flwr
import numpy as np
import torch
from flwr.common import Context, NDArrays, Scalar, ndarrays_to_parameters
from flwr.server import ServerApp, ServerAppComponents, ServerConfig
from flwr.server.strategy import FedAvg, FedProx, Strategy
from torch import nn

from flower_synth.config import OWN_MODEL_STRATEGIES, RunSettings
from flower_synth.data import ImageDataset, load_global_test
from flower_synth.equilibrium import TRUST_MODES, parse_trust_matrix
from flower_synth.metrics import (
    client_evaluation,
    clients_as_global_evaluation,
    personalized_accuracy,
    stateful_client_fit_metrics,
    weighted_train_loss,
)
from flower_synth.models import build_dual_head_model, build_model, count_parameters
from flower_synth.payload import SampleBatch
from flower_synth.results import RunRecorder, results_file_name
from flower_synth.strategies import (
    FedProtoStrategy,
    GMMPrototypeStrategy,
    LocalOnlyStrategy,
    MeteredStrategy,
    SyntheticSampleStrategy,
)
from flower_synth.strategies.synthetic import PoolCallback
from flower_synth.synthetic.server_classifier import PooledClassifier
from flower_synth.training import evaluate, get_weights, set_weights

EvaluateFn = Callable[[int, NDArrays, dict[str, Scalar]], tuple[float, dict[str, Scalar]]]


def global_evaluate_fn(model: nn.Module, test: ImageDataset) -> EvaluateFn:
    """Server-side evaluation of the global weights on the global test set."""

    def evaluate_fn(
        server_round: int, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[float, dict[str, Scalar]]:
        set_weights(model, parameters)
        loss, accuracy = evaluate(model, test)
        return loss, {"global_accuracy": accuracy}

    return evaluate_fn


def fit_config(server_round: int) -> dict[str, Scalar]:
    """Config sent with every fit instruction."""
    return {"server_round": server_round}


def build_baseline_strategy(
    settings: RunSettings, model: nn.Module, test: ImageDataset
) -> Strategy:
    """flwr's own FedAvg or FedProx, starting from ``model``'s weights."""
    common = dict(
        fraction_fit=settings.fraction_fit,
        fraction_evaluate=settings.fraction_evaluate,
        min_fit_clients=1,
        min_evaluate_clients=1,
        min_available_clients=settings.min_available_clients,
        initial_parameters=ndarrays_to_parameters(get_weights(model)),
        evaluate_fn=global_evaluate_fn(model, test),
        on_fit_config_fn=fit_config,
        fit_metrics_aggregation_fn=weighted_train_loss,
        evaluate_metrics_aggregation_fn=personalized_accuracy,
    )
    if settings.strategy == "fedprox":
        return FedProx(proximal_mu=settings.proximal_mu, **common)
    return FedAvg(**common)


def record_pools(recorder: RunRecorder, num_classes: int, means: bool) -> PoolCallback:
    """``on_pools`` callback: record the label agreement each client reported this
    round, and with ``means`` every pool's mean sample and label frequencies (the mean
    parameters the equilibrium analysis compares), keyed by partition id."""

    def name(key: str) -> str:
        return key.removeprefix("partition-")

    def callback(server_round: int, pools: dict[str, SampleBatch], metrics: dict) -> None:
        values: dict = {
            "label_agreement_by_client": {
                name(key): m["label_agreement"]
                for key, m in metrics.items()
                if "label_agreement" in m
            }
        }
        if means:
            values["pool_means"] = {
                name(key): pool.samples.reshape(len(pool), -1)
                .mean(axis=0, dtype=np.float64)
                .tolist()
                for key, pool in pools.items()
            }
            values["pool_label_frequencies"] = {
                name(key): (np.bincount(pool.labels, minlength=num_classes) / len(pool)).tolist()
                for key, pool in pools.items()
            }
        recorder.update(server_round, **values)

    return callback


def global_eval_config(settings: RunSettings) -> Callable[[int], dict[str, Scalar]]:
    """``on_evaluate_config_fn``: clients score their own models on the global test set
    in rounds divisible by ``client-global-eval-every`` and in the last round."""

    def config(server_round: int) -> dict[str, Scalar]:
        every = settings.client_global_eval_every
        last = server_round == settings.num_server_rounds
        return {"global_eval": server_round % every == 0 or last}

    return config


def build_synthetic_strategy(
    settings: RunSettings, model: nn.Module, test: ImageDataset, recorder: RunRecorder
) -> SyntheticSampleStrategy:
    """The synthetic-sample strategy; its global model is a classifier trained on the
    pooled synthetic samples (``server-epochs`` per round; 0 turns it off)."""
    classifier = None
    if settings.server_epochs > 0:
        classifier = PooledClassifier(
            model,
            test,
            epochs=settings.server_epochs,
            replay_rounds=settings.replay_rounds,
            weight_decay=settings.server_weight_decay,
            lr_decay=settings.server_lr_decay,
            temperature=settings.distill_temperature,
            hard_label_weight=settings.hard_label_weight,
            **settings.sgd_params(),
        )
    trust = settings.trust if settings.trust in TRUST_MODES else parse_trust_matrix(settings.trust)
    return SyntheticSampleStrategy(
        sample_shape=test.image_shape,
        num_classes=test.num_classes,
        samples_per_client=settings.samples_per_client,
        download_budget=settings.download_budget,
        trust=trust,
        self_trust=settings.self_trust,
        sample_dtype=settings.sample_dtype,
        sample_allocation=settings.sample_allocation,
        soft_label_top_k=settings.soft_label_top_k,
        fraction_fit=settings.fraction_fit,
        fraction_evaluate=settings.fraction_evaluate,
        min_available_clients=settings.min_available_clients,
        server_classifier=classifier,
        on_pools=record_pools(recorder, test.num_classes, settings.record_pool_means),
        fit_metrics_aggregation_fn=stateful_client_fit_metrics,
        evaluate_metrics_aggregation_fn=client_evaluation,
        on_evaluate_config_fn=global_eval_config(settings),
        seed=settings.seed,
    )


def build_own_model_strategy(settings: RunSettings, feature_dim: int, num_classes: int) -> Strategy:
    """GMM-prototype, FedProto or local-only: every client keeps its own model, and
    ``global_accuracy`` is the mean of those models on the global test set."""
    sampling = dict(
        fraction_fit=settings.fraction_fit,
        fraction_evaluate=settings.fraction_evaluate,
        min_available_clients=settings.min_available_clients,
        fit_metrics_aggregation_fn=stateful_client_fit_metrics,
        evaluate_metrics_aggregation_fn=clients_as_global_evaluation,
        on_evaluate_config_fn=global_eval_config(settings),
    )
    if settings.strategy == "local-only":
        return LocalOnlyStrategy(**sampling)
    common = dict(
        num_classes=num_classes,
        feature_dim=feature_dim,
        dtype=settings.prototype_dtype,
        **sampling,
    )
    if settings.strategy == "fedproto":
        return FedProtoStrategy(**common)
    return GMMPrototypeStrategy(
        covariance="diag" if settings.gmm_covariance in ("diag", "spherical") else "full",
        tau=settings.fusion_tau,
        max_components=settings.fusion_max_components or None,
        max_client_components=settings.gmm_components,
        **common,
    )


def server_model(settings: RunSettings, test: ImageDataset) -> nn.Module:
    """The model the strategy's clients train (recorded with its parameter count)."""
    if settings.strategy == "gmm-prototype":
        return build_dual_head_model(test.image_shape, test.num_classes, settings.seed)
    return build_model(test.image_shape, test.num_classes)


def server_fn(context: Context) -> ServerAppComponents:
    """Build the strategy named by the run config, wrapped in a :class:`MeteredStrategy`."""
    settings = RunSettings.from_run_config(context.run_config)
    torch.manual_seed(settings.seed)
    test = load_global_test(settings)
    model = server_model(settings, test)
    name = results_file_name(
        settings.strategy, settings.dataset, settings.partitioner, settings.seed
    )
    recorder = RunRecorder(
        Path(settings.output_dir).expanduser().resolve() / name,
        config=settings.to_run_config()
        | {"model_parameters": count_parameters(model), "flwr_version": flwr.__version__},
    )
    if settings.strategy == "synthetic":
        strategy: Strategy = build_synthetic_strategy(settings, model, test, recorder)
    elif settings.strategy in OWN_MODEL_STRATEGIES:
        strategy = build_own_model_strategy(settings, model.feature_dim, test.num_classes)
    else:
        strategy = build_baseline_strategy(settings, model, test)
    return ServerAppComponents(
        strategy=MeteredStrategy(strategy, recorder),
        config=ServerConfig(num_rounds=settings.num_server_rounds),
    )


app = ServerApp(server_fn=server_fn)
