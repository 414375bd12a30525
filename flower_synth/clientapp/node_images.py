"""A node's training images, read from the user's DataLoader once per node and process."""

from __future__ import annotations

from flwr.app import Context
from torch.utils.data import DataLoader

from flower_synth.data.client_data import ClientData
from flower_synth.data.image_dataset import ImageDataset
from flower_synth.data.loaders import collect_inputs, to_image_dataset
from flower_synth.learning.normalization import Normalization


class NodeImages:
    """The images of every node's training loader, by run and node, read the first time
    a node's loader is seen (later messages reuse them: the loader is not read again).

    Args:
        num_classes: classes of the task.
        normalization: how the loader's inputs were made from images in [0, 1]; None:
            read off the inputs (:meth:`Normalization.from_inputs`).
    """

    def __init__(self, num_classes: int, normalization: Normalization | None = None) -> None:
        self.num_classes = num_classes
        self.normalization = normalization
        self.data: dict[tuple[int, int], ClientData] = {}

    def client_data(self, context: Context, trainloader: DataLoader) -> ClientData:
        """The node's training images (an empty local test split)."""
        key = (context.run_id, context.node_id)
        if key not in self.data:
            inputs, labels = collect_inputs(trainloader)
            normalization = self.normalization or Normalization.from_inputs(inputs)
            train = to_image_dataset(inputs, labels, self.num_classes, normalization)
            empty = ImageDataset(train.images[:0], train.labels[:0], self.num_classes)
            self.data[key] = ClientData(train, empty, normalization)
        return self.data[key]
