"""Train / validation / test splits of labelled pixels (MODELS.md §3.3).

The fixed-count protocol reproduces MambaHSI's reference sampling bit for bit: one RNG seeded
once, then, class by class in id order, the class's raster-order pixel indices shuffled once;
the first 30 go to training (15 when the class has at most 30 pixels), the next at most 10 to
validation, the rest to test. ``np.random.RandomState(seed)`` draws the same stream as the
reference's ``np.random.seed(seed)`` without touching numpy's global state.
"""

from dataclasses import dataclass
from typing import Sequence

import numpy as np

UNLABELLED = -1


@dataclass
class Split:
    """Label maps (H, W) with class indices 0..n-1 where a pixel is in the set, else -1."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def _empty_like(labels: np.ndarray) -> np.ndarray:
    return np.full(labels.shape, UNLABELLED, dtype=np.int64)


def fixed_count_split(labels: np.ndarray, seed: int, train_per_class: int = 30, val_per_class: int = 10,
                      small_class_size: int = 30, small_class_train: int = 15,
                      valid: np.ndarray = None) -> Split:
    """The 30/10-per-class protocol on a label map of class indices (0..n-1, -1 = unlabelled).

    ``valid`` (H, W) bool excludes pixels (e.g. under no-data) before sampling, so they are never
    in any set.
    """
    return _split(labels, seed, valid, lambda size: (
        small_class_train if size <= small_class_size else train_per_class, val_per_class))


def ratio_split(labels: np.ndarray, seed: int, train_ratio: float = 0.1, val_ratio: float = 0.01,
                min_train: int = 3, min_val: int = 1, valid: np.ndarray = None) -> Split:
    """The ratio mode: a fraction of each class for training and validation, with minimum counts."""
    if not (0 < train_ratio < 1 and 0 <= val_ratio < 1 and train_ratio + val_ratio < 1):
        raise ValueError(f"train_ratio {train_ratio} and val_ratio {val_ratio} must be fractions summing below 1")
    return _split(labels, seed, valid, lambda size: (
        max(min_train, int(round(train_ratio * size))), max(min_val, int(round(val_ratio * size)))))


def _split(labels: np.ndarray, seed: int, valid, counts) -> Split:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D label map (H, W), got shape {labels.shape}")
    usable = labels >= 0
    if valid is not None:
        if valid.shape != labels.shape:
            raise ValueError(f"valid mask has shape {valid.shape} but labels have {labels.shape}")
        usable &= valid
    flat = np.where(usable, labels, UNLABELLED).ravel()
    rng = np.random.RandomState(seed)
    split = Split(*(_empty_like(labels) for _ in range(3)))
    for cls in _class_order(flat):
        idx = np.flatnonzero(flat == cls)
        rng.shuffle(idx)
        n_train, n_val = counts(len(idx))
        for target, part in ((split.train, idx[:n_train]), (split.validation, idx[n_train:n_train + n_val]),
                             (split.test, idx[n_train + n_val:])):
            np.put(target, part, cls)
    return split


def _class_order(flat: np.ndarray) -> Sequence[int]:
    return [int(c) for c in np.unique(flat) if c >= 0]
