"""A run that cannot work says so before or at its first round: every run-config key
checked when the run starts, and a first round in which every client failed stops the
run with the clients' reason instead of a run reported complete."""

from __future__ import annotations

from pathlib import Path
from unittest.mock import Mock

import pytest
from conftest import fit_result, idle_federation
from flwr.app import Message, MetricRecord, RecordDict
from flwr.server.strategy import FedAvg
from flwr.serverapp.strategy import FedAvg as MessageFedAvg

from flower_synth.app.config import RunSettings
from flower_synth.exchange.failed_start import EveryClientFailed
from flower_synth.exchange.recorder import RunRecorder
from flower_synth.serverapp import strategy as message_api
from flower_synth.strategies import MeteredStrategy

TRUST_REASON = "the trust matrix has 3 rows but the federation has 10 partitions"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("seed", -1, "seed must be an integer in"),
        ("seed", 2**40, "seed must be an integer in"),
        ("momentum", 5.0, "momentum must lie in"),
        ("momentum", -0.1, "momentum must lie in"),
        ("learning-rate", float("nan"), "learning-rate must be a finite number"),
        ("sample-ratio", float("inf"), "sample-ratio must be a finite number"),
        ("proximal-mu", -1.0, "proximal-mu must be >= 0"),
        ("examples-per-class", -3, "examples-per-class must be >= 0"),
    ],
)
def test_a_bad_run_config_value_is_refused_naming_the_key(key, value, message) -> None:
    with pytest.raises(ValueError, match=message):
        RunSettings.from_run_config({key: value})


def test_every_legacy_client_failing_the_first_round_stops_the_run(tmp_path: Path) -> None:
    metered = MeteredStrategy(FedAvg(), RunRecorder(tmp_path / "run.json", config={}))
    failures = [ValueError(TRUST_REASON), ValueError(TRUST_REASON)]
    with pytest.raises(EveryClientFailed, match=TRUST_REASON):
        metered.aggregate_fit(1, [], failures)


def test_a_first_round_with_one_success_or_a_later_round_goes_on(tmp_path: Path) -> None:
    metered = MeteredStrategy(FedAvg(), RunRecorder(tmp_path / "run.json", config={}))
    _, proxies = idle_federation(1)
    metered.aggregate_fit(1, [(proxies[0], fit_result([], {}, 10))], [ValueError("lost")])
    metered.aggregate_fit(2, [], [ValueError(TRUST_REASON)])  # the run had started


def failed_message(reason: str) -> Message:
    message = Mock(spec=Message)
    message.has_error.side_effect = lambda: True
    message.error.reason = reason
    return message


def test_every_node_failing_the_first_round_stops_a_message_api_run(tmp_path: Path) -> None:
    metered = message_api.MeteredStrategy(
        MessageFedAvg(), RunRecorder(tmp_path / "run.json", config={})
    )
    with pytest.raises(EveryClientFailed, match=TRUST_REASON):
        metered.aggregate_train(1, [failed_message(TRUST_REASON)] * 3)


def test_a_round_of_rejected_payloads_is_not_a_failed_start(tmp_path: Path) -> None:
    """Replies the strategy rejects come from clients that ran: the server stays up."""
    metered = message_api.MeteredStrategy(
        message_api.SyntheticSampleStrategy(sample_shape=(1, 4, 4), num_classes=3),
        RunRecorder(tmp_path / "run.json", config={}),
    )
    rogue = Mock(spec=Message)
    rogue.has_error.side_effect = lambda: False
    rogue.content = RecordDict({"metrics": MetricRecord({"num-examples": 10})})
    rogue.metadata.src_node_id = 7
    _, metrics = metered.aggregate_train(1, [rogue])
    assert dict(metrics)["rejected_payloads"] == 1
