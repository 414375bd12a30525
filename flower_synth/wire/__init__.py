"""What travels between clients and server, and its validation: synthetic samples and
their labels (:mod:`~flower_synth.wire.payload`), deflated arrays
(:mod:`~flower_synth.wire.deflate`) and the variables a pool carries
(:mod:`~flower_synth.wire.variables`). Everything a client sends is decoded here before
anything else touches it."""
