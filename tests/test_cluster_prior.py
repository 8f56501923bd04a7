"""MODELS.md T19: CSSMamba's static cluster prior (§4.2) — groups per class, id space, determinism,
independence from validation/test labels, invalid pixels, and a realistic check on Salinas-A."""

import os

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from engine.data.splits import Split, fixed_count_split
from engine.models.cluster_prior import static_cluster_prior
from engine.models.cssmamba import CSSMamba


@pytest.fixture(autouse=True)
def one_thread():
    """k-means on these small scenes is fastest single-threaded; OpenMP hand-offs dominate on a busy machine."""
    with threadpool_limits(1):
        yield


def scene(seed=0, shape=(24, 24), bands=12, classes=3):
    """Raw spectra (bands, H, W) whose classes are vertical stripes with distinct mean spectra, the
    full label map (H, W) and an all-valid mask."""
    rng = np.random.default_rng(seed)
    h, w = shape
    labels = np.repeat((np.arange(w) * classes // w)[None], h, axis=0)
    means = rng.uniform(0.1, 0.9, (classes, bands))
    raw = (means[labels].transpose(2, 0, 1) + rng.normal(0, 0.02, (bands, h, w))).astype(np.float32)
    return raw, labels.astype(np.int64), np.ones(shape, dtype=bool)


def train_only(labels, per_class, seed=0):
    """Training label map with `per_class[c]` random pixels of class c, -1 elsewhere."""
    rng = np.random.default_rng(seed)
    train = np.full(labels.shape, -1, dtype=np.int64)
    for cls, count in enumerate(per_class):
        pixels = rng.choice(np.flatnonzero(labels == cls), count, replace=False)
        train.flat[pixels] = cls
    return train


def test_each_class_gets_min_k_ny_groups_in_its_own_id_block():
    raw, labels, valid = scene()
    train = train_only(labels, [30, 2, 1])
    prior = static_cluster_prior(raw, train, valid, n_classes=3, clusters_per_class=3)
    assert np.array_equal(prior.groups >= 0, train >= 0)
    for cls, expected in enumerate([3, 2, 1]):
        ids = np.unique(prior.groups[train == cls])
        assert len(ids) == expected
        assert np.all(ids // 3 == cls)   # g = y·K + sub
    assert prior.sizes.shape == (9,)
    assert prior.groups.dtype == prior.static.dtype == np.int64


def test_static_map_covers_valid_pixels_in_group_id_space_and_follows_the_classes():
    raw, labels, valid = scene()
    train = train_only(labels, [20, 20, 20])
    prior = static_cluster_prior(raw, train, valid, n_classes=3, clusters_per_class=2)
    assert set(np.unique(prior.static)) <= set(np.unique(prior.groups[prior.groups >= 0]))
    assert np.array_equal(prior.sizes, np.bincount(prior.static.ravel(), minlength=6))
    assert prior.sizes.sum() == valid.sum()
    # Well separated classes: every pixel lands in one of its own class's groups.
    assert np.array_equal(prior.static // 2, labels)


def test_invalid_pixels_get_no_group_and_no_static_cluster():
    raw, labels, valid = scene()
    valid[:4] = False
    raw[:, :4] = 0
    train = train_only(labels, [20, 20, 20])
    prior = static_cluster_prior(raw, train, valid, n_classes=3, clusters_per_class=3)
    assert np.all(prior.static[:4] == -1) and np.all(prior.groups[:4] == -1)
    assert np.all(prior.static[4:] >= 0)
    assert prior.sizes.sum() == valid.sum()


def test_prior_is_deterministic_and_ignores_validation_and_test_labels():
    raw, labels, valid = scene(seed=1)
    first = fixed_count_split(labels, seed=0)
    swapped = Split(train=first.train, validation=first.test, test=first.validation)
    model = CSSMamba(in_bands=raw.shape[0], n_classes=3, dim=8, stages=1)
    a = model.make_guide(raw, first.train, valid)
    b = model.make_guide(raw, swapped.train, valid)
    assert a.shape == (2, 24, 24) and a.dtype == torch.int64
    assert np.array_equal(a.numpy(), b.numpy())
    other = static_cluster_prior(raw, fixed_count_split(labels, seed=5).train, valid, 3, 3)
    assert not np.array_equal(a[0].numpy(), other.groups)   # the groups do follow the training labels


def test_few_training_pixels_cap_the_pca_components():
    raw, labels, valid = scene(bands=30)
    train = train_only(labels, [2, 1, 1])   # 4 samples < 20 components
    prior = static_cluster_prior(raw, train, valid, n_classes=3, clusters_per_class=5)
    assert len(np.unique(prior.groups[prior.groups >= 0])) == 4


def test_bad_inputs_are_refused_with_a_message():
    raw, labels, valid = scene()
    with pytest.raises(ValueError, match="no valid training pixels"):
        static_cluster_prior(raw, np.full(labels.shape, -1), valid, 3, 3)
    with pytest.raises(ValueError, match="must match"):
        static_cluster_prior(raw, labels[:10], valid, 3, 3)
    with pytest.raises(ValueError, match="4 classes|classes"):
        static_cluster_prior(raw, labels + 1, valid, 3, 3)


def test_salinas_a_static_clusters_mostly_agree_with_the_ground_truth(shared_data):
    gdal = pytest.importorskip("osgeo.gdal")
    folder = os.path.join(shared_data, "salinas_a")
    raw = gdal.Open(os.path.join(folder, "salinas_a.tif")).ReadAsArray().astype(np.float32)
    ids = gdal.Open(os.path.join(folder, "salinas_a_labels.tif")).ReadAsArray().astype(np.int64)
    codes = np.unique(ids[ids > 0])
    labels = np.where(ids > 0, np.searchsorted(codes, ids), -1)
    valid = np.ones(labels.shape, dtype=bool)
    split = fixed_count_split(labels, seed=0)
    prior = static_cluster_prior(raw, split.train, valid, n_classes=len(codes), clusters_per_class=3)
    test = split.test >= 0
    agreement = np.mean(prior.static[test] // 3 == split.test[test])
    assert agreement > 0.8, agreement
