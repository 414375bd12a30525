"""The Flower ClientApp (Message API): one learner per partition, found from the node
config, answering ``train`` and ``evaluate`` messages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.common import Scalar

from flower_synth.app.config import OWN_MODEL_STRATEGIES, RunSettings
from flower_synth.clientapp import (
    CleanModality,
    CompositedModality,
    FedAvgLearner,
    FedProtoLearner,
    GMMPrototypeLearner,
    LocalOnlyLearner,
    Modality,
    SyntheticLearner,
    evaluate_reply,
    message_config,
    train_reply,
)
from flower_synth.data import ClientData, ImageDataset, load_client_data, load_global_test
from flower_synth.data.composite import composite_client_data, composite_test
from flower_synth.generative import IMAGE_GENERATORS, ODE_GENERATORS, build_generator
from flower_synth.learning.devices import check_device
from flower_synth.learning.learner import Learner, round_seed, server_round
from flower_synth.models import build_dual_head_model, build_model
from flower_synth.privacy import DPSGD, PrivacyLedger
from flower_synth.privacy.release import LABEL_COUNT_NOISE
from flower_synth.prototypes.private_gaussians import RELEASES

app = ClientApp()


def node_partition(node_config: Mapping[str, Scalar]) -> tuple[int, int]:
    """``(partition-id, num-partitions)`` from a node config.

    The simulation engine sets both for every virtual SuperNode; in a deployment, pass
    them with ``flower-supernode --node-config "partition-id=0 num-partitions=N"``.
    """
    try:
        return int(node_config["partition-id"]), int(node_config["num-partitions"])
    except KeyError as missing:
        raise KeyError(
            f"node config lacks {missing}; start each SuperNode with "
            f'--node-config "partition-id=<i> num-partitions=<n>"'
        ) from None


def generator_params(
    settings: RunSettings, kind: str, partition_id: int, num_real: int
) -> dict[str, Any]:
    """Constructor parameters the run config sets for a generator of ``kind`` (its
    sizes scaled by the partition's ``capacity``); a torch image generator's epoch
    draws ``generator-epoch-scale`` times as many examples from the mixture as the
    client has real images (``num_real``, labelled or not), and at least
    ``generator-min-batches`` batches."""
    seed = round_seed(settings.seed, partition_id, 0)
    scale = settings.capacity_for(partition_id)
    if kind == "gmm":
        return {"random_state": seed}
    if kind not in IMAGE_GENERATORS:
        return {}
    if kind == "mean-embedding":
        return {
            "latent_dim": max(1, round(settings.latent_dim * scale)),
            "hidden_dim": max(1, round(settings.generator_hidden * scale)),
            "num_features": settings.embedding_features,
            "length_scale": settings.embedding_length_scale,
            "steps": settings.embedding_steps,
            "batch_size": settings.generator_batch_size,
            "learning_rate": settings.generator_learning_rate,
            "seed": seed,
            "device": settings.device,
        }
    params: dict[str, Any] = {
        "epochs": settings.generator_epochs,
        "batch_size": settings.generator_batch_size,
        "learning_rate": settings.generator_learning_rate,
        "epoch_size": max(
            round(settings.generator_epoch_scale * num_real),
            settings.generator_min_batches * settings.generator_batch_size,
        ),
        "seed": seed,
        "device": settings.device,
    }
    if kind in ODE_GENERATORS:
        return params | {
            "channels": max(1, round(settings.generator_channels * scale)),
            "steps": settings.generator_steps,
            "solver": settings.generator_solver,
            "guidance_scale": settings.guidance_scale,
            "class_dropout": settings.class_dropout,
            "hjb_weight": settings.hjb_weight,
        }
    params |= {
        "latent_dim": max(1, round(settings.latent_dim * scale)),
        "hidden_dim": max(1, round(settings.generator_hidden * scale)),
    }
    if kind.startswith("cvae"):  # the SymmetricVAE has no latent prior or KL weight
        params |= {"latent_prior": settings.latent_prior, "kl_weight": settings.kl_weight}
    return params


def private_params(
    settings: RunSettings, kind: str, params: dict[str, Any], num_labelled: int
) -> dict[str, Any]:
    """What makes a client's generator of ``kind`` (built from ``params``) private, for
    a client whose real training split holds ``num_labelled`` examples, with
    ``dp-noise-multiplier``, or the noise that spends at most ``dp-epsilon`` at
    ``dp-delta``: a ``mean-embedding`` releases its data's embedding and class counts
    once (one Gaussian mechanism); the others train by DP-SGD, every round of the run
    (as if the client trained in each) at the sampling rate its real examples alone
    give (received samples only lower it), and release the label counts once."""
    if kind == "mean-embedding":
        return {"release_noise": settings.dp_noise(1.0, 1)}
    released = PrivacyLedger()
    released.spend(LABEL_COUNT_NOISE, 1.0, 1)
    batch = settings.generator_batch_size
    epoch = -(-params["epoch_size"] // batch)
    steps = settings.num_server_rounds * settings.generator_epochs * epoch
    rate = min(1.0, batch / max(1, num_labelled))
    noise = settings.dp_noise(rate, steps, released)
    if kind.startswith("cvae"):  # the class prior is fitted to real codes, unnoised
        return {"dp": DPSGD(noise, settings.dp_max_grad_norm), "latent_prior": "standard"}
    return {"dp": DPSGD(noise, settings.dp_max_grad_norm)}


def synthetic_learner(
    settings: RunSettings,
    data: ClientData,
    context: Context,
    partition_id: int,
    global_test: ImageDataset | None,
) -> SyntheticLearner:
    """This partition's generator and classifier kinds (per-partition lists in the run
    config make heterogeneous federations), restored from ``context.state``."""
    shape, num_classes = data.train.image_shape, data.train.num_classes
    kind = settings.kind_for(settings.generator, partition_id)
    params = generator_params(settings, kind, partition_id, data.num_images)
    if settings.private:
        params |= private_params(settings, kind, params, len(data.train))
    generator = build_generator(kind, num_classes, shape, **params)
    classifier = None
    if settings.kind_for(settings.classifier, partition_id) == "model":
        torch.manual_seed(round_seed(settings.seed, partition_id, 0))
        classifier = build_model(
            shape,
            num_classes,
            width=settings.capacity_for(partition_id),
            architecture=settings.model,
        )
    return SyntheticLearner(
        generator,
        classifier,
        data,
        context.state,
        partition_id=partition_id,
        training=settings.classifier_training(),
        sample_labels=settings.sample_labels,
        sample_dtype=settings.sample_dtype,
        samples_per_round=settings.samples_per_client,
        fresh_fraction=settings.fresh_sample_fraction,
        soft_labels=settings.soft_labels and not settings.private,
        soft_label_top_k=settings.soft_label_top_k,
        sample_levels=settings.sample_levels,
        compression=settings.compression,
        seed=settings.seed,
        global_test=global_test,
        device=settings.device,
        pseudo_label_threshold=settings.pseudo_label_threshold,
        modality=modality_of(settings, data, partition_id),
        share_real=settings.share_real_for(partition_id),
        label_shift=settings.label_shift_for(partition_id),
        private_delta=settings.dp_delta if settings.private else None,
        generator_trust=settings.generator_self_trust or None,
        personal_self_trust=settings.personal_self_trust or None,
    )


def modality_of(settings: RunSettings, data: ClientData, partition_id: int) -> Modality:
    """How ``partition_id`` takes received pools in: as they are (clean items), or, on
    composited images, by laying clean items over its background estimates."""
    if settings.modality_for(partition_id) == "clean":
        return CleanModality()
    images = data.train.images
    if data.unlabelled is not None:
        images = np.concatenate([images, data.unlabelled])
    return CompositedModality(images, mask_steps=settings.mask_steps, device=settings.device)


def own_model_learner(
    settings: RunSettings,
    data: ClientData,
    context: Context,
    partition_id: int,
    global_test: ImageDataset | None,
) -> Learner:
    """A GMM-prototype, FedProto or local-only learner, its model restored from
    ``context.state``.

    Every client starts from the same initial weights (seeded by the run seed) and,
    for GMM prototypes, the same ETF (seeded by the run seed as well).
    """
    shape, num_classes = data.train.image_shape, data.train.num_classes
    torch.manual_seed(settings.seed)
    options = dict(
        partition_id=partition_id,
        training=settings.classifier_training(),
        prototype_dtype=settings.prototype_dtype,
        global_test=global_test,
        seed=settings.seed,
        device=settings.device,
        audit=settings.keep_shared,
    )
    if settings.strategy == "local-only":
        width = settings.capacity_for(partition_id)
        model = build_model(shape, num_classes, width=width, architecture=settings.model)
        return LocalOnlyLearner(model, data, context.state, **options)
    if settings.strategy == "fedproto":
        model = build_model(shape, num_classes, architecture=settings.model)
        return FedProtoLearner(
            model, data, context.state, proto_lambda=settings.proto_lambda, **options
        )
    model = build_dual_head_model(
        shape,
        num_classes,
        settings.seed,
        settings.prediction_head,
        settings.feature_norm,
        settings.model,
    )
    return GMMPrototypeLearner(
        model,
        data,
        context.state,
        n_components=settings.gmm_components,
        covariance_type=settings.gmm_covariance,
        min_samples=settings.gmm_min_samples,
        pseudo_per_class=settings.pseudo_per_class,
        pseudo_weight=settings.pseudo_weight,
        pull_weight=settings.pull_weight,
        restore_prior=settings.restore_prior,
        dr_lambda=settings.dr_lambda,
        private=private_release(settings) if settings.private else None,
        **options,
    )


def private_release(settings: RunSettings) -> tuple[float, float]:
    """A private GMM-prototype client's noise multiplier and delta: ``dp-noise-multiplier``,
    or the noise with which its releases in every round of the run spend ``dp-epsilon``
    at ``dp-delta``."""
    return settings.dp_noise(1.0, RELEASES * settings.num_server_rounds), settings.dp_delta


def global_test_due(settings: RunSettings, server_round: int) -> bool:
    """Whether clients score their own models on the global test set this round: with
    ``client-global-eval``, in :meth:`~RunSettings.global_eval_round` rounds."""
    return settings.client_global_eval and settings.global_eval_round(server_round)


def learner_for(context: Context, global_eval: bool = False) -> Learner:
    """This node's learner for the strategy named by the run config (with the global
    test set only when ``global_eval``)."""
    settings = RunSettings.from_run_config(context.run_config)
    check_device(settings.device)
    partition_id, num_partitions = node_partition(context.node_config)
    settings.check_federation(num_partitions)
    data = load_client_data(
        settings.partition_scheme(num_partitions),
        partition_id,
        settings.labelled_fraction_for(partition_id),
    )
    global_test = load_global_test(settings.data_source) if global_eval else None
    if settings.modality_for(partition_id) == "composited":
        data = composite_client_data(data, settings.seed + partition_id)
        if global_eval:
            global_test = composite_test(settings.data_source, settings.seed)
    if global_test is not None:
        global_test = global_test.balanced_subset(settings.client_global_eval_size, settings.seed)
    if settings.strategy == "synthetic":
        return synthetic_learner(settings, data, context, partition_id, global_test)
    if settings.strategy in OWN_MODEL_STRATEGIES:
        return own_model_learner(settings, data, context, partition_id, global_test)
    model = build_model(data.train.image_shape, data.train.num_classes, architecture=settings.model)
    return FedAvgLearner(
        model,
        data,
        partition_id=partition_id,
        training=settings.classifier_training(),
        seed=settings.seed,
        device=settings.device,
    )


@app.train()
def train(message: Message, context: Context) -> Message:
    """Learn on this node's partition; reply with what the strategy exchanges."""
    return train_reply(message, learner_for(context))


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    """Evaluate this node's model (on the global test set too when due)."""
    settings = RunSettings.from_run_config(context.run_config)
    due = global_test_due(settings, server_round(message_config(message)))
    return evaluate_reply(message, learner_for(context, global_eval=due))
