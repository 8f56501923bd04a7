"""MODELS.md T16: the 30/10 protocol, small classes, determinism, disjoint sets, no-data exclusion."""

import numpy as np
import pytest

from engine.data.splits import (MIN_GROUPS, fixed_count_split, groups_per_class, label_groups, ratio_split,
                               spatial_split, validation_roi_split)


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


# ------------------------------------------------------------------------------------------------
# Spatially disjoint split (issue 13)

def squares(classes_and_corners, shape=(60, 60), side=6):
    """A label map of side × side squares: [(class, row, col), ...], -1 elsewhere."""
    labels = np.full(shape, -1)
    for cls, row, col in classes_and_corners:
        labels[row:row + side, col:col + side] = cls
    return labels


def test_spatial_split_keeps_training_and_test_in_different_components():
    from scipy import ndimage

    corners = [(cls, 8 * r, 8 * c + 30 * cls) for cls in (0, 1) for r in range(7) for c in range(3)]
    labels = squares(corners)
    split = spatial_split(labels, seed=4)
    components, _ = ndimage.label(labels >= 0, structure=np.ones((3, 3)))
    trained = set(np.unique(components[split.train >= 0]))
    assert trained.isdisjoint(np.unique(components[split.test >= 0]))
    assert trained.isdisjoint(np.unique(components[split.validation >= 0]))
    for cls in (0, 1):
        assert sizes(split, cls)[:2] == [30, 10]           # the label budget of the pixel split
        # half of the 21 squares hold the training draw: it spreads over several of them
        assert len(set(np.unique(components[split.train == cls]))) >= 3
        assert sizes(split, cls)[2] >= 4 * 36              # about 30 % of the class, in whole squares
    assert np.array_equal(spatial_split(labels, seed=4).train, split.train)
    assert not np.array_equal(spatial_split(labels, seed=5).train, split.train)


def test_a_class_in_one_field_is_cut_into_blocks_for_training_validation_and_test():
    labels = np.full((40, 40), -1)
    labels[2:38, 2:38] = 0                                  # one component holds the whole class
    groups = label_groups(labels)
    assert len(np.unique(groups[labels == 0])) >= MIN_GROUPS
    split = spatial_split(labels, seed=0)
    assert all(n > 0 for n in sizes(split, 0))
    train_blocks = set(np.unique(groups[split.train >= 0]))
    assert train_blocks.isdisjoint(np.unique(groups[split.test >= 0]))


def test_spatial_split_never_uses_invalid_pixels_and_counts_components_per_class():
    labels = squares([(0, 0, 0), (0, 0, 20), (0, 0, 40), (1, 30, 0)])
    valid = np.ones(labels.shape, bool)
    valid[0:6, 40:46] = False                               # one square of class 0 under nodata
    assert groups_per_class(labels) == {0: 3, 1: 1}
    assert groups_per_class(labels, valid) == {0: 2, 1: 1}
    split = spatial_split(labels, seed=1, valid=valid)
    for part in (split.train, split.validation, split.test):
        assert not (part[~valid] >= 0).any()
