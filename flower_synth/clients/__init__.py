"""Legacy Flower clients (``NumPyClient``), for projects with
``ClientApp(client_fn=...)``; the Message-API handlers are in
:mod:`flower_synth.clientapp`. Both serve the same learners
(:mod:`flower_synth.learning.learner`)."""

from flower_synth.clients.fedavg_client import FedAvgClient
from flower_synth.clients.fedproto_client import FedProtoClient
from flower_synth.clients.gmm_prototype_client import GMMPrototypeClient
from flower_synth.clients.learner_client import LearnerClient
from flower_synth.clients.local_only_client import LocalOnlyClient
from flower_synth.clients.synthetic_client import SyntheticSampleClient
from flower_synth.learning.classifier_training import ClassifierTraining

__all__ = [
    "ClassifierTraining",
    "FedAvgClient",
    "FedProtoClient",
    "GMMPrototypeClient",
    "LearnerClient",
    "LocalOnlyClient",
    "SyntheticSampleClient",
]
