"""quickstart: A Flower / PyTorch app (legacy API: NumPyClient and client_fn)."""

from collections import OrderedDict

import torch
from flwr.client import ClientApp, NumPyClient
from flwr.common import Context

from quickstart.task import Net, load_data
from quickstart.task import test as test_fn
from quickstart.task import train as train_fn


def get_weights(net):
    return [val.cpu().numpy() for _, val in net.state_dict().items()]


def set_weights(net, parameters):
    params_dict = zip(net.state_dict().keys(), parameters)
    state_dict = OrderedDict({k: torch.tensor(v) for k, v in params_dict})
    net.load_state_dict(state_dict, strict=True)


# Define Flower Client
class FlowerClient(NumPyClient):
    def __init__(self, net, trainloader, valloader, local_epochs, lr):
        self.net = net
        self.trainloader = trainloader
        self.valloader = valloader
        self.local_epochs = local_epochs
        self.lr = lr
        self.device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")

    def fit(self, parameters, config):
        set_weights(self.net, parameters)
        train_loss = train_fn(self.net, self.trainloader, self.local_epochs, self.lr, self.device)
        return get_weights(self.net), len(self.trainloader.dataset), {"train_loss": train_loss}

    def evaluate(self, parameters, config):
        set_weights(self.net, parameters)
        loss, accuracy = test_fn(self.net, self.valloader, self.device)
        return loss, len(self.valloader.dataset), {"accuracy": accuracy}


def client_fn(context: Context):
    # Load model and data
    partition_id = context.node_config["partition-id"]
    num_partitions = context.node_config["num-partitions"]
    batch_size = context.run_config["batch-size"]
    examples = context.run_config["examples-per-client"]
    trainloader, valloader = load_data(partition_id, num_partitions, batch_size, examples)
    local_epochs = context.run_config["local-epochs"]
    lr = context.run_config["learning-rate"]

    # Return Client instance
    return FlowerClient(Net(), trainloader, valloader, local_epochs, lr).to_client()


# Flower ClientApp
app = ClientApp(client_fn)
