"""Closed-form equilibrium of the trust game, and trust matrices."""

from __future__ import annotations

import numpy as np
import pytest

from flower_synth.synthetic.equilibrium import (
    check_trust_matrix,
    contraction_factor,
    equilibrium_weights,
    parse_trust_matrix,
    size_weighted_trust,
    uniform_trust,
)


def test_uniform_trust_has_the_design_formula_for_w() -> None:
    n, a = 4, 0.4
    b = (1 - a) / (n - 1)
    weights = equilibrium_weights(uniform_trust(n, a))
    assert np.allclose(np.diag(weights), (a + b) / (1 + b))
    assert np.allclose(weights[~np.eye(n, dtype=bool)], b / (1 + b))
    assert np.allclose(weights.sum(axis=1), 1.0)


def test_equilibrium_is_a_fixed_point_of_best_responses() -> None:
    trust = parse_trust_matrix("0.7,0.2,0.1;0.1,0.5,0.4;0.3,0.3,0.4")
    data = np.random.default_rng(0).normal(size=(3, 5))
    equilibrium = equilibrium_weights(trust) @ data
    diagonal = np.diag(np.diag(trust))
    best_response = diagonal @ data + (trust - diagonal) @ equilibrium
    assert np.allclose(best_response, equilibrium)


def test_iteration_contracts_at_most_by_the_factor() -> None:
    trust = parse_trust_matrix("0.7,0.2,0.1;0.1,0.5,0.4;0.3,0.3,0.4")
    data = np.random.default_rng(1).normal(size=(3, 5))
    target = equilibrium_weights(trust) @ data
    diagonal = np.diag(np.diag(trust))
    moments, error = data.copy(), np.abs(data - target).max()
    for _ in range(10):
        moments = diagonal @ data + (trust - diagonal) @ moments
        new_error = np.abs(moments - target).max()
        assert new_error <= contraction_factor(trust) * error + 1e-12
        error = new_error
    assert contraction_factor(trust) == pytest.approx(0.6)


def test_size_weighted_trust_follows_sizes() -> None:
    trust = size_weighted_trust([100, 300, 600], self_trust=0.5)
    check_trust_matrix(trust)
    assert trust[0, 1] / trust[0, 2] == pytest.approx(300 / 600)
    assert np.allclose(np.diag(trust), 0.5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.5,0.5;0.5", "a matrix like"),
        ("0.5,0.6;0.5,0.5", "rows must sum to 1"),
        ("0,1;0.5,0.5", "a_ii > 0"),
        ("1.2,-0.2;0.5,0.5", ">= 0"),
        ("a,b;c,d", "a matrix like"),
    ],
)
def test_bad_trust_matrices_are_named(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_trust_matrix(text)
