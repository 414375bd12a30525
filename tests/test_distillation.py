"""Distillation loss on soft labels, and logit adjustment of a classifier's prior."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from flower_synth.learning.distillation import adjust_prior, distillation_loss, soften


def test_distillation_loss_equals_cross_entropy_for_one_hot_targets() -> None:
    logits = torch.randn(6, 10, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 3, 3, 9, 1, 5])
    one_hot = F.one_hot(labels, 10).float()
    expected = F.cross_entropy(logits, labels, reduction="none")
    assert torch.allclose(distillation_loss(logits, one_hot), expected, atol=1e-6)


def test_distillation_loss_is_smallest_where_the_student_matches_the_teacher() -> None:
    teacher = torch.softmax(torch.tensor([[2.0, 1.0, -1.0]]), dim=1)
    matching = torch.log(teacher)
    other = torch.tensor([[-1.0, 1.0, 2.0]])
    assert distillation_loss(matching, teacher) < distillation_loss(other, teacher)
    # at the minimum the loss is the teacher's entropy
    entropy = -(teacher * teacher.log()).sum()
    assert distillation_loss(matching, teacher).item() == pytest.approx(entropy.item(), abs=1e-6)


def test_temperature_softens_targets_and_scales_by_its_square() -> None:
    teacher = torch.tensor([[0.9, 0.09, 0.01]])
    softer = soften(teacher, 2.0)
    assert softer[0, 0] < teacher[0, 0] and softer[0, 2] > teacher[0, 2]
    assert torch.allclose(softer.sum(dim=1), torch.ones(1))
    assert torch.equal(
        soften(F.one_hot(torch.tensor([1]), 3).float(), 2.0).argmax(1), torch.tensor([1])
    )
    logits = torch.tensor([[1.0, 0.0, -1.0]])
    expected = 4 * F.cross_entropy(logits / 2, softer, reduction="none")
    assert torch.allclose(distillation_loss(logits, teacher, temperature=2.0), expected)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        distillation_loss(logits, teacher, temperature=0.0)


def test_adjusting_to_the_same_prior_changes_nothing() -> None:
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    prior = np.array([0.5, 0.3, 0.2])
    assert np.allclose(adjust_prior(probabilities, prior, prior), probabilities)


def test_adjusting_a_skewed_prior_to_uniform_favours_the_rare_class() -> None:
    # trained where class 0 is 9x as common: an even call at the skewed prior is a
    # clear call for class 1 under a uniform one
    probabilities = np.array([[0.5, 0.5]])
    adjusted = adjust_prior(probabilities, np.array([0.9, 0.1]), np.array([0.5, 0.5]))
    assert adjusted[0, 1] == pytest.approx(0.9)


def test_classes_the_classifier_never_trained_on_are_not_boosted() -> None:
    probabilities = np.array([[0.98, 0.01, 0.01]])  # trained on class 0 only
    adjusted = adjust_prior(probabilities, np.array([1.0, 0.0, 0.0]), np.full(3, 1 / 3))
    assert adjusted.tolist() == [[1.0, 0.0, 0.0]]
