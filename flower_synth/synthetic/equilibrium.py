"""Trust matrices of the synthetic-sample game and its closed-form Nash equilibrium.

Client i weighs its own data with ``a_ii`` and client j's synthetic data with ``a_ij``
(rows sum to 1). For exponential-family local models, best responses match moments,
so at equilibrium ``p_i = a_ii pi_i + sum_{j != i} a_ij p_j``: with ``D = diag(a_ii)``
and ``O`` the off-diagonal part of ``A``, every model is the mixture
``P = W Pi`` of the clients' data with ``W = (I - O)^-1 D``. Best-response iteration
contracts towards it with factor ``max_i (1 - a_ii)`` (in the max-norm).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TRUST_MODES = ("uniform", "size", "learned")


def uniform_trust(num_clients: int, self_trust: float) -> np.ndarray:
    """``a_ii = self_trust``, the rest shared equally among the other clients."""
    _check_self_trust(self_trust, num_clients)
    if num_clients == 1:
        return np.ones((1, 1))
    other = (1.0 - self_trust) / (num_clients - 1)
    return np.full((num_clients, num_clients), other) + np.eye(num_clients) * (self_trust - other)


def size_weighted_trust(sizes: Sequence[float], self_trust: float) -> np.ndarray:
    """``a_ii = self_trust``, the rest shared among the others in proportion to their sizes."""
    sizes = np.asarray(sizes, dtype=float)
    _check_self_trust(self_trust, len(sizes))
    if len(sizes) == 1:
        return np.ones((1, 1))
    others = np.tile(sizes, (len(sizes), 1))
    np.fill_diagonal(others, 0.0)
    matrix = (1.0 - self_trust) * others / others.sum(axis=1, keepdims=True)
    np.fill_diagonal(matrix, self_trust)
    return matrix


def parse_trust_matrix(text: str) -> np.ndarray:
    """A matrix written as rows separated by ``;`` and entries by ``,``: ``"0.6,0.4;0.3,0.7"``."""
    try:
        rows = [[float(v) for v in row.split(",")] for row in text.split(";")]
        matrix = np.array(rows, dtype=float)
    except ValueError as error:
        raise ValueError(
            f"trust must be 'uniform', 'size', 'learned' or a matrix like "
            f"'0.6,0.4;0.3,0.7', got {text!r}"
        ) from error
    check_trust_matrix(matrix)
    return matrix


def check_trust_matrix(matrix: np.ndarray) -> None:
    """Raise ValueError unless ``matrix`` is square, non-negative, row-stochastic with a
    positive diagonal (the conditions for a unique equilibrium)."""
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"trust matrix must be square, got shape {matrix.shape}")
    if (matrix < 0).any():
        raise ValueError("trust matrix entries must be >= 0")
    if not np.allclose(matrix.sum(axis=1), 1.0, atol=1e-6):
        raise ValueError(f"trust matrix rows must sum to 1, got {matrix.sum(axis=1).round(6)}")
    if (np.diag(matrix) <= 0).any():
        raise ValueError("every client must trust its own data: a_ii > 0 on the diagonal")


def equilibrium_weights(matrix: np.ndarray) -> np.ndarray:
    """``W = (I - O)^-1 D``: row i holds the weights of every client's data in ``p_i``."""
    check_trust_matrix(matrix)
    diagonal = np.diag(np.diag(matrix))
    off_diagonal = matrix - diagonal
    return np.linalg.solve(np.eye(len(matrix)) - off_diagonal, diagonal)


def contraction_factor(matrix: np.ndarray) -> float:
    """``max_i (1 - a_ii)``: the per-round contraction of best-response iteration."""
    return float(np.max(1.0 - np.diag(matrix)))


def _check_self_trust(self_trust: float, num_clients: int) -> None:
    if num_clients < 1:
        raise ValueError(f"need at least one client, got {num_clients}")
    if not 0.0 < self_trust <= 1.0:
        raise ValueError(f"self-trust a_ii must lie in (0, 1], got {self_trust}")
