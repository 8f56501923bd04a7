"""CSSMamba's static cluster prior (MODELS.md §4.2), computed once per split from training labels only.

Each class's training pixels are split into at most K sub-clusters (k-means in a PCA space fitted on
the training pixels); every training pixel gets the group id g = class·K + sub-cluster. The mean raw
spectrum of each group then seeds one k-means over all valid pixels, which yields the static map S in
the same id space. The groups drive the EMA prototype updates; S (and its cluster sizes) serve the
top-k partition and the L_b loss. Validation and test labels are never read, so the prior is the same
whatever they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

__all__ = ["ClusterPrior", "static_cluster_prior"]

PCA_COMPONENTS = 20
SEED = 42


@dataclass(frozen=True)
class ClusterPrior:
    """groups (H, W) int64: training group id class·K + sub, -1 off training pixels;
    static (H, W) int64: static cluster (group-id space), -1 at invalid pixels;
    sizes (K_tot,) int64: pixels per static cluster, 0 for ids that no group uses."""

    groups: np.ndarray
    static: np.ndarray
    sizes: np.ndarray


def static_cluster_prior(
    raw: np.ndarray,
    train_labels: np.ndarray,
    valid: np.ndarray,
    n_classes: int,
    clusters_per_class: int,
) -> ClusterPrior:
    """Static prior of §4.2 from raw (Nb, H, W) spectra, train_labels (H, W) (-1 = not training) and
    valid (H, W) bool. Deterministic (random_state 42 everywhere)."""
    raw = np.asarray(raw)
    train_labels = np.asarray(train_labels)
    valid = np.asarray(valid, dtype=bool)
    if raw.ndim != 3:
        raise ValueError(f"raw must be (bands, rows, cols), got shape {raw.shape}")
    n_bands, rows, cols = raw.shape
    if train_labels.shape != (rows, cols) or valid.shape != (rows, cols):
        raise ValueError(
            f"train_labels {train_labels.shape} and valid {valid.shape} must match the raster's "
            f"(rows, cols) = {(rows, cols)}"
        )
    if clusters_per_class < 1:
        raise ValueError(f"clusters_per_class must be >= 1, got {clusters_per_class}")
    if train_labels.max(initial=-1) >= n_classes:
        raise ValueError(f"train_labels hold class {int(train_labels.max())} but the model has {n_classes} classes")
    train = (train_labels >= 0) & valid
    if not train.any():
        raise ValueError("no valid training pixels: the cluster prior needs at least one labelled pixel with data")

    spectra = raw.reshape(n_bands, -1).T                       # (L, Nb) raw, as loaded
    flat_valid, flat_train = valid.reshape(-1), train.reshape(-1)
    classes = train_labels.reshape(-1)[flat_train]
    train_pixels = np.flatnonzero(flat_train)

    # 1-2. Min-max over the valid cube, then scaler + PCA fitted on the training pixels only.
    low = spectra[flat_valid].min(axis=0).astype(np.float64)
    high = spectra[flat_valid].max(axis=0).astype(np.float64)
    scaled = (spectra[flat_train].astype(np.float64) - low) / (high - low + 1e-10)
    scaled = StandardScaler().fit_transform(scaled)
    n_components = min(PCA_COMPONENTS, scaled.shape[0], n_bands)
    features = PCA(n_components=n_components, random_state=SEED).fit_transform(scaled)

    # 3. Per-class sub-clusters -> group ids class·K + sub.
    k = clusters_per_class
    group_of_train = np.empty(len(train_pixels), dtype=np.int64)
    for cls in np.unique(classes):
        members = np.flatnonzero(classes == cls)
        k_y = min(k, len(members))
        sub = KMeans(n_clusters=k_y, n_init=5, random_state=SEED).fit_predict(features[members])
        group_of_train[members] = cls * k + sub
    groups = np.full(rows * cols, -1, dtype=np.int64)
    groups[train_pixels] = group_of_train

    # 4-5. Seeds = mean raw spectrum per group; one seeded k-means over all valid pixels.
    group_ids = np.unique(group_of_train)
    seeds = np.stack([spectra[train_pixels[group_of_train == g]].astype(np.float64).mean(axis=0) for g in group_ids])
    valid_spectra = spectra[flat_valid]
    fitted = KMeans(n_clusters=len(group_ids), init=seeds.astype(valid_spectra.dtype), n_init=1, random_state=SEED)
    static = np.full(rows * cols, -1, dtype=np.int64)
    static[flat_valid] = group_ids[fitted.fit_predict(valid_spectra)]
    sizes = np.bincount(static[flat_valid], minlength=n_classes * k).astype(np.int64)
    return ClusterPrior(groups.reshape(rows, cols), static.reshape(rows, cols), sizes)
