"""The settings of a client's classifier training, shared by every learner."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClassifierTraining:
    """How a client trains its classifier: the local SGD every learner runs
    (``local_epochs``, ``batch_size``, ``learning_rate``, ``momentum``), and what only the
    synthetic exchange's learner uses.

    There, every epoch draws ``epoch_scale`` times as many examples as the client has real
    ones from the trust-weighted mixture (at the default 0.5, half what a FedAvg
    client's round costs, which leaves room for the generator; at 1, as much; at
    ``1 / self_trust``, the client draws each real example once per epoch on average,
    as a local-only client does, and the received samples on top), and at least
    ``min_batches`` batches, though for that floor never more draws than the client
    has real examples (a small client keeps a whole epoch: with half of one its
    classifier takes too few steps to label what it sends; :meth:`epoch_draws`).
    Received samples with soft labels are learnt with the distillation loss at
    ``temperature``, their targets blended with the one-hot class they were generated
    for (``hard_label_weight`` of it).
    """

    local_epochs: int = 2
    batch_size: int = 64
    learning_rate: float = 0.01
    momentum: float = 0.9
    temperature: float = 1.0
    hard_label_weight: float = 0.0
    epoch_scale: float = 0.5
    min_batches: int = 8

    def epoch_draws(self, num_real: int) -> int:
        """Examples one epoch draws for a client with ``num_real`` real examples."""
        floor = min(num_real, self.min_batches * self.batch_size)
        return max(1, round(num_real * self.epoch_scale), floor)
