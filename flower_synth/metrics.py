"""Aggregation of client metrics into round figures (``*_metrics_aggregation_fn``)."""

from __future__ import annotations

from flwr.common import Metrics, Scalar


def weighted_train_loss(results: list[tuple[int, Metrics]]) -> dict[str, Scalar]:
    """``train_loss`` averaged over clients, weighted by their training-set sizes."""
    pairs = [(n, float(m["train_loss"])) for n, m in results if "train_loss" in m]
    total = sum(n for n, _ in pairs)
    return {"train_loss": sum(n * loss for n, loss in pairs) / total} if total else {}


def personalized_accuracy(results: list[tuple[int, Metrics]]) -> dict[str, Scalar]:
    """Client accuracies on their local test splits.

    ``personalized_accuracy`` is the plain mean over clients (every client counts the
    same, as in personalized-FL papers); ``personalized_accuracy_weighted`` weights by
    test-split size; min and max show the spread. Clients without a test split are
    left out.
    """
    pairs = [(n, float(m["accuracy"])) for n, m in results if n > 0 and "accuracy" in m]
    if not pairs:
        return {}
    accuracies = [acc for _, acc in pairs]
    total = sum(n for n, _ in pairs)
    return {
        "personalized_accuracy": sum(accuracies) / len(accuracies),
        "personalized_accuracy_weighted": sum(n * acc for n, acc in pairs) / total,
        "personalized_accuracy_min": min(accuracies),
        "personalized_accuracy_max": max(accuracies),
    }
