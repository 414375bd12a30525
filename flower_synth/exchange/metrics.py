"""Aggregation of client metrics into round figures (``*_metrics_aggregation_fn``)."""

from __future__ import annotations

from collections.abc import Callable

from flwr.app import MetricRecord, RecordDict
from flwr.common import Metrics, Scalar

from flower_synth.wire.client_metrics import capped_sizes

MAX_PARTITION_ID = 1_000_000  # a reported partition id above this is not recorded per client
# what a client that audits its own release reports (PrototypeLearner.audit_summary)
AUDIT_KEYS = ("release_membership_auc", "release_memorisation_ratio")

MetricsAggregationFn = Callable[[list[tuple[int, Metrics]]], dict[str, Scalar]]


def for_messages(fn: MetricsAggregationFn) -> Callable[[list[RecordDict], str], MetricRecord]:
    """``fn`` as a Message-API aggregation function (``train_metrics_aggr_fn`` /
    ``evaluate_metrics_aggr_fn`` of flwr's Message-API strategies): every reply's one
    ``MetricRecord``, its ``weighted_by_key`` taken as the example count, goes to ``fn``
    as ``(num_examples, metrics)``; where replies carry a ``loss`` (evaluation), their
    example-weighted mean is added as ``personalized_loss``."""

    def aggregate(contents: list[RecordDict], weighted_by_key: str) -> MetricRecord:
        pairs = []
        for content in contents:
            for record in content.metric_records.values():
                metrics = dict(record)
                pairs.append((int(metrics.pop(weighted_by_key, 0)), metrics))
        result = dict(fn(pairs))
        losses = [(n, float(m["loss"])) for n, m in pairs if n > 0 and "loss" in m]
        if losses:
            result["personalized_loss"] = weighted_mean(losses)
        return MetricRecord(result)

    return aggregate


def weighted_mean(pairs: list[tuple[int, float]]) -> float:
    """The mean of the values weighted by their counts, each count capped at
    ``SIZE_CAP`` times their median (:func:`~flower_synth.wire.client_metrics.capped_sizes`:
    a client that claims a vast data set cannot make its value the mean); 0 without
    weight."""
    weights = capped_sizes([n for n, _ in pairs])
    total = float(weights.sum())
    return (
        float(sum(w * v for w, (_, v) in zip(weights, pairs, strict=True)) / total)
        if total
        else 0.0
    )


def weighted_train_loss(results: list[tuple[int, Metrics]]) -> dict[str, Scalar]:
    """``train_loss`` averaged over clients, weighted by their training-set sizes."""
    pairs = [(n, float(m["train_loss"])) for n, m in results if "train_loss" in m]
    return {"train_loss": weighted_mean(pairs)} if sum(n for n, _ in pairs) else {}


def summed_seconds(results: list[tuple[int, Metrics]]) -> dict[str, Scalar]:
    """Every ``*_seconds`` metric summed over the clients as ``clients_*_seconds``
    (where a round's time goes on the client side)."""
    keys = sorted({key for _, m in results for key in m if key.endswith("_seconds")})
    return {f"clients_{key}": sum(float(m[key]) for _, m in results if key in m) for key in keys}


def client_fit_metrics(results: list[tuple[int, Metrics]]) -> dict[str, Scalar]:
    """:func:`weighted_train_loss` and :func:`summed_seconds`."""
    return weighted_train_loss(results) | summed_seconds(results)


def stateful_client_fit_metrics(results: list[tuple[int, Metrics]]) -> dict[str, Scalar]:
    """:func:`client_fit_metrics` plus ``client_rounds_min``/``_max``: how many rounds the
    least and most experienced client has fitted, counted in each client's own state
    (equal to the server round when client state persists across rounds); and where
    clients report it, ``label_agreement``: the share of all generated samples whose
    soft label agrees with their class (weighted by ``generated_samples``), with the
    clients' ``_min`` and ``_max``; ``clients_fresh_start``: how
    many clients started without state from earlier rounds (``fresh_start``);
    ``clients_pseudo_labelled``: how many unlabelled images partly labelled clients
    learnt from with a label of their own classifier's (``pseudo_labelled``);
    ``dp_epsilon_max`` and ``dp_epsilon_mean``: the privacy private clients have spent
    so far (``dp_epsilon``); where clients audit what they send (:data:`AUDIT_KEYS`),
    every client's figure (:func:`by_client`)."""
    rounds = [int(m["client_rounds"]) for _, m in results if "client_rounds" in m]
    metrics = client_fit_metrics(results)
    if rounds:
        metrics |= {"client_rounds_min": min(rounds), "client_rounds_max": max(rounds)}
    fresh = [int(m["fresh_start"]) for _, m in results if "fresh_start" in m]
    if fresh:
        metrics["clients_fresh_start"] = sum(fresh)
    pseudo = [int(m["pseudo_labelled"]) for _, m in results if "pseudo_labelled" in m]
    if pseudo:
        metrics["clients_pseudo_labelled"] = sum(pseudo)
    spent = [float(m["dp_epsilon"]) for _, m in results if "dp_epsilon" in m]
    if spent:
        metrics |= {"dp_epsilon_max": max(spent), "dp_epsilon_mean": sum(spent) / len(spent)}
    for key in AUDIT_KEYS:
        metrics |= by_client(results, key, key)
    agreement = [
        (float(m["label_agreement"]), int(m.get("generated_samples", 1)))
        for _, m in results
        if "label_agreement" in m
    ]
    if agreement:
        total = sum(n for _, n in agreement)
        metrics |= spread("label_agreement", [a for a, _ in agreement])
        metrics["label_agreement"] = sum(a * n for a, n in agreement) / total if total else 0.0
    return metrics


def personalized_accuracy(results: list[tuple[int, Metrics]]) -> dict[str, Scalar]:
    """Client accuracies (metric ``accuracy``) on their local test splits.

    ``personalized_accuracy`` is the plain mean over clients (every client counts the
    same, as in personalized-FL papers); ``personalized_accuracy_weighted`` weights by
    test-split size; min and max show the spread. Clients without a test split are
    left out.
    """
    pairs = [(n, float(m["accuracy"])) for n, m in results if n > 0 and "accuracy" in m]
    if not pairs:
        return {}
    return spread("personalized_accuracy", [acc for _, acc in pairs]) | {
        "personalized_accuracy_weighted": weighted_mean(pairs)
    }


def clients_global_accuracy(results: list[tuple[int, Metrics]]) -> dict[str, Scalar]:
    """Mean, min and max of the clients' own models on the global test set (metric
    ``global_accuracy``), for strategies where every client keeps its own model, and
    each client's as ``clients_global_accuracy_client_<partition_id>`` where it reports
    an integer ``partition_id`` in ``[0, MAX_PARTITION_ID]``."""
    values = [float(m["global_accuracy"]) for _, m in results if "global_accuracy" in m]
    if not values:
        return {}
    return spread("clients_global_accuracy", values) | by_client(
        results, "global_accuracy", "clients_global_accuracy"
    )


def by_client(results: list[tuple[int, Metrics]], key: str, name: str) -> dict[str, Scalar]:
    """Metric ``key`` of every client that reports it with an integer ``partition_id``
    in ``[0, MAX_PARTITION_ID]``, as ``<name>_client_<partition_id>``."""
    metrics: dict[str, Scalar] = {}
    for _, m in results:
        pid = m.get("partition_id")
        if key in m and type(pid) is int and 0 <= pid <= MAX_PARTITION_ID:
            metrics[f"{name}_client_{pid}"] = float(m[key])
    return metrics


def client_evaluation(results: list[tuple[int, Metrics]]) -> dict[str, Scalar]:
    """Personalized and global accuracy of clients that keep their own models and,
    where they report them, the same without prior correction (the plain means
    ``personalized_accuracy_uncorrected`` and ``clients_global_accuracy_uncorrected``),
    the personalized accuracy with the real prior restored
    (``personalized_accuracy_restored``)
    and the global accuracy on the classes each client holds and on the others
    (``clients_global_accuracy_own_classes``, ``..._other_classes``)."""
    metrics = personalized_accuracy(results) | clients_global_accuracy(results)
    for key, name in (
        ("accuracy_uncorrected", "personalized_accuracy_uncorrected"),
        ("accuracy_restored", "personalized_accuracy_restored"),
        ("global_accuracy_uncorrected", "clients_global_accuracy_uncorrected"),
        ("global_accuracy_own_classes", "clients_global_accuracy_own_classes"),
        ("global_accuracy_other_classes", "clients_global_accuracy_other_classes"),
    ):
        values = [float(m[key]) for _, m in results if key in m]
        if values:
            metrics[name] = sum(values) / len(values)
    return metrics


def clients_as_global_evaluation(results: list[tuple[int, Metrics]]) -> dict[str, Scalar]:
    """:func:`client_evaluation`, with ``global_accuracy`` set to the mean of the
    clients' own models on the global test set: the global figure of strategies
    that have no global model (prototype exchange)."""
    metrics = client_evaluation(results)
    if "clients_global_accuracy" in metrics:
        metrics["global_accuracy"] = metrics["clients_global_accuracy"]
    return metrics


def spread(name: str, values: list[float]) -> dict[str, Scalar]:
    """``name`` (the mean), ``name_min`` and ``name_max`` of ``values``."""
    return {
        name: sum(values) / len(values),
        f"{name}_min": min(values),
        f"{name}_max": max(values),
    }
