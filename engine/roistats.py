"""ROI statistics before training: class spectra, pixel and ROI counts, Jeffries–Matusita separability.

What EnMAP-Box and SCP show an analyst before a classifier runs: whether the classes drawn differ in
their spectra at all. Per class: the mean ± standard deviation spectrum of its ROI pixels (in the
raster's units, over wavelength when the raster has them), its pixel count and its number of separate
ROIs (8-connected components, as the spatial split counts them). Between classes: the Jeffries–Matusita
distance of two Gaussian classes,

    B = 1/8 (μᵢ − μⱼ)ᵀ Σ⁻¹ (μᵢ − μⱼ) + 1/2 ln(|Σ| / √(|Σᵢ| |Σⱼ|)),  Σ = (Σᵢ + Σⱼ)/2,  JM = 2 (1 − e^(−B)),

from 0 (identical) to 2 (separable); pairs below 1.9 are commonly read as poorly separable. A class of
30 pixels cannot give a full-rank covariance of 200 bands, so JM is computed on the leading principal
components of the standardised ROI spectra (at most ``JM_COMPONENTS``, and fewer than the smallest class
has pixels) with a small ridge on the covariances; the report says how many. Only the ROI windows of the
raster are read (sampler.label_windows), so a large scene costs what its ROIs cost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np

from .data.labels import ClassTable, class_indices, read_reference
from .data.raster import open_raster, read_window
from .data.splits import groups_per_class
from .training.sampler import label_windows

__all__ = ["JM_COMPONENTS", "JM_WARNING", "FEW_PIXELS", "RoiStatistics", "roi_statistics", "jeffries_matusita"]

log = logging.getLogger(__name__)

JM_COMPONENTS = 10   # principal components for JM: most of the variance of a scene's spectra
JM_WARNING = 1.9     # pairs below: poorly separable
FEW_PIXELS = 30      # classes with fewer ROI pixels: too few for a stable model (the 30/10 protocol's count)
_RIDGE = 1e-6        # times the mean variance, added to every covariance's diagonal


@dataclass
class RoiStatistics:
    table: ClassTable
    pixels: List[int]                 # ROI pixels per class with data
    rois: List[int]                   # separate ROIs (8-connected components) per class
    mean: np.ndarray                  # (classes, bands) in the raster's units
    std: np.ndarray
    band_names: List[str]
    wavelengths: Optional[List[float]]
    jm: np.ndarray                    # (classes, classes), NaN where a class has fewer than 2 pixels
    components: int                   # principal components the JM used
    raster: str
    reference: str

    def warnings(self) -> List[str]:
        """The problems to fix before training: small classes and poorly separable pairs."""
        out = [f"class {cid} ({name}) has {n} ROI pixels, fewer than {FEW_PIXELS}: draw more"
               for cid, name, n in zip(self.table.ids, self.table.names, self.pixels) if n < FEW_PIXELS]
        k = len(self.table.ids)
        for i in range(k):
            for j in range(i + 1, k):
                if np.isfinite(self.jm[i, j]) and self.jm[i, j] < JM_WARNING:
                    out.append(f"classes {self.table.ids[i]} ({self.table.names[i]}) and {self.table.ids[j]} "
                               f"({self.table.names[j]}) are poorly separable: JM {self.jm[i, j]:.2f} < {JM_WARNING}")
        return out

    def as_dict(self) -> Dict[str, Any]:
        def clean(value: float) -> Optional[float]:
            return float(value) if np.isfinite(value) else None

        return {"raster": self.raster, "reference": self.reference, "jm_components": self.components,
                "band_names": self.band_names, "wavelengths": self.wavelengths,
                "classes": [{"id": cid, "name": name, "color": list(color), "pixels": n, "rois": r,
                             "mean": [clean(v) for v in mean], "std": [clean(v) for v in std]}
                            for cid, name, color, n, r, mean, std in zip(
                                self.table.ids, self.table.names, self.table.colors, self.pixels, self.rois,
                                self.mean, self.std)],
                "jeffries_matusita": [[clean(v) for v in row] for row in self.jm], "warnings": self.warnings()}


def roi_statistics(raster: str, labels: Optional[str] = None, rois: Optional[str] = None,
                   class_field: Optional[str] = None, name_field: Optional[str] = None,
                   bands: Optional[List[int]] = None) -> RoiStatistics:
    """Spectra, counts and separability of the classes of ``labels`` (raster) or ``rois`` (vector) on ``raster``."""
    info = open_raster(raster, bands)
    ids, table = read_reference(info, labels, rois, class_field, name_field)
    index = class_indices(ids, table)
    plan = label_windows(index >= 0)
    spectra, classes = [], []
    for k, window in enumerate(plan.windows):
        data, valid = read_window(info, window.row0, window.col0, *window.shape)
        take = plan.owned(k) & valid & (index[window.slices] >= 0)
        spectra.append(data[:, take].T)
        classes.append(index[window.slices][take])
    x = np.concatenate(spectra) if spectra else np.zeros((0, info.bands), np.float32)
    y = np.concatenate(classes) if classes else np.zeros(0, np.int64)
    n_classes = len(table.ids)
    pixels = np.bincount(y, minlength=n_classes)
    if not pixels.any():
        raise ValueError(f"the ROIs cover no pixel with data in {raster}; check that they lie on the raster's data")
    mean = np.stack([x[y == c].mean(0) if pixels[c] else np.full(info.bands, np.nan) for c in range(n_classes)])
    std = np.stack([x[y == c].std(0) if pixels[c] else np.full(info.bands, np.nan) for c in range(n_classes)])
    jm, components = jeffries_matusita(x, y, n_classes)
    counts = groups_per_class(index)
    return RoiStatistics(table, pixels.astype(int).tolist(), [counts.get(c, 0) for c in range(n_classes)], mean, std,
                         list(info.band_names), info.wavelengths, jm, components, raster, labels or rois or "")


def jeffries_matusita(x: np.ndarray, y: np.ndarray, n_classes: int,
                      max_components: int = JM_COMPONENTS) -> "tuple[np.ndarray, int]":
    """(JM matrix (n, n) with 0 on the diagonal and NaN for classes of < 2 pixels, components used) of
    spectra x (N, bands) with class indices y (N,), on the leading principal components (module docstring)."""
    x = np.asarray(x, np.float64)
    sizes = np.bincount(y, minlength=n_classes)
    usable = sizes >= 2
    jm = np.full((n_classes, n_classes), np.nan)
    if usable.sum() < 2:
        np.fill_diagonal(jm, 0.0)
        return jm, 0
    spread = x.std(0)
    z = (x - x.mean(0)) / np.where(spread > 0, spread, 1.0)
    components = int(max(1, min(max_components, z.shape[1], sizes[usable].min() - 1)))
    _, vectors = np.linalg.eigh(np.cov(z, rowvar=False))          # bands x bands, whatever the pixel count
    scores = z @ vectors[:, ::-1][:, :components]
    means, covs = {}, {}
    ridge = _RIDGE * max(float(scores.var(0).mean()), 1e-12)
    for c in np.flatnonzero(usable):
        part = scores[y == c]
        means[c] = part.mean(0)
        covs[c] = np.atleast_2d(np.cov(part, rowvar=False)) + ridge * np.eye(components)
    for i in means:
        for j in means:
            if i >= j:
                continue
            cov = (covs[i] + covs[j]) / 2
            diff = means[i] - means[j]
            _, logdet = np.linalg.slogdet(cov)
            _, logdet_i = np.linalg.slogdet(covs[i])
            _, logdet_j = np.linalg.slogdet(covs[j])
            b = diff @ np.linalg.solve(cov, diff) / 8 + (logdet - (logdet_i + logdet_j) / 2) / 2
            jm[i, j] = jm[j, i] = 2 * (1 - np.exp(-b))
    for c in np.flatnonzero(usable):
        jm[c, c] = 0.0
    return jm, components
