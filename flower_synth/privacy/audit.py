"""What shared samples reveal about the real ones: two measurements of a client's
release against its own training images and images it never saw (as pixels, or as a
prototype client's features: any vectors of one space).

- The memorisation ratio: each shared sample's distance to the nearest training image
  of its class over its distance to the nearest held-out image of that class, the
  median over samples. A generator that copies its training set scores near 0; one
  that draws from what the class looks like, near 1 (the held-out images are as close
  as the training ones).
- A membership-inference attack: an image is guessed a member of the training set the
  closer it lies to the nearest shared sample; its AUC over members and non-members is
  0.5 when the release says nothing of who was in the training set, 1.0 when it gives
  them away.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

CHUNK = 512  # rows of one distance block: memory stays at CHUNK x (rows of the other)


def nearest_distances(queries: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Euclidean distance of every query (flattened) to its nearest reference."""
    queries = queries.reshape(len(queries), -1).astype(np.float64)
    references = references.reshape(len(references), -1).astype(np.float64)
    squared = np.einsum("ij,ij->i", references, references)
    nearest = np.empty(len(queries))
    for start in range(0, len(queries), CHUNK):
        block = queries[start : start + CHUNK]
        distances = (
            np.einsum("ij,ij->i", block, block)[:, None] - 2.0 * block @ references.T + squared
        )
        nearest[start : start + CHUNK] = np.sqrt(np.maximum(distances.min(axis=1), 0.0))
    return nearest


@dataclass(frozen=True)
class LeakageAudit:
    """One client's release audited: ``memorisation_ratio`` (median, see the module),
    ``membership_auc`` and how many samples, members and non-members went into them."""

    memorisation_ratio: float
    membership_auc: float
    samples: int
    members: int
    non_members: int


def memorisation_ratio(
    shared: np.ndarray,
    shared_labels: np.ndarray,
    train: np.ndarray,
    train_labels: np.ndarray,
    held_out: np.ndarray,
    held_out_labels: np.ndarray,
) -> float:
    """Median over the shared samples of classes present in both sets of (distance to
    the nearest training image of the class) / (distance to the nearest held-out one);
    NaN if no class is in all three."""
    ratios = []
    for label in np.unique(shared_labels):
        mine, theirs = train[train_labels == label], held_out[held_out_labels == label]
        if len(mine) == 0 or len(theirs) == 0:
            continue
        samples = shared[shared_labels == label]
        to_train, to_held_out = nearest_distances(samples, mine), nearest_distances(samples, theirs)
        ratios.append(to_train / np.maximum(to_held_out, 1e-12))
    return float(np.median(np.concatenate(ratios))) if ratios else float("nan")


def membership_auc(shared: np.ndarray, members: np.ndarray, non_members: np.ndarray) -> float:
    """AUC of the attack that scores an image by how close it lies to the nearest shared
    sample (members: the client's training images; non-members: images it never saw)."""
    scores = -nearest_distances(np.concatenate([members, non_members]), shared)
    truth = np.r_[np.ones(len(members)), np.zeros(len(non_members))]
    return float(roc_auc_score(truth, scores))


def matched_split(
    train_labels: np.ndarray, held_out_labels: np.ndarray, max_images: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of at most ``max_images`` members (training images) and of as many
    non-members (held-out images) with the members' class counts, drawn by ``seed``
    (held-out images repeat where a class has fewer; a class with none is left out):
    matched classes keep an attack from scoring the client's label mix."""
    rng = np.random.default_rng(seed)
    members = rng.permutation(len(train_labels))[:max_images]
    members = members[np.isin(train_labels[members], held_out_labels)]
    non_members = [
        rng.choice(pool, wanted, replace=wanted > len(pool))
        for label, wanted in zip(*np.unique(train_labels[members], return_counts=True), strict=True)
        for pool in [np.flatnonzero(held_out_labels == label)]
    ]
    return members, np.concatenate(non_members) if non_members else np.zeros(0, int)


def audit_release(
    shared: np.ndarray,
    shared_labels: np.ndarray,
    train: np.ndarray,
    train_labels: np.ndarray,
    held_out: np.ndarray,
    held_out_labels: np.ndarray,
    max_images: int = 1000,
    seed: int = 0,
) -> LeakageAudit:
    """Audit one client's shared samples against its training images and held-out
    images, all in one space (pixels in [0, 1], or features): the memorisation ratio,
    and the membership AUC over the members and non-members of :func:`matched_split`."""
    members, non_members = matched_split(train_labels, held_out_labels, max_images, seed)
    return LeakageAudit(
        memorisation_ratio(shared, shared_labels, train, train_labels, held_out, held_out_labels),
        membership_auc(shared, train[members], held_out[non_members]),
        len(shared),
        len(members),
        len(non_members),
    )


def loss_membership_auc(
    probabilities: np.ndarray, labels: np.ndarray, is_member: np.ndarray
) -> float:
    """AUC of the attack on a released model that guesses an image a member the lower
    the model's loss on it (``probabilities``: the model's class probabilities)."""
    picked = probabilities[np.arange(len(labels)), labels]
    return float(roc_auc_score(is_member, np.log(np.maximum(picked, 1e-12))))
