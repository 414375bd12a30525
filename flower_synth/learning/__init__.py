"""The client side shared by every strategy, free of Flower's APIs: the learner contract
(:mod:`~flower_synth.learning.learner`), classifier training and evaluation
(:mod:`~flower_synth.learning.training`), soft labels and prior correction
(:mod:`~flower_synth.learning.distillation`), input normalisation, devices, state kept
across rounds in ``Context.state``, and the learners of the references (FedAvg/FedProx,
local-only)."""
