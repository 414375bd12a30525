"""A flwr-datasets partitioner that gives every partition exactly ``n`` examples of
every class (the data-scarce IID regime of Schlesinger & Flach's experiments).

None of flwr-datasets' partitioners fixes a per-class count per partition and leaves
the rest of the dataset unused (``DistributionPartitioner`` needs the number of
partitions to be a multiple of the number of classes and spends every example), so
this one subclasses their :class:`~flwr_datasets.partitioner.Partitioner`.
"""

from __future__ import annotations

import numpy as np
from datasets import Dataset
from flwr_datasets.partitioner.partitioner import Partitioner


class PerClassPartitioner(Partitioner):
    """Partition ``i`` holds ``examples_per_class`` examples of every class, disjoint
    from every other partition's; the examples of a class are drawn with ``seed``
    and the rest of the dataset is left out.

    Args:
        num_partitions: Number of partitions.
        examples_per_class: Examples of each class in each partition (>= 1).
        partition_by: Column holding the labels.
        seed: Seed of the draw.

    Raises:
        ValueError: On a non-positive count, or (when a partition is loaded) a class
            with fewer than ``num_partitions * examples_per_class`` examples.
    """

    def __init__(
        self,
        num_partitions: int,
        examples_per_class: int,
        partition_by: str = "label",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if num_partitions < 1:
            raise ValueError(f"num_partitions must be >= 1, got {num_partitions}")
        if examples_per_class < 1:
            raise ValueError(
                f"examples-per-class must be >= 1 for the per-class partitioner, got "
                f"{examples_per_class}"
            )
        self._num_partitions = num_partitions
        self.examples_per_class = examples_per_class
        self.partition_by = partition_by
        self.seed = seed
        self._rows: list[np.ndarray] | None = None

    @property
    def num_partitions(self) -> int:
        """Total number of partitions."""
        return self._num_partitions

    def load_partition(self, partition_id: int) -> Dataset:
        """The rows of partition ``partition_id`` (``n`` per class, sorted)."""
        if not 0 <= partition_id < self._num_partitions:
            raise ValueError(
                f"partition_id must lie in [0, {self._num_partitions}), got {partition_id}"
            )
        if self._rows is None:
            self._rows = self._draw()
        return self.dataset.select(self._rows[partition_id])

    def _draw(self) -> list[np.ndarray]:
        labels = np.asarray(self.dataset[self.partition_by])
        rng = np.random.default_rng(self.seed)
        n, parts = self.examples_per_class, self._num_partitions
        chosen: list[list[np.ndarray]] = [[] for _ in range(parts)]
        for label in np.unique(labels):
            members = np.flatnonzero(labels == label)
            if len(members) < n * parts:
                raise ValueError(
                    f"class {label} has {len(members)} examples, fewer than "
                    f"{parts} partitions x {n} examples-per-class; lower examples-per-class"
                )
            drawn = rng.choice(members, size=n * parts, replace=False)
            for part in range(parts):
                chosen[part].append(drawn[part * n : (part + 1) * n])
        return [np.sort(np.concatenate(rows)) for rows in chosen]
