"""A Message-API strategy wrapper that meters communication and time and records every round."""

from __future__ import annotations

from collections.abc import Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy

from flower_synth.metering import RoundMeter, arrayrecord_nbytes, arrayrecord_serialized_nbytes
from flower_synth.results import RunRecorder
from flower_synth.serverapp.strategy.model_free import EvaluateFn, ModelFreeStrategy


def message_nbytes(messages: Iterable[Message], serialized: bool = False) -> int:
    """Array bytes (or serialised bytes) of every ``ArrayRecord`` in ``messages``."""
    count = arrayrecord_serialized_nbytes if serialized else arrayrecord_nbytes
    return sum(
        count(record) for message in messages for record in message.content.array_records.values()
    )


class MeteredStrategy(Strategy):
    """Wrap any Message-API Flower strategy; count the bytes it exchanges and time its
    rounds, with the same round records as the legacy
    :class:`~flower_synth.strategies.MeteredStrategy`:

    * ``bytes_down`` / ``bytes_up`` (and ``*_serialized``): array bytes of the training
      messages sent and of the replies without an error;
    * ``bytes_down_evaluate``: array bytes of the evaluation messages;
    * ``fit_failures`` (replies with an error plus the wrapped strategy's
      ``rejected_payloads``) and ``evaluate_failures``;
    * every metric of ``aggregate_train``, ``aggregate_evaluate`` and of server-side
      evaluation (its ``loss`` as ``global_loss``; round 0 under ``initial``);
    * ``seconds``: wall time from ``configure_train`` to the round's last step.

    :meth:`start` runs Flower's round loop through the wrapper; its ``evaluate_fn``
    defaults to the wrapped strategy's own where it has one (the strategies of
    :mod:`flower_synth.serverapp.strategy`).

    Args:
        strategy: the strategy that does the work (e.g. flwr's Message-API ``FedAvg``).
        recorder: where round records go (a JSON file rewritten after each step).
    """

    def __init__(self, strategy: Strategy, recorder: RunRecorder) -> None:
        self.strategy = strategy
        self.meter = RoundMeter(recorder)

    def summary(self) -> None:
        """Delegate."""
        self.strategy.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Delegate, then count the array bytes of every training message."""
        self.meter.start(server_round)
        messages = list(self.strategy.configure_train(server_round, arrays, config, grid))
        self.meter.record(
            server_round,
            clients_sampled=len(messages),
            bytes_down=message_nbytes(messages),
            bytes_down_serialized=message_nbytes(messages, serialized=True),
        )
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Count the array bytes received, then delegate; record the metrics."""
        replies = list(replies)
        received = [message for message in replies if not message.has_error()]
        arrays, metrics = self.strategy.aggregate_train(server_round, replies)
        values = dict(metrics or {})
        rejected = int(values.get("rejected_payloads", 0))
        self.meter.record(
            server_round,
            bytes_up=message_nbytes(received),
            bytes_up_serialized=message_nbytes(received, serialized=True),
            fit_failures=len(replies) - len(received) + rejected,
            **values,
        )
        return arrays, metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Delegate, then count the array bytes of the evaluation messages."""
        messages = list(self.strategy.configure_evaluate(server_round, arrays, config, grid))
        if messages:
            self.meter.record(server_round, bytes_down_evaluate=message_nbytes(messages))
        return messages

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Delegate; record the aggregated client metrics."""
        replies = list(replies)
        metrics = self.strategy.aggregate_evaluate(server_round, replies)
        failed = sum(message.has_error() for message in replies)
        self.meter.record(server_round, evaluate_failures=failed, **dict(metrics or {}))
        return metrics

    def start(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord | None = None,
        num_rounds: int = 3,
        timeout: float = 3600,
        train_config: ConfigRecord | None = None,
        evaluate_config: ConfigRecord | None = None,
        evaluate_fn: EvaluateFn | None = None,
    ) -> Result:
        """Flower's round loop through the wrapper; server-side evaluation is recorded
        and closes every round with its one-line summary in the log."""
        if evaluate_fn is None and isinstance(self.strategy, ModelFreeStrategy):
            evaluate_fn = self.strategy.evaluate

        def metered_evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
            outcome = evaluate_fn(server_round, arrays) if evaluate_fn else None
            values = dict(outcome or {})
            if "loss" in values:
                values["global_loss"] = values.pop("loss")
            record = self.meter.record(server_round, **values)
            if server_round > 0:
                self.meter.log(record)
            return outcome

        return super().start(
            grid=grid,
            initial_arrays=initial_arrays if initial_arrays is not None else ArrayRecord(),
            num_rounds=num_rounds,
            timeout=timeout,
            train_config=train_config,
            evaluate_config=evaluate_config,
            evaluate_fn=metered_evaluate,
        )
