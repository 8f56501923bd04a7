"""Train / validation / test splits of labelled pixels (MODELS.md §3.3).

The fixed-count protocol reproduces MambaHSI's reference sampling bit for bit: one RNG seeded
once, then, class by class in id order, the class's raster-order pixel indices shuffled once;
the first 30 go to training (15 when the class has at most 30 pixels), the next at most 10 to
validation, the rest to test. ``np.random.RandomState(seed)`` draws the same stream as the
reference's ``np.random.seed(seed)`` without touching numpy's global state.

``spatial_split`` is the honest variant of the same budget (issue 13): random pixels put test pixels
next to training pixels, which flatters spatial models. It splits whole *groups* of pixels instead:
the 8-connected components of each class (a polygon drawn alone is one component; polygons of one
class that touch merge into one, which only makes the split stricter). A class with fewer than
``MIN_GROUPS`` components (one field holding the whole class, as in Salinas-A) has them cut into square
blocks, the side halved until there are enough. Per class, in id order, the shuffled groups go to
training until they hold half of the class's pixels (at least the training count), then to validation
until 20 % (at least its count), the rest to test; training and validation then draw their counts at
random from their groups, so the label budget equals the pixel
split's. The undrawn pixels of training and validation groups are in no set: no test pixel shares a
component (or block) with a training pixel.

``validation_roi_split`` takes the sets from the user instead: training ROIs and separate
validation ROIs.
"""

import logging
from dataclasses import dataclass
from typing import Dict, Optional, Sequence

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


MIN_GROUPS = 3   # training, validation and test each get at least one group
# Shares of a class's pixels whose groups training and validation draw from. Taking just enough groups
# for 30 px put every training pixel of a class in one large component on the EnMAP scene (RF OA 15 to
# 54 % over 5 seeds): half of the groups spread the 30 px as an analyst spreads ROIs, and leave
# about 30 % of each class, in whole groups, to test.
TRAIN_GROUP_SHARE = 0.5
VALIDATION_GROUP_SHARE = 0.2


def label_groups(labels: np.ndarray, valid: Optional[np.ndarray] = None) -> np.ndarray:
    """Group ids (H, W) int64 of ``spatial_split`` (−1 = unlabelled or not valid): the 8-connected
    components of each class, cut into blocks for classes with fewer than MIN_GROUPS of them."""
    groups = np.full(np.shape(labels), UNLABELLED, np.int64)
    following = 0
    for mask, components, count in _class_components(labels, valid):
        ids = components[mask].astype(np.int64) - 1
        if count < MIN_GROUPS:
            ids = _cut_into_blocks(np.argwhere(mask), ids)
        groups[mask] = following + ids
        following += int(ids.max()) + 1
    return groups


def _class_components(labels: np.ndarray, valid: Optional[np.ndarray]):
    """Per class in id order: (its usable pixels (H, W) bool, their 8-connected component ids, how many)."""
    from scipy import ndimage   # scikit-learn's dependency; imported here so the module stays light

    labels = np.asarray(labels)
    usable = labels >= 0 if valid is None else (labels >= 0) & np.asarray(valid, bool)
    for cls in _class_order(np.where(usable, labels, UNLABELLED).ravel()):
        mask = usable & (labels == cls)
        yield (mask, *ndimage.label(mask, structure=np.ones((3, 3), bool)))


def _cut_into_blocks(pixels: np.ndarray, components: np.ndarray) -> np.ndarray:
    """Component ids → (component, block) ids, on a square grid anchored at the pixels' top-left whose side
    is halved from the class's extent until there are MIN_GROUPS groups (or one pixel per group)."""
    origin = pixels.min(0)
    side = int((pixels.max(0) - origin).max()) + 1
    while True:
        side = max(1, (side + 1) // 2)
        block = (pixels - origin) // side
        keys = np.stack([components, block[:, 0], block[:, 1]], axis=1)
        _, ids = np.unique(keys, axis=0, return_inverse=True)
        ids = ids.reshape(-1)
        if ids.max() + 1 >= MIN_GROUPS or side == 1:
            return ids.astype(np.int64)


def groups_per_class(labels: np.ndarray, valid: Optional[np.ndarray] = None) -> Dict[int, int]:
    """{class index: number of 8-connected components}: whether ROIs allow a spatial split as drawn."""
    labels = np.asarray(labels)
    return {int(labels[mask][0]): int(count) for mask, _, count in _class_components(labels, valid)}


def spatial_split(labels: np.ndarray, seed: int, train_per_class: int = 30, val_per_class: int = 10,
                  valid: Optional[np.ndarray] = None) -> Split:
    """Training, validation and test from disjoint groups of each class (``label_groups``); training and
    validation draw ``train_per_class`` / ``val_per_class`` pixels from their groups (all of them when the
    groups hold fewer), test is every pixel of the other groups."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D label map (H, W), got shape {labels.shape}")
    groups = label_groups(labels, valid)
    rng = np.random.RandomState(seed)
    split = Split(*(_empty_like(labels) for _ in range(3)))
    flat_groups, flat_labels = groups.ravel(), labels.ravel()
    for cls in _class_order(np.where(groups >= 0, labels, UNLABELLED).ravel()):
        members = np.flatnonzero((flat_groups >= 0) & (flat_labels == cls))
        ids, sizes = np.unique(flat_groups[members], return_counts=True)
        order = rng.permutation(len(ids))
        ids, sizes = ids[order], sizes[order]
        total = int(sizes.sum())
        n_train = _groups_holding(sizes, max(train_per_class, TRAIN_GROUP_SHARE * total), keep=min(2, len(ids) - 1))
        n_val = n_train + _groups_holding(sizes[n_train:], max(val_per_class, VALIDATION_GROUP_SHARE * total),
                                          keep=min(1, len(ids) - n_train - 1))
        sets = ((split.train, ids[:n_train], train_per_class), (split.validation, ids[n_train:n_val], val_per_class),
                (split.test, ids[n_val:], None))
        for target, chosen, count in sets:
            idx = members[np.isin(flat_groups[members], chosen)]
            if count is not None and len(idx) > count:
                idx = np.sort(rng.choice(idx, count, replace=False))
            np.put(target, idx, cls)
    return split


def _groups_holding(sizes: np.ndarray, pixels: float, keep: int) -> int:
    """How many of the leading groups it takes to hold ``pixels`` (at least one), leaving ``keep`` groups."""
    if len(sizes) == 0:
        return 0
    needed = int(np.searchsorted(np.cumsum(sizes), pixels)) + 1
    return max(1, min(needed, len(sizes) - keep))


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
