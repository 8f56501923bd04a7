"""Cleaning a class map for the analyst's map: a minimum mapping unit (sieve) and a majority filter.

Pixel classifiers leave salt-and-pepper: single pixels or small specks of another class. A map is
usually delivered with a minimum mapping unit (MMU): ``sieve`` merges every patch smaller than the
MMU into its largest neighbour (GDAL's sieve filter; 4- or 8-connected patches), as EnMAP-Box and SCP
do. ``majority`` instead gives every pixel the most frequent class of its k × k neighbourhood (ties
keep the pixel's class), which also smooths class borders. Both keep unclassified pixels (0) as they
are and never let them vote, and both write a copy of the input (its colours, class names and
metadata) under a temporary name that is renamed at the end, so a failure leaves no half-written map.
The majority filter runs over strips of rows, so memory follows the strip, not the raster.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

import numpy as np
from osgeo import gdal

from ..paths import check_distinct, describe_write_error, remove_stale_temporaries, temporary_file

gdal.UseExceptions()

__all__ = ["sieve", "majority", "CONNECTEDNESS"]

CONNECTEDNESS = (4, 8)
_SUFFIX = ".post.tif"
_STRIP_ROWS = 512
_COPY = ["COMPRESS=DEFLATE", "TILED=YES", "BIGTIFF=IF_SAFER"]

Progress = Callable[[float], None]


def _class_band(path: str) -> gdal.Dataset:
    dataset = gdal.Open(path)
    if dataset is None or dataset.RasterCount != 1:
        raise ValueError(f"{path} is not a class raster (one band of class ids); use the class map that "
                         "'classify' wrote")
    if gdal.GetDataTypeName(dataset.GetRasterBand(1).DataType) not in ("Byte", "UInt16", "Int16", "UInt32", "Int32"):
        raise ValueError(f"{path} holds {gdal.GetDataTypeName(dataset.GetRasterBand(1).DataType)} values; a class "
                         "raster holds whole class ids")
    return dataset


def _rewrite(src: str, out: str, work: Callable[[gdal.Dataset], None]) -> str:
    """Copy ``src`` to a temporary beside ``out``, let ``work`` change its class band, then rename."""
    check_distinct({"class raster": src}, {"post-processed class raster": out})
    remove_stale_temporaries(out, (_SUFFIX,))
    source = _class_band(src)
    try:
        temporary = temporary_file(out, _SUFFIX)
    except OSError as error:
        raise ValueError(f"cannot write {out}: {error.strerror}; choose a folder you can write to") from None
    copy = None
    try:
        copy = gdal.Translate(temporary, source, options=gdal.TranslateOptions(creationOptions=_COPY))
        work(copy)
        copy.FlushCache()
        copy = None                                      # closed before the rename (Windows keeps it locked)
        os.replace(temporary, out)
        if os.path.exists(temporary + ".aux.xml"):       # GTiff keeps class names in this sidecar
            os.replace(temporary + ".aux.xml", out + ".aux.xml")
        elif os.path.exists(out + ".aux.xml"):           # an earlier file's names would be read for this one
            os.remove(out + ".aux.xml")
    except RuntimeError as error:
        raise ValueError(describe_write_error(error, out, "post-processed class raster")) from None
    finally:
        copy = None                                      # a failed write: close before removing
        for leftover in (temporary, temporary + ".aux.xml"):
            if os.path.exists(leftover):
                os.remove(leftover)
    return out


def sieve(src: str, out: str, min_pixels: int, connectedness: int = 8) -> str:
    """Merge every patch of fewer than ``min_pixels`` pixels into its largest neighbouring patch."""
    if isinstance(min_pixels, bool) or not isinstance(min_pixels, int) or min_pixels < 2:
        raise ValueError(f"the minimum mapping unit must be a whole number of at least 2 pixels, got {min_pixels!r}")
    if connectedness not in CONNECTEDNESS:
        raise ValueError(f"connectedness must be 4 (edges) or 8 (edges and corners), got {connectedness!r}")

    def work(dataset: gdal.Dataset) -> None:
        band = dataset.GetRasterBand(1)
        classified = gdal.GetDriverByName("MEM").Create("", dataset.RasterXSize, dataset.RasterYSize, 1, gdal.GDT_Byte)
        mask = classified.GetRasterBand(1)
        for row0 in range(0, dataset.RasterYSize, _STRIP_ROWS):
            rows = min(_STRIP_ROWS, dataset.RasterYSize - row0)
            mask.WriteArray((band.ReadAsArray(0, row0, dataset.RasterXSize, rows) > 0).astype(np.uint8), 0, row0)
        gdal.SieveFilter(band, mask, band, min_pixels, connectedness)

    return _rewrite(src, out, work)


def majority(src: str, out: str, size: int = 3, progress: Optional[Progress] = None) -> str:
    """Give every classified pixel the most frequent class of its ``size`` × ``size`` window (odd size);
    unclassified pixels (0) stay 0 and do not vote; a tie keeps the pixel's own class."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 3 or size % 2 == 0:
        raise ValueError(f"the majority window must be an odd number of pixels, at least 3, got {size!r}")
    if size > 2 * _STRIP_ROWS + 1:                      # a strip's halo must not reach a written strip
        raise ValueError(f"the majority window may be at most {2 * _STRIP_ROWS + 1} px, got {size}")
    half = size // 2

    def work(dataset: gdal.Dataset) -> None:
        band = dataset.GetRasterBand(1)
        rows, cols = dataset.RasterYSize, dataset.RasterXSize
        source = band.ReadAsArray   # reads the copy before this strip's writes: strips overlap by ``half``
        pending = []
        for row0 in range(0, rows, _STRIP_ROWS):
            top, bottom = max(0, row0 - half), min(rows, row0 + _STRIP_ROWS + half)
            window = source(0, top, cols, bottom - top).astype(np.int64)
            filtered = _majority(window, half)[row0 - top:row0 - top + min(_STRIP_ROWS, rows - row0)]
            pending.append((row0, filtered))
            if len(pending) > 1:            # the strip above is no longer read: write it
                above, done = pending.pop(0)
                band.WriteArray(done, 0, above)
            if progress is not None:
                progress(min(1.0, (row0 + _STRIP_ROWS) / rows))
        for row0, filtered in pending:
            band.WriteArray(filtered, 0, row0)

    return _rewrite(src, out, work)


def _majority(classes: np.ndarray, half: int) -> np.ndarray:
    """The majority filter of one (rows, cols) array of class ids (0 = unclassified) by box sums per class."""
    ids = np.unique(classes[classes > 0])
    if ids.size == 0:
        return classes
    best_count = np.zeros(classes.shape, np.float64)
    best = classes.copy()
    for cid in ids:
        votes = _box_sum((classes == cid).astype(np.float64), half) + 0.5 * (classes == cid)   # own class wins ties
        better = votes > best_count
        best[better], best_count[better] = cid, votes[better]
    return np.where(classes > 0, best, classes)


def _box_sum(values: np.ndarray, half: int) -> np.ndarray:
    """Sum over the (2·half + 1)² window around each pixel, the window clipped at the array's edges."""
    padded = np.pad(values, half)
    table = np.zeros((padded.shape[0] + 1, padded.shape[1] + 1))
    table[1:, 1:] = padded.cumsum(0).cumsum(1)
    size = 2 * half + 1
    rows, cols = values.shape
    return (table[size:size + rows, size:size + cols] - table[:rows, size:size + cols]
            - table[size:size + rows, :cols] + table[:rows, :cols])
