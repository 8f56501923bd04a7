"""Train / validation / test splits of labelled pixels (MODELS.md §3.3).

The fixed-count protocol reproduces MambaHSI's reference sampling bit for bit: one RNG seeded
once, then, class by class in id order, the class's raster-order pixel indices shuffled once;
the first 30 go to training (15 when the class has at most 30 pixels), the next at most 10 to
validation, the rest to test. ``np.random.RandomState(seed)`` draws the same stream as the
reference's ``np.random.seed(seed)`` without touching numpy's global state.

``validation_roi_split`` takes the sets from the user instead: training ROIs and separate
validation ROIs.
"""

import logging
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

log = logging.getLogger(__name__)

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


def validation_roi_split(train: np.ndarray, validation: np.ndarray, valid: Optional[np.ndarray] = None,
                         reference: Optional[np.ndarray] = None) -> Split:
    """Sets given by the user: training ROIs and separate validation ROIs, as class-index maps.

    ``train``, ``validation`` and the optional ``reference`` (H, W) hold class indices 0..n-1 of ONE
    class table (-1 = unlabelled): map each source with ``labels.class_indices(ids, training_table)``.
    A pixel labelled in both maps is kept for validation only (warning), so validation stays
    independent of training. Pixels outside ``valid`` are never used. Test = the pixels labelled in
    ``reference`` (e.g. a full ground-truth map) that are in neither set; empty without it.
    """
    train, validation = np.asarray(train), np.asarray(validation)
    shapes = [np.shape(m) for m in (train, validation, valid, reference) if m is not None]
    if train.ndim != 2 or len(set(shapes)) != 1:
        raise ValueError(f"train, validation, valid and reference must be 2-D maps of one shape, got {shapes}")
    usable = np.ones(train.shape, bool) if valid is None else np.asarray(valid, bool)
    val = np.where(usable & (validation >= 0), validation, UNLABELLED).astype(np.int64)
    both = (train >= 0) & (val >= 0)
    if both.any():
        log.warning("%d pixels are in both the training and the validation ROIs; they are used for validation only",
                    int(both.sum()))
    trn = np.where(usable & (train >= 0) & ~both, train, UNLABELLED).astype(np.int64)
    if not (trn >= 0).any() or not (val >= 0).any():
        raise ValueError(f"the training ROIs give {int((trn >= 0).sum())} and the validation ROIs "
                         f"{int((val >= 0).sum())} usable pixels; both need at least one on valid (not nodata) pixels")
    missing = sorted(set(_class_order(val.ravel())) - set(_class_order(trn.ravel())))
    if missing:
        log.warning("classes %s have validation pixels but no training pixel", missing)
    test = _empty_like(trn)
    if reference is not None:
        rest = usable & (np.asarray(reference) >= 0) & (trn < 0) & (val < 0)
        test[rest] = np.asarray(reference)[rest]
    return Split(trn, val, test)
