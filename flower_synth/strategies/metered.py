"""A legacy strategy wrapper that meters communication and time and records every round."""

from __future__ import annotations

from flwr.common import EvaluateIns, EvaluateRes, FitIns, FitRes, Parameters, Scalar
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import Strategy

from flower_synth.exchange.metering import (
    RoundMeter,
    parameters_nbytes,
    parameters_serialized_nbytes,
)
from flower_synth.exchange.recorder import RunRecorder


class MeteredStrategy(Strategy):
    """Wrap any legacy Flower strategy; count the bytes it exchanges and time its rounds.

    Every hook is delegated to ``strategy`` unchanged. Around it the wrapper records,
    per round, into ``recorder``:

    * ``bytes_down`` / ``bytes_up``: array bytes sent in fit instructions and received
      in fit results (``*_serialized`` variants: the serialized sizes);
    * ``bytes_down_evaluate``: array bytes sent for client-side evaluation;
    * ``fit_failures`` / ``evaluate_failures``: clients whose fit or evaluate failed,
      fit failures including payloads the wrapped strategy rejected (its
      ``rejected_payloads`` metric);
    * every metric the wrapped strategy returns from ``aggregate_fit``,
      ``aggregate_evaluate`` and ``evaluate`` (the latter's loss as ``global_loss``);
    * ``seconds``: wall time from the start of ``configure_fit`` to the end of the
      round's last hook.

    Bytes are read from the arrays' headers (:mod:`flower_synth.exchange.metering`), so a payload
    that does not decode is counted and then rejected by the strategy, never a crash.

    Args:
        strategy: the strategy that does the work (e.g. ``flwr.server.strategy.FedAvg``).
        recorder: where round records go (a JSON file rewritten after each hook).
    """

    def __init__(self, strategy: Strategy, recorder: RunRecorder) -> None:
        super().__init__()
        self.strategy = strategy
        self.meter = RoundMeter(recorder)

    def __repr__(self) -> str:
        return f"MeteredStrategy({self.strategy!r})"

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        """Delegate: the wrapped strategy's initial global parameters."""
        return self.strategy.initialize_parameters(client_manager)

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        """Delegate, then count the array bytes of every fit instruction."""
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
        """Count the array bytes received, then delegate; record the fit metrics."""
        self.meter.lap(server_round, "train_replies")
        received = [res.parameters for _, res in results]
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
        """Delegate, then count the array bytes sent for client-side evaluation."""
        self.meter.lap(server_round, "other")
        instructions = self.strategy.configure_evaluate(server_round, parameters, client_manager)
        self.meter.lap(server_round, "configure_evaluate")
        if instructions:
            self.meter.record(
                server_round,
                bytes_down_evaluate=sum(parameters_nbytes(i.parameters) for _, i in instructions),
            )
        return instructions

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        """Delegate; record the aggregated client metrics and log the round summary."""
        self.meter.lap(server_round, "evaluate_replies")
        loss, metrics = self.strategy.aggregate_evaluate(server_round, results, failures)
        self.meter.lap(server_round, "aggregate_evaluate")
        record = self.meter.record(
            server_round, personalized_loss=loss, evaluate_failures=len(failures), **(metrics or {})
        )
        self.meter.log(record)
        return loss, metrics

    def evaluate(
        self, server_round: int, parameters: Parameters
    ) -> tuple[float, dict[str, Scalar]] | None:
        """Delegate server-side evaluation; record its loss as ``global_loss``."""
        self.meter.lap(server_round, "other")
        outcome = self.strategy.evaluate(server_round, parameters)
        self.meter.lap(server_round, "server_evaluate")
        if outcome is not None:
            loss, metrics = outcome
            self.meter.record(server_round, global_loss=loss, **metrics)
        return outcome
