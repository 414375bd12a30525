"""A ClientApp for the reliability tests: it answers exactly as flower-synth's own
ClientApp, except on a SuperNode started with node config ``rogue=1``, where it
replaces its synthetic samples with float16 values no image has (a poisoning client)."""

from __future__ import annotations

import numpy as np
from flwr.app import ArrayRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from flower_synth.app import client_app as honest
from flower_synth.wire.deflate import inflate, is_deflated

app = ClientApp()


@app.train()
def train(message: Message, context: Context) -> Message:
    reply = honest.train(message, context)
    if not context.node_config.get("rogue"):
        return reply
    arrays = reply.content.array_records["arrays"].to_numpy_ndarrays()
    if is_deflated(arrays):  # the server takes uncompressed payloads as well
        arrays = inflate(arrays, max_bytes=2**31)
    arrays[0] = np.full(arrays[0].shape, 6e4, np.float16)
    content = RecordDict({"arrays": ArrayRecord(arrays), "metrics": reply.content["metrics"]})
    return Message(content, reply_to=message)


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    return honest.evaluate(message, context)
