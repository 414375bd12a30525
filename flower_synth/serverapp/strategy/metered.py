"""A Message-API strategy wrapper that meters communication and time, records every
round, and checkpoints the run after every round so that it can resume."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy

from flower_synth.exchange.checkpoint import Checkpoint
from flower_synth.exchange.failed_start import check_first_round
from flower_synth.exchange.metering import (
    RoundMeter,
    arrayrecord_nbytes,
    arrayrecord_serialized_nbytes,
)
from flower_synth.exchange.recorder import RunRecorder
from flower_synth.exchange.round_checkpoints import RoundCheckpoints
from flower_synth.exchange.server import screened
from flower_synth.serverapp.strategy.model_free import (
    EvaluateFn,
    ModelFreeStrategy,
    arrays_by_name,
    check_message_metrics,
)


def metric_names(message: Message) -> tuple[tuple[str, ...], ...]:
    """The names of a reply's metric records and of the metrics in each."""
    records = message.content.metric_records
    return tuple((name, *sorted(record)) for name, record in sorted(records.items()))


def check_metric_names(message: Message, expected: tuple[tuple[str, ...], ...]) -> None:
    """``ValueError`` unless the reply's :func:`metric_names` are ``expected``."""
    if (names := metric_names(message)) != expected:
        raise ValueError(f"metric names {names} differ from the other replies' {expected}")


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
    * ``fit_failures`` and ``evaluate_failures``: replies with an error, replies whose
      metrics fail :func:`~flower_synth.serverapp.strategy.model_free.check_message_metrics`
      (left out before the wrapped strategy sees them), and what the wrapped strategy
      rejected (its ``rejected_payloads`` / ``rejected_evaluations``);
    * every metric of ``aggregate_train``, ``aggregate_evaluate`` and of server-side
      evaluation (its ``loss`` as ``global_loss``; round 0 under ``initial``);
    * ``seconds``: wall time from ``configure_train`` to the round's last step.

    :meth:`start` runs Flower's round loop through the wrapper; its ``evaluate_fn``
    defaults to the wrapped strategy's own where it has one (the strategies of
    :mod:`flower_synth.serverapp.strategy`).

    With a ``checkpoint``, the state after every completed round goes there (the
    round, the global arrays, the wrapped strategy's state where it is
    :class:`~flower_synth.exchange.checkpoint.Stateful`, and the results so far);
    :meth:`resume` before :meth:`start` continues from it, so a run whose ServerApp or
    SuperLink died repeats no completed round and loses none.

    Args:
        strategy: the strategy that does the work (e.g. flwr's Message-API ``FedAvg``).
        recorder: where round records go (a JSON file rewritten after each step).
        checkpoint: where the state after each round goes (None: nowhere).
    """

    def __init__(
        self, strategy: Strategy, recorder: RunRecorder, checkpoint: Checkpoint | None = None
    ) -> None:
        self.strategy = strategy
        self.meter = RoundMeter(recorder)
        self.checkpoints = RoundCheckpoints(checkpoint, recorder, strategy)
        self.completed = 0  # rounds an earlier run completed (see resume)
        self.resumed_arrays: ArrayRecord | None = None

    def resume(self) -> int:
        """Continue from the checkpoint, if one was saved: restore the wrapped
        strategy's state, the global arrays and the results so far; :meth:`start` then
        runs the rounds that are left. Returns the last completed round (0: nothing to
        resume)."""
        self.completed, arrays = self.checkpoints.resume()
        if self.completed:
            self.resumed_arrays = ArrayRecord(array_dict=arrays_by_name(arrays))
        return self.completed

    def save(self, server_round: int, arrays: ArrayRecord) -> None:
        """Checkpoint the state after ``server_round``."""
        self.checkpoints.save(server_round, {name: arrays[name].numpy() for name in arrays})

    def summary(self) -> None:
        """Delegate."""
        self.strategy.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Delegate, then count the array bytes of every training message."""
        server_round += self.completed
        self.meter.start(server_round)
        messages = list(self.strategy.configure_train(server_round, arrays, config, grid))
        self.meter.lap(server_round, "configure_train")
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
        """Count the array bytes received, leave out the replies whose metrics fail
        :func:`~flower_synth.serverapp.strategy.model_free.check_message_metrics`
        (counted as failures), then delegate; record the metrics. Raises
        :class:`~flower_synth.exchange.failed_start.EveryClientFailed` if every node
        failed the run's first round."""
        replies = list(replies)
        errors = [message for message in replies if message.has_error()]
        received = [message for message in replies if not message.has_error()]
        check_first_round(server_round, len(received), [m.error.reason for m in errors])
        server_round += self.completed
        self.meter.lap(server_round, "train_replies")
        valid, rejected_reports = self.screen(received, "aggregate_train")
        arrays, metrics = self.strategy.aggregate_train(server_round, [*valid, *errors])
        self.meter.lap(server_round, "aggregate_train")
        values = dict(metrics or {})
        rejected = int(values.get("rejected_payloads", 0)) + len(rejected_reports)
        self.meter.record(
            server_round,
            bytes_up=message_nbytes(received),
            bytes_up_serialized=message_nbytes(received, serialized=True),
            fit_failures=len(errors) + rejected,
            **values,
        )
        return arrays, metrics

    def screen(self, replies: list[Message], stage: str) -> tuple[list[Message], list[Message]]:
        """The replies whose metrics pass
        :func:`~flower_synth.serverapp.strategy.model_free.check_message_metrics` (the
        wrapped strategy's ``weighted_by_key`` as the count), and the others. For a
        strategy of flwr's, which refuses a whole round whose replies differ in their
        metric names (``InconsistentMessageReplies``, raised out of the round loop), a
        reply whose names differ from the most common ones is the others' too."""
        key = getattr(self.strategy, "weighted_by_key", "num-examples")
        valid, rejected = screened(
            replies, lambda message: check_message_metrics(message, key), stage
        )
        if isinstance(self.strategy, ModelFreeStrategy) or not valid:
            return valid, rejected
        names = Counter(metric_names(message) for message in valid).most_common(1)[0][0]
        same, odd = screened(valid, lambda message: check_metric_names(message, names), stage)
        return same, [*rejected, *odd]

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Delegate, then count the array bytes of the evaluation messages."""
        server_round += self.completed
        self.meter.lap(server_round, "other")
        messages = list(self.strategy.configure_evaluate(server_round, arrays, config, grid))
        self.meter.lap(server_round, "configure_evaluate")
        if messages:
            self.meter.record(server_round, bytes_down_evaluate=message_nbytes(messages))
        return messages

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Leave out the replies whose metrics fail
        :func:`~flower_synth.serverapp.strategy.model_free.check_message_metrics`
        (counted as failures), then delegate; record the aggregated client metrics."""
        server_round += self.completed
        self.meter.lap(server_round, "evaluate_replies")
        replies = list(replies)
        errors = [message for message in replies if message.has_error()]
        valid, rejected_reports = self.screen(
            [message for message in replies if not message.has_error()], "aggregate_evaluate"
        )
        metrics = self.strategy.aggregate_evaluate(server_round, [*valid, *errors])
        self.meter.lap(server_round, "aggregate_evaluate")
        values = dict(metrics or {})
        failed = len(errors) + len(rejected_reports) + int(values.get("rejected_evaluations", 0))
        self.meter.record(server_round, evaluate_failures=failed, **values)
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
        """Flower's round loop through the wrapper, for the rounds up to ``num_rounds``
        that are left after :meth:`resume`; server-side evaluation is recorded and
        closes every round with its one-line summary in the log, then the round is
        checkpointed."""
        if evaluate_fn is None and isinstance(self.strategy, ModelFreeStrategy):
            evaluate_fn = self.strategy.evaluate
        if self.resumed_arrays is not None:
            initial_arrays = self.resumed_arrays

        def metered_evaluate(local_round: int, arrays: ArrayRecord) -> MetricRecord | None:
            if local_round == 0 and self.completed:
                return None  # the run being resumed evaluated its start already
            server_round = local_round + self.completed
            self.meter.lap(server_round, "other")
            outcome = evaluate_fn(server_round, arrays) if evaluate_fn else None
            self.meter.lap(server_round, "server_evaluate")
            values = dict(outcome or {})
            if "loss" in values:
                values["global_loss"] = values.pop("loss")
            record = self.meter.record(server_round, **values)
            if server_round > 0:
                self.save(server_round, arrays)  # before the log line: it says "done"
                self.meter.log(record)
            return outcome

        return super().start(
            grid=grid,
            initial_arrays=initial_arrays if initial_arrays is not None else ArrayRecord(),
            num_rounds=max(num_rounds - self.completed, 0),
            timeout=timeout,
            train_config=train_config,
            evaluate_config=evaluate_config,
            evaluate_fn=metered_evaluate,
        )
