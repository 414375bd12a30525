"""quickstart: A Flower / PyTorch app."""

import torch
import torch.nn as nn
import torch.nn.functional as F
from datasets import Dataset
from flwr_datasets.partitioner import IidPartitioner
from torch.utils.data import DataLoader
from torchvision.transforms import Normalize

from flower_synth.data import load_dataset  # reads Fashion-MNIST from disk (no hub)


class Net(nn.Module):
    """Model (simple CNN adapted from 'PyTorch: A 60 Minute Blitz')"""

    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 16 * 4 * 4)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


normalize = Normalize((0.5,), (0.5,))


def collate(batch):
    """Images to normalized tensors, as `{"img": ..., "label": ...}` batches."""
    images = torch.stack([torch.as_tensor(row["img"]) for row in batch]).float() / 255.0
    labels = torch.tensor([row["label"] for row in batch])
    return {"img": normalize(images.unsqueeze(1)), "label": labels}


def to_dataset(split):
    return Dataset.from_dict({"img": split.images[:, 0], "label": split.labels})


partitioner = None  # Cache the partitioner (and its dataset)


def load_data(partition_id: int, num_partitions: int, batch_size: int, examples: int):
    """Load partition Fashion-MNIST data."""
    # Only initialize the partitioner once
    global partitioner
    if partitioner is None:
        train, _ = load_dataset("fashion-mnist")
        partitioner = IidPartitioner(num_partitions=num_partitions)
        partitioner.dataset = to_dataset(train)
    partition = partitioner.load_partition(partition_id)
    partition = partition.select(range(min(examples, len(partition))))
    # Divide data on each node: 80% train, 20% test
    partition_train_test = partition.train_test_split(test_size=0.2, seed=42)
    trainloader = DataLoader(
        partition_train_test["train"], batch_size=batch_size, shuffle=True, collate_fn=collate
    )
    testloader = DataLoader(partition_train_test["test"], batch_size=batch_size, collate_fn=collate)
    return trainloader, testloader


def load_centralized_dataset():
    """Load test set and return dataloader."""
    _, test = load_dataset("fashion-mnist")
    return DataLoader(to_dataset(test), batch_size=128, collate_fn=collate)


def train(net, trainloader, epochs, lr, device):
    """Train the model on the training set."""
    net.to(device)  # move model to GPU if available
    criterion = torch.nn.CrossEntropyLoss().to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    net.train()
    running_loss = 0.0
    for _ in range(epochs):
        for batch in trainloader:
            images = batch["img"].to(device)
            labels = batch["label"].to(device)
            optimizer.zero_grad()
            loss = criterion(net(images), labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
    avg_trainloss = running_loss / (epochs * len(trainloader))
    return avg_trainloss


def test(net, testloader, device):
    """Validate the model on the test set."""
    net.to(device)
    criterion = torch.nn.CrossEntropyLoss()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for batch in testloader:
            images = batch["img"].to(device)
            labels = batch["label"].to(device)
            outputs = net(images)
            loss += criterion(outputs, labels).item()
            correct += (torch.max(outputs.data, 1)[1] == labels).sum().item()
    accuracy = correct / len(testloader.dataset)
    loss = loss / len(testloader)
    return loss, accuracy
