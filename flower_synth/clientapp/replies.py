"""Answering Message-API ``train`` and ``evaluate`` messages with a learner."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from flower_synth.learning.learner import Learner

NUM_EXAMPLES_KEY = "num-examples"  # what flwr's Message-API strategies weigh replies by


def message_config(message: Message, configrecord_key: str = "config") -> dict[str, Any]:
    """The message's config with every ``-`` in a key read as ``_``: Flower's
    Message-API strategies send ``server-round`` and ``proximal-mu``, the learners
    read ``server_round`` and ``proximal_mu`` (keys already with ``_`` pass as they are)."""
    record = message.content.config_records.get(configrecord_key)
    return {key.replace("-", "_"): value for key, value in (record or {}).items()}


def received_arrays(message: Message, arrayrecord_key: str = "arrays") -> list:
    """The message's arrays as numpy arrays, in order (none if it carries none)."""
    record = message.content.array_records.get(arrayrecord_key)
    return [] if record is None else record.to_numpy_ndarrays()


def train_reply(message: Message, learner: Learner, arrayrecord_key: str = "arrays") -> Message:
    """Let ``learner`` fit on a ``train`` message; the reply carries its arrays under
    ``arrayrecord_key`` and its metrics with ``num-examples`` under ``metrics``."""
    fitted = learner.fit(received_arrays(message, arrayrecord_key), message_config(message))
    metrics = MetricRecord(dict(fitted.metrics) | {NUM_EXAMPLES_KEY: fitted.num_examples})
    content = RecordDict({arrayrecord_key: ArrayRecord(fitted.arrays), "metrics": metrics})
    return Message(content, reply_to=message)


def evaluate_reply(message: Message, learner: Learner, arrayrecord_key: str = "arrays") -> Message:
    """Let ``learner`` evaluate on an ``evaluate`` message; the reply carries its
    metrics with ``loss`` and ``num-examples`` (0 for a learner that has not trained
    yet, so example-weighted aggregation leaves it out) under ``metrics``."""
    evaluated = learner.evaluate(received_arrays(message, arrayrecord_key), message_config(message))
    values = dict(evaluated.metrics) | {
        "loss": evaluated.loss,
        NUM_EXAMPLES_KEY: evaluated.num_examples,
    }
    return Message(RecordDict({"metrics": MetricRecord(values)}), reply_to=message)


def learner_app(make_learner: Callable[[Context], Learner]) -> ClientApp:
    """A ``ClientApp`` whose ``train`` and ``evaluate`` handlers answer with the learner
    ``make_learner(context)`` builds (the node's state lives in ``context.state``, so
    building it anew for every message is how Flower means it)::

        app = learner_app(lambda context: SyntheticLearner(..., context.state, ...))
    """
    app = ClientApp()

    @app.train()
    def train(message: Message, context: Context) -> Message:
        return train_reply(message, make_learner(context))

    @app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        return evaluate_reply(message, make_learner(context))

    return app
