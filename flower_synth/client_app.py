"""The Flower ClientApp: one client per partition, found from the node config."""

from __future__ import annotations

from collections.abc import Mapping

from flwr.client import Client, ClientApp
from flwr.common import Context, Scalar

from flower_synth.clients import FedAvgClient
from flower_synth.config import RunSettings
from flower_synth.data import load_client_data
from flower_synth.models import build_model


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


def client_fn(context: Context) -> Client:
    """Build this node's client for the strategy named by the run config."""
    settings = RunSettings.from_run_config(context.run_config)
    partition_id, num_partitions = node_partition(context.node_config)
    data = load_client_data(settings, partition_id, num_partitions)
    model = build_model(data.train.image_shape, data.train.num_classes)
    return FedAvgClient(
        model,
        data,
        local_epochs=settings.local_epochs,
        batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        momentum=settings.momentum,
        seed=settings.seed,
        partition_id=partition_id,
    ).to_client()


app = ClientApp(client_fn=client_fn)
