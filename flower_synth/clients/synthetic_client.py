"""The legacy Flower client of synthetic-sample exchange (a ``NumPyClient``)."""

from __future__ import annotations

from flwr.client import NumPyClient
from flwr.common import NDArrays, Scalar

from flower_synth.clients.fedavg_client import round_seed
from flower_synth.payload import encode_samples, validate_payload
from flower_synth.synthetic.learner import SyntheticLearner

# Received payloads are as large as the server's download budget; the client trusts
# the server's size and checks everything else.
UNBOUNDED = 2**62


class SyntheticSampleClient(NumPyClient):
    """A client that owns a generative model and a classifier; only samples leave it.

    ``fit`` receives other clients' synthetic samples (a payload as described in
    :mod:`flower_synth.payload`, possibly empty) with the config keys ``self_trust``
    (a_ii), ``num_samples`` and ``server_round``, lets its
    :class:`~flower_synth.synthetic.learner.SyntheticLearner` learn from them, and
    returns the new samples (with soft labels unless ``soft_labels`` is off), the size
    of its real training split and the learner's metrics. ``evaluate`` reports the
    learner's evaluation; the config key ``global_eval`` (default true) says whether to
    score the global test set this round.

    Args:
        learner: the client's generator, classifier, data and state.
        sample_dtype: ``"uint8"`` (images) or ``"float16"`` on the wire.
        samples_per_round: samples to generate when the config does not say.
        soft_labels: send the classifier's class probabilities with the samples.
        top_k: send only the ``top_k`` most probable classes of each row (0: all).
        seed: run seed; round r of partition p derives its own seed from it.
    """

    def __init__(
        self,
        learner: SyntheticLearner,
        *,
        sample_dtype: str = "uint8",
        samples_per_round: int = 1000,
        soft_labels: bool = True,
        top_k: int = 0,
        seed: int = 0,
    ) -> None:
        self.learner = learner
        self.sample_dtype = sample_dtype
        self.samples_per_round = samples_per_round
        self.soft_labels = soft_labels
        self.top_k = top_k
        self.seed = seed

    def fit(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[NDArrays, int, dict[str, Scalar]]:
        """Learn on real + received samples; return new samples, the real-data size
        and the learner's metrics."""
        server_round = int(config.get("server_round", 0))
        train = self.learner.data.train
        received = None
        if parameters:
            received = validate_payload(
                parameters, train.image_shape, train.num_classes, max_samples=UNBOUNDED
            )
        generated, metrics = self.learner.fit(
            received,
            self_trust=float(config.get("self_trust", 1.0)),
            num_samples=int(config.get("num_samples", self.samples_per_round)),
            seed=round_seed(self.seed, self.learner.partition_id, server_round),
        )
        probabilities = generated.probabilities if self.soft_labels else None
        payload = encode_samples(
            generated.samples, generated.labels, self.sample_dtype, probabilities, self.top_k
        )
        return payload, len(train), metrics

    def evaluate(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[float, int, dict[str, Scalar]]:
        """The learner's evaluation (nothing before its first fit)."""
        return self.learner.evaluate(global_eval=bool(config.get("global_eval", True)))
