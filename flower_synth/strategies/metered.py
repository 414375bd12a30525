"""A strategy wrapper that meters communication and time and records every round."""

from __future__ import annotations

import time
from logging import INFO

from flwr.common import (
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    Parameters,
    Scalar,
    parameters_to_ndarrays,
)
from flwr.common.logger import log
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import Strategy

from flower_synth.results import RunRecorder

ROUND_MARKER = "[flower-synth] "  # prefix of the one-line round summary in the server log


def payload_nbytes(parameters: Parameters) -> int:
    """Bytes of array data in ``parameters``: the sum of the arrays' ``nbytes``.

    Serialization headers are excluded, so the figure is the same whatever the wire
    format; :func:`serialized_nbytes` gives the serialized size.
    """
    return sum(array.nbytes for array in parameters_to_ndarrays(parameters))


def serialized_nbytes(parameters: Parameters) -> int:
    """Bytes of ``parameters`` as serialized by Flower (array data plus headers)."""
    return sum(len(tensor) for tensor in parameters.tensors)


class MeteredStrategy(Strategy):
    """Wrap any Flower strategy; count the bytes it exchanges and time its rounds.

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

    Args:
        strategy: the strategy that does the work (e.g. ``flwr.server.strategy.FedAvg``).
        recorder: where round records go (a JSON file rewritten after each hook).
    """

    def __init__(self, strategy: Strategy, recorder: RunRecorder) -> None:
        super().__init__()
        self.strategy = strategy
        self.recorder = recorder
        self._round_started: dict[int, float] = {}

    def __repr__(self) -> str:
        return f"MeteredStrategy({self.strategy!r})"

    def _record(self, server_round: int, **values: Scalar | None) -> dict:
        started = self._round_started.get(server_round)
        if started is not None:
            values["seconds"] = time.perf_counter() - started
        return self.recorder.update(server_round, **values)

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        """Delegate: the wrapped strategy's initial global parameters."""
        return self.strategy.initialize_parameters(client_manager)

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        """Delegate, then count the array bytes of every fit instruction."""
        self._round_started[server_round] = time.perf_counter()
        instructions = self.strategy.configure_fit(server_round, parameters, client_manager)
        self._record(
            server_round,
            clients_sampled=len(instructions),
            bytes_down=sum(payload_nbytes(ins.parameters) for _, ins in instructions),
            bytes_down_serialized=sum(serialized_nbytes(ins.parameters) for _, ins in instructions),
        )
        return instructions

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """Count the array bytes received, then delegate; record the fit metrics."""
        bytes_up = sum(payload_nbytes(res.parameters) for _, res in results)
        bytes_up_serialized = sum(serialized_nbytes(res.parameters) for _, res in results)
        parameters, metrics = self.strategy.aggregate_fit(server_round, results, failures)
        rejected = int((metrics or {}).get("rejected_payloads", 0))
        self._record(
            server_round,
            bytes_up=bytes_up,
            bytes_up_serialized=bytes_up_serialized,
            fit_failures=len(failures) + rejected,
            **(metrics or {}),
        )
        return parameters, metrics

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        """Delegate, then count the array bytes sent for client-side evaluation."""
        instructions = self.strategy.configure_evaluate(server_round, parameters, client_manager)
        if instructions:
            self._record(
                server_round,
                bytes_down_evaluate=sum(payload_nbytes(ins.parameters) for _, ins in instructions),
            )
        return instructions

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        """Delegate; record the aggregated client metrics and log the round summary."""
        loss, metrics = self.strategy.aggregate_evaluate(server_round, results, failures)
        record = self._record(
            server_round, personalized_loss=loss, evaluate_failures=len(failures), **(metrics or {})
        )
        log(INFO, "%s%s", ROUND_MARKER, format_round(record))
        return loss, metrics

    def evaluate(
        self, server_round: int, parameters: Parameters
    ) -> tuple[float, dict[str, Scalar]] | None:
        """Delegate server-side evaluation; record its loss as ``global_loss``."""
        outcome = self.strategy.evaluate(server_round, parameters)
        if outcome is not None:
            loss, metrics = outcome
            self._record(server_round, global_loss=loss, **metrics)
        return outcome


def format_round(record: dict) -> str:
    """One human-readable line summarising a round record."""

    def pct(key: str) -> str:
        value = record.get(key)
        return "n/a" if value is None else f"{100 * value:.2f}%"

    def megabytes(key: str) -> str:
        return f"{(record.get(key) or 0) / 1e6:.2f} MB"

    return (
        f"round {record['round']}: global acc {pct('global_accuracy')}, personalized acc "
        f"{pct('personalized_accuracy')}, down {megabytes('bytes_down')}, up "
        f"{megabytes('bytes_up')}, {record.get('seconds') or 0:.1f} s"
    )
