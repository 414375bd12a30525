"""The centralized reference: one model trained on the union of the clients' data."""

from __future__ import annotations

import time
from pathlib import Path

import flwr
import numpy as np
import torch

from flower_synth.app.config import RunSettings
from flower_synth.app.results_files import results_file_name
from flower_synth.data import load_client_data, load_global_test
from flower_synth.data.client_data import ClientData
from flower_synth.data.image_dataset import ImageDataset
from flower_synth.exchange.recorder import RunRecorder
from flower_synth.learning.distillation import adjust_prior
from flower_synth.learning.training import (
    class_probabilities,
    evaluate,
    make_loader,
    score,
    to_unit_range,
    train,
)
from flower_synth.models import build_model, count_parameters

CENTRALIZED = "centralized"


def run_centralized(settings: RunSettings, num_clients: int) -> Path:
    """Train the dataset's model on all clients' training splits pooled,
    ``centralized-epochs`` epochs (default 1) per "round" for ``num-server-rounds``
    rounds, with the federated runs' SGD settings.

    Each round records ``global_accuracy`` (the global test set),
    ``personalized_accuracy`` (mean over clients of the model on each local test
    split) and ``personalized_accuracy_restored`` (the same with each client's label
    mix restored by logit adjustment: what a model that saw every client's data
    scores where it also knows the client's prior, the mark for federated clients'
    own models), with 0 bytes exchanged, in a results file like a Flower run's (its
    ``strategy`` is ``"centralized"``). The clients' data is exactly what the
    federated runs with the same settings and ``num_clients`` partition (their
    labelled images only). Returns the results file's path.
    """
    torch.manual_seed(settings.seed)
    scheme = settings.partition_scheme(num_clients)
    clients = [
        load_client_data(scheme, pid, settings.labelled_fraction_for(pid))
        for pid in range(num_clients)
    ]
    pooled = ImageDataset(
        np.concatenate([c.train.images for c in clients]),
        np.concatenate([c.train.labels for c in clients]),
        clients[0].train.num_classes,
    )
    test = load_global_test(settings.data_source)
    prior = pooled.label_mix()
    model = build_model(pooled.image_shape, pooled.num_classes, architecture=settings.model)
    path = Path(settings.output_dir).expanduser().resolve() / results_file_name(
        CENTRALIZED, settings.dataset, settings.partitioner, settings.seed
    )
    recorder = RunRecorder(
        path,
        config=settings.to_run_config()
        | {
            "strategy": CENTRALIZED,
            "num-clients": num_clients,
            "model_parameters": count_parameters(model),
            "flwr_version": flwr.__version__,
        },
    )
    samples = to_unit_range(pooled)
    sgd = settings.sgd_params()
    for epoch in range(1, settings.num_server_rounds + 1):
        started = time.perf_counter()
        loader = make_loader(samples, pooled.labels, sgd["batch_size"], True, sgd["seed"] + epoch)
        loss = train(
            model, loader, settings.centralized_epochs, sgd["learning_rate"], sgd["momentum"]
        )
        global_loss, global_accuracy = evaluate(model, test)
        local = [local_accuracy(model, c, prior) for c in clients if len(c.test)]
        recorder.update(
            epoch,
            train_loss=loss,
            global_loss=global_loss,
            global_accuracy=global_accuracy,
            personalized_accuracy=float(np.mean([a for a, _ in local])) if local else None,
            personalized_accuracy_restored=(
                float(np.mean([a for _, a in local])) if local else None
            ),
            bytes_down=0,
            bytes_up=0,
            seconds=time.perf_counter() - started,
        )
    recorder.finish()
    return path


def local_accuracy(
    model: torch.nn.Module, client: ClientData, prior: np.ndarray
) -> tuple[float, float]:
    """``model``'s accuracy on ``client``'s local test split as it predicts, and with the
    client's training label mix restored in place of ``prior`` (the mix it learnt)."""
    probabilities = class_probabilities(model, client.test.images)
    restored = adjust_prior(probabilities, prior, client.train.label_mix())
    return score(probabilities, client.test.labels)[1], score(restored, client.test.labels)[1]
