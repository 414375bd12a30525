"""Synthetic-sample exchange, free of Flower's APIs: the client's learning
(:mod:`~flower_synth.synthetic.learner`), the server's pools and downloads
(:mod:`~flower_synth.synthetic.pools`) and the classifier it trains on them
(:mod:`~flower_synth.synthetic.server_classifier`)."""
