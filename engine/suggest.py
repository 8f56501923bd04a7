"""Where to draw the next ROIs: the places a trained model is least sure about, spread over the scene.

Drawing ROIs is the analyst's most expensive step; a model already knows where it hesitates. A pixel's
*margin* is the gap between its two most probable classes (p₁ − p₂): a small margin means the model
cannot decide between them ("margin sampling", the classic choice of pool-based active learning). Its
score is 1 − margin, raised by ``BORDER_BONUS`` where its 3 × 3 neighbourhood holds another predicted
class or, for CSSMamba, another cluster: borders are where classes meet and ROIs are scarce.

Picking the highest scores alone would put every suggestion in one confused patch, so the selection
is greedy with two rules: no two suggestions closer than ``min_distance`` pixels (labelled pixels
keep half that distance: there is no point drawing where ROIs are), and, in a first pass, at most
⌈n / groups⌉ suggestions per predicted class, so that every class's doubtful areas get some; a second
pass fills what is left by score alone. Each suggestion says why it was chosen.

``suggest_file`` classifies the raster with the model (temporary probability and cluster rasters),
selects, and writes a point GeoPackage: one point per suggestion at the pixel centre with the predicted
class, the runner-up, both probabilities, the cluster, the score, the reason, and an empty ``class_id``
for the analyst to fill before adding the points to the ROIs.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from .memory import gives_back_heap

__all__ = ["BORDER_BONUS", "Suggestion", "select_suggestions", "suggestions_distance", "suggest_file"]

BORDER_BONUS = 0.25
log = logging.getLogger(__name__)


@dataclass
class Suggestion:
    row: int
    col: int
    predicted: int          # class index
    second: int             # runner-up class index
    p_first: float
    p_second: float
    cluster: int            # -1 without clusters
    border: bool
    score: float

    def reason(self, names: Sequence[str]) -> str:
        text = (f"undecided between {names[self.predicted]} ({self.p_first:.2f}) and {names[self.second]} "
                f"({self.p_second:.2f})")
        return text + (", on a class or cluster border" if self.border else "")


def _differs_around(labels: np.ndarray) -> np.ndarray:
    """(H, W) bool: a pixel whose 8 neighbours hold another value than its own."""
    padded = np.pad(labels, 1, mode="edge")
    rows, cols = labels.shape
    out = np.zeros(labels.shape, bool)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            if dr or dc:
                out |= padded[1 + dr:1 + dr + rows, 1 + dc:1 + dc + cols] != labels
    return out


def select_suggestions(probabilities: np.ndarray, valid: np.ndarray, n: int, clusters: Optional[np.ndarray] = None,
                       exclude: Optional[np.ndarray] = None, min_distance: Optional[float] = None,
                       candidates: Optional[np.ndarray] = None) -> List[Suggestion]:
    """``n`` suggestions from class probabilities (K, H, W) at the ``valid`` pixels (module docstring).

    ``exclude`` (H, W) bool: labelled pixels (no suggestion within ``min_distance`` / 2 of them);
    ``candidates`` (H, W) bool restricts where suggestions may lie (a simulation's pool); ``min_distance``
    None: half the spacing of n points spread evenly over the valid pixels, at least 2 px."""
    if n < 1:
        raise ValueError(f"ask for at least one suggestion, got {n}")
    k, rows, cols = probabilities.shape
    if k < 2:
        raise ValueError("suggestions need a model of at least two classes")
    usable = np.asarray(valid, bool) & (probabilities.sum(0) > 0)
    if candidates is not None:
        usable &= candidates
    min_distance = suggestions_distance(usable, n, min_distance)
    first = probabilities.argmax(0)
    p_first = np.take_along_axis(probabilities, first[None], 0)[0]
    runner_up = probabilities.copy()
    np.put_along_axis(runner_up, first[None], -1.0, 0)
    second = runner_up.argmax(0)
    p_second = np.take_along_axis(probabilities, second[None], 0)[0]
    del runner_up
    predicted = np.where(usable, first, -1)
    border = _differs_around(predicted)
    if clusters is not None:
        border |= _differs_around(np.where(usable, clusters, -1))
    score = 1.0 - (p_first - p_second) + BORDER_BONUS * border
    blocked = np.zeros(usable.shape, bool)
    if exclude is not None and exclude.any():
        blocked = _near(exclude, min_distance / 2)
    pool = np.flatnonzero(usable & ~blocked)
    pool = pool[np.argsort(-score.ravel()[pool], kind="stable")]
    chosen: List[int] = []
    taken = np.zeros(k, np.int64)
    cap = math.ceil(n / k)
    reach = int(math.ceil(min_distance))
    offsets = np.argwhere(np.ones((2 * reach + 1,) * 2, bool)) - reach
    offsets = offsets[(offsets ** 2).sum(1) < min_distance ** 2]          # the disk a suggestion keeps free
    for capped in (True, False):
        for index in pool:
            if len(chosen) == n:
                break
            r, c = divmod(int(index), cols)
            cls = int(first[r, c])
            if blocked[r, c] or (capped and taken[cls] >= cap):
                continue
            chosen.append(int(index))
            taken[cls] += 1
            disk = offsets + (r, c)
            disk = disk[(disk[:, 0] >= 0) & (disk[:, 0] < rows) & (disk[:, 1] >= 0) & (disk[:, 1] < cols)]
            blocked[disk[:, 0], disk[:, 1]] = True
    out = []
    for index in chosen:
        r, c = divmod(index, cols)
        out.append(Suggestion(r, c, int(first[r, c]), int(second[r, c]), float(p_first[r, c]),
                              float(p_second[r, c]), int(clusters[r, c]) if clusters is not None else -1,
                              bool(border[r, c]), float(score[r, c])))
    return out


def suggestions_distance(usable: np.ndarray, n: int, min_distance: Optional[float]) -> float:
    """The distance kept between suggestions: as given, else half the spacing of n points spread evenly
    over the usable pixels, at least 2 px."""
    if min_distance is not None:
        return float(min_distance)
    return max(2.0, 0.5 * math.sqrt(max(int(np.count_nonzero(usable)), 1) / n))


def _near(mask: np.ndarray, distance: float) -> np.ndarray:
    """(H, W) bool: pixels within ``distance`` px of a True pixel of ``mask`` (scipy's distance transform)."""
    from scipy import ndimage

    return ndimage.distance_transform_edt(~mask) < distance


@gives_back_heap                                   # a QGIS job (engine.memory)
def suggest_file(model_path: str, raster: str, out: str, n: int = 20, labels: Optional[str] = None,
                 rois: Optional[str] = None, class_field: Optional[str] = None, min_distance: Optional[float] = None,
                 device: str = "auto", threads: Optional[int] = None, progress: Optional[Callable[..., None]] = None,
                 cancelled: Optional[Callable[[], bool]] = None) -> Dict[str, Any]:
    """Classify ``raster`` with the model, pick ``n`` suggestions (away from the ROIs or labels given) and
    write them as points to the GeoPackage ``out``; returns {path, suggestions: [dict]}."""
    from osgeo import gdal

    from .data.labels import read_reference
    from .data.raster import open_raster
    from .modelfile import load_model
    from .paths import check_distinct
    from .pipeline import classify_file

    check_distinct({"model file": model_path, "raster": raster, "label raster": labels, "ROI file": rois},
                   {"suggestion layer": out})
    if not out.lower().endswith(".gpkg"):
        raise ValueError(f"the suggestions are written as a GeoPackage: give a file name ending in .gpkg, got {out}")
    _, metadata = load_model(model_path)
    names = list(metadata["classes"]["names"])
    clustered = bool(metadata["model"]["config"].get("clusters_per_class"))
    work = tempfile.mkdtemp(prefix="cssmamba-suggest-")
    try:
        paths = {"probabilities": os.path.join(work, "p.tif"), "clusters": os.path.join(work, "k.tif")}
        classify_file(model_path, raster, os.path.join(work, "c.tif"), probabilities=paths["probabilities"],
                      clusters=paths["clusters"] if clustered else None, device=device, threads=threads,
                      progress=progress, cancelled=cancelled)
        probabilities = gdal.Open(paths["probabilities"]).ReadAsArray().astype(np.float32)
        if probabilities.ndim == 2:
            probabilities = probabilities[None]
        clusters = gdal.Open(paths["clusters"]).ReadAsArray().astype(np.int64) if clustered else None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info = open_raster(raster, drop_bad_bands=False)
    exclude = None
    if labels or rois:
        ids, _ = read_reference(info, labels, rois, class_field, None)
        exclude = ids > 0
    has_data = probabilities.sum(0) > 0
    suggestions = select_suggestions(probabilities, has_data, n, clusters, exclude, min_distance)
    records = [dict(rank=k + 1, predicted_id=metadata["classes"]["ids"][s.predicted], predicted=names[s.predicted],
                    probability=round(s.p_first, 4), second_id=metadata["classes"]["ids"][s.second],
                    second=names[s.second], second_probability=round(s.p_second, 4), cluster=s.cluster,
                    score=round(s.score, 4), reason=s.reason(names), row=s.row, col=s.col)
               for k, s in enumerate(suggestions)]
    _write_points(out, records, info)
    if len(records) < n:
        distance = suggestions_distance(has_data, n, min_distance)
        log.warning("%d suggestions of the %d asked for: no other pixel lies %.0f px from the others and %.0f px "
                    "from the ROIs; lower the distance (--min-distance) for more", len(records), n, distance,
                    distance / 2)
    return {"path": out, "suggestions": records}


def _write_points(path: str, records: List[Dict[str, Any]], info: Any) -> None:
    """The suggestions as points at their pixel centres, written under a temporary name and renamed."""
    from osgeo import ogr

    from .data.raster import spatial_reference
    from .paths import remove_stale_temporaries, temporary_file

    remove_stale_temporaries(path, (".part.gpkg",))
    temporary = temporary_file(path, ".part.gpkg")
    os.remove(temporary)
    source = layer = None
    try:
        source = ogr.GetDriverByName("GPKG").CreateDataSource(temporary)
        layer = source.CreateLayer(os.path.splitext(os.path.basename(path))[0], spatial_reference(info.projection),
                                   ogr.wkbPoint)
        types = {int: ogr.OFTInteger, float: ogr.OFTReal, str: ogr.OFTString}
        for key, value in (records[0].items() if records else ()):
            layer.CreateField(ogr.FieldDefn(key, types[type(value)]))
        layer.CreateField(ogr.FieldDefn("class_id", ogr.OFTInteger))    # for the analyst to fill in
        a, b, c, d, e, f = info.geotransform
        for record in records:
            feature = ogr.Feature(layer.GetLayerDefn())
            for key, value in record.items():
                feature.SetField(key, value)
            x = a + (record["col"] + 0.5) * b + (record["row"] + 0.5) * c
            y = d + (record["col"] + 0.5) * e + (record["row"] + 0.5) * f
            feature.SetGeometry(ogr.CreateGeometryFromWkt(f"POINT ({x} {y})"))
            layer.CreateFeature(feature)
        source = None                                    # closed before the rename
        os.replace(temporary, path)
    finally:
        source = layer = None                            # a failed write: close before removing
        if os.path.exists(temporary):
            os.remove(temporary)
