"""Accuracy assessment of a class raster against reference labels or ROIs: the ``evaluate`` job.

Kept apart from the training and classification jobs because it needs neither torch nor scikit-learn
(numpy and GDAL only): *Accuracy assessment* runs in a QGIS that has only those.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from osgeo import gdal

from .area import area_adjusted_accuracy
from .data.labels import read_reference
from .data.raster import RasterInfo, open_dataset, open_raster, read_band, spatial_reference
from .metrics import accuracy
from .paths import check_distinct, write_text_atomic

gdal.UseExceptions()

UNCLASSIFIED = -1  # class id given in evaluations to reference pixels the class map left at 0 (nodata)


def read_class_map(path: str) -> Tuple[np.ndarray, RasterInfo]:
    """The class map (H, W) int64 of a single-band classification raster and its grid (RasterInfo)."""
    dataset = open_dataset(path, "class raster")
    if dataset.RasterCount != 1:
        raise ValueError(f"{path} has {dataset.RasterCount} bands; a class raster has one (the 'classify' --out)")
    values = read_band(dataset, 1, 0, 0, dataset.RasterXSize, dataset.RasterYSize, what="class raster")
    if np.issubdtype(values.dtype, np.floating) and not np.all(np.isfinite(values) & (values == np.round(values))):
        raise ValueError(f"{path} holds non-integer values; it is not a class raster")
    return values.astype(np.int64), open_raster(path, drop_bad_bands=False)


def evaluate_files(pred: str, labels: Optional[str] = None, rois: Optional[str] = None,
                   class_field: Optional[str] = None, name_field: Optional[str] = None,
                   json_out: Optional[str] = None,
                   other_outputs: Optional[Dict[str, Optional[str]]] = None) -> Dict[str, Any]:
    """Accuracy of the class raster ``pred`` against reference labels (raster) or ROIs (vector + class field).

    Every reference class present counts. A reference pixel the class map left unclassified (0) or gave a
    class the reference does not know counts as an error: such predictions appear as extra columns
    (``-1`` = unclassified), never silently dropped. Reference on another grid → ValueError.
    ``other_outputs``: {what: path} of the caller's further outputs (reports), checked with ``json_out``
    against the inputs (``paths.check_distinct``).
    """
    check_distinct({"class raster": pred, "reference label raster": labels, "reference ROI file": rois},
                   dict(other_outputs or {}, **{"JSON report": json_out}))
    predicted, info = read_class_map(pred)
    reference, table = read_reference(info, labels, rois, class_field, name_field, what="reference")
    present = [int(c) for c in np.unique(reference) if c > 0]
    if not present:
        raise ValueError("the reference labels/ROIs have no labelled pixel on the class raster's grid")
    at_reference = reference > 0
    predicted = np.where(at_reference & (predicted == 0), UNCLASSIFIED, predicted)
    extra = sorted(set(np.unique(predicted[at_reference]).tolist()) - set(present))
    names = dict(zip((int(c) for c in table.ids), table.names))
    names[UNCLASSIFIED] = "unclassified"
    result = accuracy(reference, predicted, present + extra).as_dict(names)
    result["area_adjusted"] = area_adjusted(predicted, reference, present, info, names)
    result["prediction"] = os.path.abspath(pred)
    result["reference"] = os.path.abspath(labels or rois)
    if json_out:
        write_text_atomic(json_out, json.dumps(result, indent=2), "JSON report")
    return result


def pixel_area_m2(info: RasterInfo) -> Optional[float]:
    """Ground area of one pixel in m², or None when the grid has no projected CRS (degrees or none)."""
    srs = spatial_reference(info.projection)
    if srs is None or not srs.IsProjected():
        return None
    a, b, _, d, e = (info.geotransform[i] for i in (1, 2, 3, 4, 5))
    return abs(a * e - b * d) * srs.GetLinearUnits() ** 2


def area_adjusted(class_map: np.ndarray, reference: np.ndarray, reference_ids: List[int], info: RasterInfo,
                  names: Dict[int, str]) -> Dict[str, Any]:
    """Olofsson et al. (2014)'s area-weighted accuracy and class areas (engine/area.py), with the map's
    classes as strata; reference pixels the map leaves unclassified lie outside every stratum and are left
    out (counted in the notes)."""
    mapped_ids = [int(c) for c in np.unique(class_map[class_map > 0])]
    ids = np.array(sorted(set(reference_ids) | set(mapped_ids)), dtype=np.int64)
    at_reference = (reference > 0) & (class_map > 0)
    rows = np.searchsorted(ids, class_map[at_reference])
    cols = np.searchsorted(ids, reference[at_reference])
    sample = np.bincount(rows * len(ids) + cols, minlength=len(ids) ** 2).reshape(len(ids), len(ids))
    values, counts = np.unique(class_map[class_map > 0], return_counts=True)
    mapped = np.zeros(len(ids), np.int64)
    mapped[np.searchsorted(ids, values)] = counts
    result = area_adjusted_accuracy(sample, mapped, ids.tolist()).as_dict(pixel_area_m2(info), names)
    outside = int(((reference > 0) & (class_map <= 0)).sum())
    if outside:
        result["notes"].append(f"{outside:,} reference pixels lie where the map is unclassified: outside every "
                               "stratum, so not in these estimates (they count as errors in the pixel table)")
    result["notes"].append("the estimators assume the reference pixels are a stratified random sample of the map "
                           "classes (e.g. random points per class); for hand-drawn ROIs they are an approximation")
    return result
