"""The server core shared by every strategy without a global model, free of Flower's
APIs: the exchange each strategy implements (:mod:`~flower_synth.exchange.server`), the
strategies' keyword arguments (:mod:`~flower_synth.exchange.options`), client-metric
aggregation (:mod:`~flower_synth.exchange.metrics`), checkpoints
(:mod:`~flower_synth.exchange.checkpoint`, saved every round by
:mod:`~flower_synth.exchange.round_checkpoints`), byte and time metering
(:mod:`~flower_synth.exchange.metering`) and the per-run results recorder
(:mod:`~flower_synth.exchange.recorder`)."""
