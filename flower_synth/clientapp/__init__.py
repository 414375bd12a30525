"""Client side for Flower's Message API (``ClientApp`` with ``@app.train()`` and
``@app.evaluate()`` handlers): :func:`train_reply` and :func:`evaluate_reply` answer a
message with a :class:`~flower_synth.learning.learner.Learner`, and the learners are here too::

    from flower_synth.clientapp import SyntheticLearner, evaluate_reply, train_reply

    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        return train_reply(msg, make_learner(context))

or, with both handlers at once, ``app = learner_app(make_learner)``.

The legacy ``NumPyClient`` classes serving the same learners are in
:mod:`flower_synth.clients`.
"""

from flower_synth.clientapp.gmm_prototype_hooks import GMMPrototypeHooks
from flower_synth.clientapp.replies import (
    evaluate_reply,
    learner_app,
    message_config,
    train_reply,
)
from flower_synth.clientapp.synthetic_hooks import SyntheticSampleHooks
from flower_synth.learning.classifier_training import ClassifierTraining
from flower_synth.learning.fedavg_learner import FedAvgLearner
from flower_synth.learning.local_only_learner import LocalOnlyLearner
from flower_synth.prototypes.fedproto_learner import FedProtoLearner
from flower_synth.prototypes.gmm_learner import GMMPrototypeLearner
from flower_synth.synthetic.composited import CompositedModality
from flower_synth.synthetic.learner import SyntheticLearner
from flower_synth.synthetic.modality import CleanModality, Modality

__all__ = [
    "ClassifierTraining",
    "CleanModality",
    "CompositedModality",
    "FedAvgLearner",
    "FedProtoLearner",
    "GMMPrototypeHooks",
    "GMMPrototypeLearner",
    "LocalOnlyLearner",
    "Modality",
    "SyntheticLearner",
    "SyntheticSampleHooks",
    "evaluate_reply",
    "learner_app",
    "message_config",
    "train_reply",
]
