"""MODELS.md T16: the 30/10 protocol, small classes, determinism, disjoint sets, no-data exclusion."""

import numpy as np
import pytest

from engine.data.splits import fixed_count_split, ratio_split, validation_roi_split


def label_map(counts, shape=(100, 100), seed=0):
    """A label map with exactly counts[c] pixels of class c at random positions, -1 elsewhere."""
    rng = np.random.default_rng(seed)
    flat = np.full(shape[0] * shape[1], -1)
    order = rng.permutation(flat.size)
    start = 0
    for cls, count in enumerate(counts):
        flat[order[start:start + count]] = cls
        start += count
    return flat.reshape(shape)


def sizes(split, cls):
    return [(m == cls).sum() for m in (split.train, split.validation, split.test)]


def test_fixed_count_split_gives_30_10_rest_and_15_for_small_classes():
    labels = label_map([100, 31, 30, 28, 20])
    split = fixed_count_split(labels, seed=0)
    assert sizes(split, 0) == [30, 10, 60]
    assert sizes(split, 1) == [30, 1, 0]
    assert sizes(split, 2) == [15, 10, 5]
    assert sizes(split, 3) == [15, 10, 3]   # Indian Pines' Grass-pasture-mowed
    assert sizes(split, 4) == [15, 5, 0]    # Indian Pines' Oats


def test_sets_are_disjoint_cover_the_labels_and_keep_class_ids():
    labels = label_map([80, 50])
    split = fixed_count_split(labels, seed=3)
    members = [(m >= 0) for m in (split.train, split.validation, split.test)]
    assert not (members[0] & members[1]).any() and not (members[0] & members[2]).any()
    assert np.array_equal(members[0] | members[1] | members[2], labels >= 0)
    for m in (split.train, split.validation, split.test):
        assert np.array_equal(m[m >= 0], labels[m >= 0])


def test_same_seed_same_split_other_seed_differs():
    labels = label_map([80, 50])
    a, b, c = (fixed_count_split(labels, seed=s) for s in (7, 7, 8))
    assert np.array_equal(a.train, b.train) and np.array_equal(a.validation, b.validation)
    assert not np.array_equal(a.train, c.train)


def test_split_is_bit_compatible_with_the_reference_sampling():
    """The reference seeds numpy's global RNG once and shuffles each class's indices in class order."""
    labels = label_map([60, 45])
    np.random.seed(11)
    expected = []
    for cls in (0, 1):
        idx = np.flatnonzero(labels.ravel() == cls)
        np.random.shuffle(idx)
        expected.append(np.sort(idx[:30]))
    split = fixed_count_split(labels, seed=11)
    for cls in (0, 1):
        assert np.array_equal(np.flatnonzero(split.train.ravel() == cls), expected[cls])


def test_pixels_outside_the_valid_mask_are_never_sampled():
    labels = label_map([100])
    valid = np.ones_like(labels, dtype=bool)
    valid[:50] = False
    split = fixed_count_split(labels, seed=0, valid=valid)
    for m in (split.train, split.validation, split.test):
        assert (m[:50] == -1).all()
    assert sum(sizes(split, 0)) == (labels[50:] == 0).sum()


def test_ratio_split_uses_fractions_with_minimum_counts():
    split = ratio_split(label_map([1000, 20]), seed=0)
    assert sizes(split, 0)[:2] == [100, 10]
    assert sizes(split, 1)[:2] == [3, 1]
    with pytest.raises(ValueError, match="fractions"):
        ratio_split(label_map([10]), seed=0, train_ratio=0.9, val_ratio=0.2)


def test_validation_rois_give_the_sets_and_test_is_the_rest_of_the_reference(caplog):
    reference = label_map([60, 40], shape=(20, 20), seed=1)
    train = np.where(np.arange(400).reshape(20, 20) % 3 == 0, reference, -1)
    validation = np.where(np.arange(400).reshape(20, 20) % 3 == 1, reference, -1)
    validation[0, 0] = 1   # also a training pixel (class 0 there or unlabelled): validation only
    train[0, 0] = 0
    valid = np.ones((20, 20), bool)
    valid[19] = False
    with caplog.at_level("WARNING"):
        split = validation_roi_split(train, validation, valid=valid, reference=reference)
    assert "1 pixels are in both" in caplog.text
    assert split.train[0, 0] == -1 and split.validation[0, 0] == 1
    expected_train = np.where(valid & (train >= 0), train, -1)
    expected_train[0, 0] = -1
    assert np.array_equal(split.train, expected_train)
    assert np.array_equal(split.validation, np.where(valid & (validation >= 0), validation, -1))
    rest = valid & (reference >= 0) & (train < 0) & (validation < 0)
    assert np.array_equal(split.test, np.where(rest, reference, -1))
    for m in (split.train, split.validation, split.test):
        assert (m[19] == -1).all(), "pixels under nodata are never used"
    members = [(m >= 0) for m in (split.train, split.validation, split.test)]
    assert not (members[0] & members[1]).any() and not (members[0] & members[2]).any()
    assert not (members[1] & members[2]).any()
    assert (validation_roi_split(train, validation).test == -1).all(), "no reference: no test set"


def test_validation_roi_split_refuses_empty_sets_and_mismatched_shapes():
    train = np.full((5, 5), -1)
    train[0, 0] = 0
    validation = np.full((5, 5), -1)
    validation[4, 4] = 0
    nodata_over_validation = np.ones((5, 5), bool)
    nodata_over_validation[4, 4] = False
    with pytest.raises(ValueError, match="validation ROIs 0 usable pixels"):
        validation_roi_split(train, validation, valid=nodata_over_validation)
    with pytest.raises(ValueError, match="one shape"):
        validation_roi_split(train, validation[:4])
