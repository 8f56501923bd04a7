"""Accuracy metrics of a classification (MODELS.md §3.1): confusion matrix, OA, AA, kappa, per class.

Computed with numpy alone from the confusion matrix (the same formulas as scikit-learn's
``confusion_matrix``, ``precision_recall_fscore_support(zero_division=0)`` and ``cohen_kappa_score``, which a
test compares against), so that *Accuracy assessment* runs in a QGIS without torch or scikit-learn. Kappa
is always the kappa of the matrix given (the test matrix in reports), never a validation kappa
(MODELS.md §3.5).
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np


@dataclass
class Accuracy:
    """Metrics of one confusion matrix; rows are the reference (truth), columns the prediction."""

    class_ids: List[int]
    matrix: np.ndarray
    overall: float
    average: float
    kappa: float
    producers: np.ndarray  # per-class recall; NaN for a class without reference pixels
    users: np.ndarray      # per-class precision; NaN for a class never predicted
    f1: np.ndarray

    def as_dict(self, class_names: Optional[Dict[int, str]] = None) -> Dict[str, object]:
        """JSON-ready form (NaN becomes None) for reports and ``--json`` outputs."""
        def clean(value: float) -> Optional[float]:
            return None if np.isnan(value) else float(value)

        names = class_names or {}
        return {
            "overall_accuracy": self.overall,
            "average_accuracy": self.average,
            "kappa": self.kappa,
            "pixels": int(self.matrix.sum()),
            "confusion_matrix": self.matrix.tolist(),
            "classes": [
                {"id": cid, "name": names.get(cid, str(cid)), "reference_pixels": int(self.matrix[i].sum()),
                 "producers_accuracy": clean(self.producers[i]), "users_accuracy": clean(self.users[i]),
                 "f1": clean(self.f1[i])}
                for i, cid in enumerate(self.class_ids)
            ],
        }


def accuracy(reference: np.ndarray, predicted: np.ndarray, class_ids: Sequence[int]) -> Accuracy:
    """Metrics over the pixels whose reference is one of ``class_ids`` (anything else is ignored).

    Every prediction on those pixels must be one of ``class_ids`` too (a wrong id is an error to count,
    not a pixel to drop): add an "unclassified" id for pixels the class map left empty.

    AA averages the producer's accuracy over the classes that have reference pixels, as the
    reference evaluation does (a class with no test pixels is skipped, not counted as 0).
    """
    ids = [int(c) for c in class_ids]
    if len(set(ids)) != len(ids) or not ids:
        raise ValueError(f"class_ids must be a non-empty list of distinct ids, got {list(class_ids)}")
    reference = np.asarray(reference).ravel()
    predicted = np.asarray(predicted).ravel()
    if reference.shape != predicted.shape:
        raise ValueError(f"reference has {reference.size} pixels but the prediction has {predicted.size}")
    keep = np.isin(reference, ids)
    if not keep.any():
        raise ValueError(f"no reference pixel has one of the class ids {ids}: nothing to assess")
    truth, guess = reference[keep], predicted[keep]
    unknown = sorted(set(np.unique(guess).tolist()) - set(ids))
    if unknown:  # a matrix over class_ids would drop these pixels and inflate OA
        raise ValueError(f"the prediction gives ids {unknown} on reference pixels but class_ids is {ids}; "
                         "add them to class_ids so they count as errors")
    n = len(ids)
    order = np.argsort(ids)
    sorted_ids = np.asarray(ids)[order]

    def position(values: np.ndarray) -> np.ndarray:
        return order[np.searchsorted(sorted_ids, values)]

    matrix = np.bincount(position(truth) * n + position(guess), minlength=n * n).reshape(n, n).astype(np.int64)
    diagonal, truth_totals, predicted_totals = np.diag(matrix).astype(float), matrix.sum(1), matrix.sum(0)
    has_truth, was_predicted = truth_totals > 0, predicted_totals > 0
    producers, users, f1 = (np.full(n, np.nan) for _ in range(3))
    producers[has_truth] = diagonal[has_truth] / truth_totals[has_truth]
    users[was_predicted] = diagonal[was_predicted] / predicted_totals[was_predicted]
    recall, precision = np.nan_to_num(producers), np.nan_to_num(users)
    with np.errstate(invalid="ignore", divide="ignore"):
        harmonic = np.where(recall + precision > 0, 2 * recall * precision / (recall + precision), 0.0)
    f1[has_truth | was_predicted] = harmonic[has_truth | was_predicted]
    pixels = matrix.sum()
    overall = float(np.trace(matrix) / pixels)
    chance = float((truth_totals.astype(float) * predicted_totals).sum() / float(pixels) ** 2)
    kappa = 1.0 if len(np.unique(np.r_[truth, guess])) <= 1 else float((overall - chance) / (1 - chance))
    return Accuracy(ids, matrix, overall, float(np.nanmean(producers)), kappa, producers, users, f1)
