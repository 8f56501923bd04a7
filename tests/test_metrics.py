"""MODELS.md T17: OA, AA and kappa against a hand-computed 3 x 3 confusion matrix."""

import numpy as np
import pytest

from engine.metrics import accuracy


def pixels_from_matrix(matrix):
    truth, guess = [], []
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            truth += [i + 1] * count
            guess += [j + 1] * count
    return np.array(truth), np.array(guess)


def test_metrics_match_a_hand_computed_confusion_matrix():
    matrix = [[50, 3, 2], [5, 40, 5], [0, 10, 35]]
    truth, guess = pixels_from_matrix(matrix)
    result = accuracy(truth, guess, [1, 2, 3])
    total = 150
    oa = (50 + 40 + 35) / total
    aa = (50 / 55 + 40 / 50 + 35 / 45) / 3
    pe = (55 * 55 + 50 * 53 + 45 * 42) / total ** 2
    assert np.array_equal(result.matrix, matrix)
    assert result.overall == pytest.approx(oa)
    assert result.average == pytest.approx(aa)
    assert result.kappa == pytest.approx((oa - pe) / (1 - pe))
    assert result.users == pytest.approx([50 / 55, 40 / 53, 35 / 42])
    assert result.f1[0] == pytest.approx(2 * (50 / 55) * (50 / 55) / (2 * 50 / 55))


def test_unlabelled_pixels_are_ignored_and_classes_without_reference_skipped_in_aa():
    truth = np.array([0, 1, 1, 2, 2, 0])
    guess = np.array([3, 1, 2, 2, 2, 1])
    result = accuracy(truth, guess, [1, 2, 3])
    assert result.matrix.sum() == 4
    assert result.average == pytest.approx((0.5 + 1.0) / 2)  # class 3 has no reference pixel
    assert np.isnan(result.producers[2])
    as_dict = result.as_dict({1: "roof"})
    assert as_dict["classes"][0]["name"] == "roof" and as_dict["classes"][2]["producers_accuracy"] is None


@pytest.mark.parametrize("truth, guess, ids, words", [
    ([1, 2], [1], [1, 2], "pixels"),
    ([0, 0], [1, 1], [1, 2], "no reference pixel"),
    ([1, 2], [1, 2], [1, 1], "distinct"),
])
def test_metrics_reject_unusable_input(truth, guess, ids, words):
    with pytest.raises(ValueError, match=words):
        accuracy(np.array(truth), np.array(guess), ids)


def test_accuracy_refuses_prediction_ids_outside_class_ids_instead_of_dropping_them():
    reference = np.array([1, 1, 2, 2])
    predicted = np.array([1, 0, 2, 2])
    with pytest.raises(ValueError, match=r"ids \[0\]"):
        accuracy(reference, predicted, [1, 2])
    assert accuracy(reference, predicted, [1, 2, 0]).overall == 0.75
