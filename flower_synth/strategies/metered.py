"""A legacy strategy wrapper that meters communication and time, records every round,
and checkpoints the run after every round so that it can resume."""

from __future__ import annotations

from flwr.common import (
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import Strategy

from flower_synth.exchange.checkpoint import Checkpoint
from flower_synth.exchange.failed_start import check_first_round
from flower_synth.exchange.metering import (
    RoundMeter,
    parameters_nbytes,
    parameters_serialized_nbytes,
)
from flower_synth.exchange.recorder import RunRecorder
from flower_synth.exchange.round_checkpoints import RoundCheckpoints
from flower_synth.exchange.server import screened
from flower_synth.strategies.model_free import check_evaluate_res, check_fit_res


def failure_reason(failure: tuple[ClientProxy, FitRes] | BaseException) -> str:
    """What a legacy fit failure says: the exception, or the result's status message."""
    if isinstance(failure, BaseException):
        return f"{type(failure).__name__}: {failure}"
    return failure[1].status.message


class MeteredStrategy(Strategy):
    """Wrap any legacy Flower strategy; count the bytes it exchanges and time its rounds.

    Every hook is delegated to ``strategy`` unchanged. Around it the wrapper records,
    per round, into ``recorder``:

    * ``bytes_down`` / ``bytes_up``: array bytes sent in fit instructions and received
      in fit results (``*_serialized`` variants: the serialized sizes);
    * ``bytes_down_evaluate``: array bytes sent for client-side evaluation;
    * ``fit_failures`` / ``evaluate_failures``: clients whose fit or evaluate failed,
      including replies whose count or metrics fail
      :func:`~flower_synth.wire.client_metrics.check_report` (moved to the failures
      before the wrapped strategy sees them) and payloads the wrapped strategy rejected
      (its ``rejected_payloads`` / ``rejected_evaluations`` metrics);
    * every metric the wrapped strategy returns from ``aggregate_fit``,
      ``aggregate_evaluate`` and ``evaluate`` (the latter's loss as ``global_loss``);
    * ``seconds``: wall time from the start of ``configure_fit`` to the end of the
      round's last hook.

    Bytes are read from the arrays' headers (:mod:`flower_synth.exchange.metering`), so a payload
    that does not decode is counted and then rejected by the strategy, never a crash.

    With a ``checkpoint``, the state after every completed round goes there, as the
    Message-API :class:`~flower_synth.serverapp.strategy.MeteredStrategy` saves it (the
    round, the global parameters, the wrapped strategy's state where it is
    :class:`~flower_synth.exchange.checkpoint.Stateful`, and the results so far); a round
    is complete once its client evaluation is aggregated (or was not asked for).
    :meth:`resume` before the server starts continues from it: give Flower's
    ``ServerConfig`` ``num_rounds=metered.rounds_left(num_rounds)``; rounds are then
    numbered on from the checkpoint and the server starts from its parameters::

        metered = MeteredStrategy(strategy, recorder, Checkpoint("run.checkpoint.npz"))
        metered.resume()
        config = ServerConfig(num_rounds=metered.rounds_left(num_rounds))

    Args:
        strategy: the strategy that does the work (e.g. ``flwr.server.strategy.FedAvg``).
        recorder: where round records go (a JSON file rewritten after each hook).
        checkpoint: where the state after each round goes (None: nowhere).
    """

    def __init__(
        self, strategy: Strategy, recorder: RunRecorder, checkpoint: Checkpoint | None = None
    ) -> None:
        super().__init__()
        self.strategy = strategy
        self.meter = RoundMeter(recorder)
        self.checkpoints = RoundCheckpoints(checkpoint, recorder, strategy)
        self.completed = 0  # rounds an earlier run completed (see resume)
        self.resumed: Parameters | None = None
        self.latest: Parameters | None = None  # the global parameters of the round

    def resume(self) -> int:
        """Continue from the checkpoint, if one was saved: restore the wrapped
        strategy's state, the global parameters and the results so far. Returns the
        last completed round (0: nothing to resume)."""
        self.completed, arrays = self.checkpoints.resume()
        if self.completed:
            self.resumed = ndarrays_to_parameters(list(arrays.values()))
        return self.completed

    def rounds_left(self, num_rounds: int) -> int:
        """The rounds up to ``num_rounds`` left after :meth:`resume`."""
        return max(num_rounds - self.completed, 0)

    def save(self, server_round: int) -> None:
        """Checkpoint the state after ``server_round``."""
        arrays = parameters_to_ndarrays(self.latest) if self.latest is not None else []
        self.checkpoints.save(server_round, {str(i): a for i, a in enumerate(arrays)})

    def __repr__(self) -> str:
        return f"MeteredStrategy({self.strategy!r})"

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        """Delegate: the wrapped strategy's initial global parameters (after
        :meth:`resume`: the checkpoint's)."""
        if self.resumed is not None:
            return self.resumed
        return self.strategy.initialize_parameters(client_manager)

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        """Delegate, then count the array bytes of every fit instruction."""
        server_round += self.completed
        self.meter.start(server_round)
        instructions = self.strategy.configure_fit(server_round, parameters, client_manager)
        self.meter.lap(server_round, "configure_train")
        sent = [ins.parameters for _, ins in instructions]
        self.meter.record(
            server_round,
            clients_sampled=len(instructions),
            bytes_down=sum(map(parameters_nbytes, sent)),
            bytes_down_serialized=sum(map(parameters_serialized_nbytes, sent)),
        )
        return instructions

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """Count the array bytes received, move the results whose count or metrics fail
        :func:`~flower_synth.wire.client_metrics.check_report` to the failures, then
        delegate; record the fit metrics. Raises
        :class:`~flower_synth.exchange.failed_start.EveryClientFailed` if every client
        failed the run's first round."""
        check_first_round(server_round, len(results), list(map(failure_reason, failures)))
        server_round += self.completed
        self.meter.lap(server_round, "train_replies")
        received = [res.parameters for _, res in results]
        results, rejected_reports = screened(results, check_fit_res, "aggregate_fit")
        failures = [*failures, *rejected_reports]
        parameters, metrics = self.strategy.aggregate_fit(server_round, results, failures)
        self.meter.lap(server_round, "aggregate_train")
        rejected = int((metrics or {}).get("rejected_payloads", 0))
        self.meter.record(
            server_round,
            bytes_up=sum(map(parameters_nbytes, received)),
            bytes_up_serialized=sum(map(parameters_serialized_nbytes, received)),
            fit_failures=len(failures) + rejected,
            **(metrics or {}),
        )
        return parameters, metrics

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        """Delegate, then count the array bytes sent for client-side evaluation; a round
        without client evaluation ends here (and is checkpointed)."""
        server_round += self.completed
        self.latest = parameters
        self.meter.lap(server_round, "other")
        instructions = self.strategy.configure_evaluate(server_round, parameters, client_manager)
        self.meter.lap(server_round, "configure_evaluate")
        if instructions:
            self.meter.record(
                server_round,
                bytes_down_evaluate=sum(parameters_nbytes(i.parameters) for _, i in instructions),
            )
        else:
            self.save(server_round)
        return instructions

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        """Move the results whose count, loss or metrics fail
        :func:`~flower_synth.wire.client_metrics.check_report` to the failures, then
        delegate; record the aggregated client metrics, checkpoint the round and log its
        summary."""
        server_round += self.completed
        self.meter.lap(server_round, "evaluate_replies")
        results, rejected_reports = screened(results, check_evaluate_res, "aggregate_evaluate")
        failures = [*failures, *rejected_reports]
        loss, metrics = self.strategy.aggregate_evaluate(server_round, results, failures)
        self.meter.lap(server_round, "aggregate_evaluate")
        failed = len(failures) + int((metrics or {}).get("rejected_evaluations", 0))
        record = self.meter.record(
            server_round, personalized_loss=loss, evaluate_failures=failed, **(metrics or {})
        )
        self.save(server_round)  # before the log line: it says "done"
        self.meter.log(record)
        return loss, metrics

    def evaluate(
        self, server_round: int, parameters: Parameters
    ) -> tuple[float, dict[str, Scalar]] | None:
        """Delegate server-side evaluation; record its loss as ``global_loss`` (a
        resumed run does not evaluate its start again)."""
        if server_round == 0 and self.completed:
            return None
        server_round += self.completed
        self.meter.lap(server_round, "other")
        outcome = self.strategy.evaluate(server_round, parameters)
        self.meter.lap(server_round, "server_evaluate")
        if outcome is not None:
            loss, metrics = outcome
            self.meter.record(server_round, global_loss=loss, **metrics)
        return outcome
