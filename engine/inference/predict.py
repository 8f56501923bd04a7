"""Classify a raster of any size with a trained model, tile by tile, into GeoTIFFs on the input's grid.

Outputs (all GeoTIFF, same size, geotransform and CRS as the input, DEFLATE, 256 x 256 tiles):

- classes: the model's class ids (Byte when every id fits, else UInt16), 0 = nodata; colour table,
  category names and a raster attribute table (Value, Class, Red, Green, Blue) from the model, so GIS
  software shows names and colours without a style; band metadata ``class_ids`` / ``class_names`` (JSON).
- confidence: the winning class's softmax probability, Float32, nodata -1 (a value no probability takes;
  chosen over NaN because it compares equal to itself in every tool).
- clusters: the model's cluster assignment + 1 (CSSMamba's learnable clustering, to inspect boundaries),
  UInt16, 0 = nodata. Only models that give clusters can write it.
- probabilities: one Float32 band per class, described by the class name, nodata -1.

A pixel is nodata in every output where the input is invalid (nodata, NaN/Inf or masked in any band in use).

Memory: the input is read one tile window at a time and each tile's results are written and flushed
at once, so peak memory is set by the tile size and GDAL's block cache, not by the raster size.
Results go first to uncompressed temporary GeoTIFFs (a block shared by two tiles is then updated in
place; rewriting a compressed block would append it again and bloat the file), which are compressed
into a second temporary each. Every temporary lives in its output's folder; only when all outputs are
complete are they renamed (os.replace) to the requested paths. A cancel (PredictionCancelled) or any
error deletes the temporaries, so no half-written raster is ever left behind.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from osgeo import gdal

from ..bandmatch import open_model_input
from ..data.normalize import Stretch, apply_stretch
from ..data.raster import RasterInfo, explain_no_valid_pixel, read_window
from ..device import resolve_device
from ..models.base import HSIClassifier
from ..paths import check_distinct, describe_write_error, remove_stale_temporaries, temporary_file
from .tiling import DEFAULT_OVERLAP, DEFAULT_TILE, Tile, plan_tiles, predict_windows

gdal.UseExceptions()

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_TILE", "DEFAULT_OVERLAP", "CONFIDENCE_NODATA", "PROBABILITY_NODATA", "PredictionCancelled",
           "TilePrediction", "classify_tiles", "predict_raster"]

Progress = Callable[[float, str], None]
Cancelled = Callable[[], bool]
TilePrediction = Tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]  # keep, probabilities, clusters

CONFIDENCE_NODATA = -1.0
PROBABILITY_NODATA = -1.0
BLOCK = 256
_COMPRESSED = ["COMPRESS=DEFLATE", "TILED=YES", f"BLOCKXSIZE={BLOCK}", f"BLOCKYSIZE={BLOCK}", "BIGTIFF=IF_SAFER"]
_UNCOMPRESSED = ["TILED=YES", f"BLOCKXSIZE={BLOCK}", f"BLOCKYSIZE={BLOCK}", "BIGTIFF=IF_SAFER"]
_TILE_SHARE = 0.95  # of the progress bar; compressing the outputs takes the rest
# Most pixels of same-shaped tiles predicted in one forward (the 64 px tiles of label-window models:
# 16 at once); larger tiles go one by one. About 6 KB per pixel for CSSMamba's inference forward.
PREDICT_BATCH_PIXELS = 65_536


class PredictionCancelled(Exception):
    """Raised when the cancel check fires; no output file is left behind."""


@dataclass
class _Output:
    """One requested output raster and its two temporaries (uncompressed stage, compressed result)."""

    kind: str
    path: str
    gdal_type: int
    bands: int
    nodata: float
    raw: str = ""
    final: str = ""
    dataset: Optional[gdal.Dataset] = field(default=None, repr=False)
    failed: bool = False                                # a write to this output failed (disk full)

    def temporaries(self) -> List[str]:
        return [p for p in (self.raw, self.raw + ".aux.xml", self.final, self.final + ".aux.xml") if p]


_SUFFIXES = (".part.tif", ".tmp.tif")  # the uncompressed stage and the compressed result of an output


def _reserve(outputs: List[_Output], inputs: Dict[str, Any]) -> None:
    """Check every output path against the inputs and each other (``paths.check_distinct``), remove the
    temporaries an interrupted earlier run left beside it, and create this run's temporaries now, so that
    a path that cannot be written fails before any work (creating the files is the only reliable test)."""
    check_distinct(inputs, {f"{out.kind} raster": out.path for out in outputs})
    for out in outputs:
        remove_stale_temporaries(out.path, _SUFFIXES)
        for attr, suffix in zip(("raw", "final"), _SUFFIXES):
            try:
                setattr(out, attr, temporary_file(out.path, suffix))
            except OSError as error:
                raise ValueError(f"cannot write the {out.kind} raster {out.path}: {error.strerror}; "
                                 f"choose a folder you can write to") from None


def _create(out: _Output, info: RasterInfo) -> None:
    """The uncompressed stage of one output, on the input's grid, every pixel nodata to start with."""
    os.remove(out.raw)  # mkstemp's placeholder (mode 0600); GDAL creates the file afresh, with the usual mode
    ds = gdal.GetDriverByName("GTiff").Create(out.raw, info.cols, info.rows, out.bands, out.gdal_type, _UNCOMPRESSED)
    ds.SetGeoTransform(info.geotransform)
    if info.projection:
        ds.SetProjection(info.projection)
    for b in range(1, out.bands + 1):
        ds.GetRasterBand(b).SetNoDataValue(out.nodata)
    out.dataset = ds


def _describe_classes(band: gdal.Band, ids: List[int], names: List[str], colors: List[List[int]]) -> None:
    """Band description, JSON class metadata and the colour table of the class band."""
    band.SetDescription("class")
    band.SetMetadataItem("class_ids", json.dumps(ids))
    band.SetMetadataItem("class_names", json.dumps(names))
    table = gdal.ColorTable()
    for value in range(max(ids) + 1):
        table.SetColorEntry(value, (0, 0, 0, 0))
    for value, (r, g, b) in zip(ids, colors):
        table.SetColorEntry(value, (int(r), int(g), int(b), 255))
    band.SetRasterColorInterpretation(gdal.GCI_PaletteIndex)
    band.SetRasterColorTable(table)


def _name_classes(band: gdal.Band, ids: List[int], names: List[str], colors: List[List[int]]) -> None:
    """Category names (read by GDAL tools and the QGIS paletted renderer) and a thematic attribute table
    (QGIS >= 3.30, ArcGIS): two conventions for the same table, as software reads one or the other."""
    categories = [""] * (max(ids) + 1)
    for value, name in zip(ids, names):
        categories[value] = name
    band.SetCategoryNames(categories)
    rat = gdal.RasterAttributeTable()
    rat.SetTableType(gdal.GRTT_THEMATIC)
    for name, kind, usage in (("Value", gdal.GFT_Integer, gdal.GFU_MinMax), ("Class", gdal.GFT_String, gdal.GFU_Name),
                              ("Red", gdal.GFT_Integer, gdal.GFU_Red), ("Green", gdal.GFT_Integer, gdal.GFU_Green),
                              ("Blue", gdal.GFT_Integer, gdal.GFU_Blue)):
        rat.CreateColumn(name, kind, usage)
    for row, (value, name, (r, g, b)) in enumerate(zip(ids, names, colors)):
        rat.SetValueAsInt(row, 0, int(value))
        rat.SetValueAsString(row, 1, name)
        for column, level in enumerate((r, g, b), start=2):
            rat.SetValueAsInt(row, column, int(level))
    band.SetDefaultRAT(rat)


def _cleanup(outputs: List[_Output]) -> None:
    """Close and delete every temporary. Closing a dataset on a full disk fails again (GDAL writes the
    directory on close); that failure is already being reported, so GDAL is kept quiet here."""
    with _gdal_quiet():
        for out in outputs:
            out.dataset = None
    for out in outputs:
        for path in out.temporaries():
            if os.path.exists(path):
                os.remove(path)


def predict_raster(model: HSIClassifier, metadata: dict, raster_path: str, out_classes: str,
                   out_confidence: Optional[str] = None, out_clusters: Optional[str] = None,
                   out_probabilities: Optional[str] = None, tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP,
                   device: str = "auto", bands: Optional[Sequence[int]] = None,
                   aux: Optional[Sequence[str]] = None, inputs: Optional[Dict[str, Any]] = None,
                   progress: Optional[Progress] = None, cancelled: Optional[Cancelled] = None) -> Dict[str, str]:
    """Classify ``raster_path`` with ``model`` (and its model-file ``metadata``); returns {kind: path written}
    for the kinds 'classes', 'confidence', 'clusters', 'probabilities' that were asked for.

    The model's bands (``bandmatch.choose_bands``; ``bands`` names them) are read and stretched with the stored statistics, in
    overlapping tiles of ``tile`` px with ``overlap`` px of context, stitched by centre-crop (engine.inference.tiling).
    ``progress(fraction, text)`` is called after each tile; ``cancelled()`` is polled before each tile and
    before each compression and raises PredictionCancelled. Bad output paths, a raster whose bands do not
    match the model, a multi-modal model without its auxiliary rasters and a cluster output for a model
    without clusters raise ValueError. ``aux``: a multi-modal model's auxiliary rasters in the training
    order; such a model predicts from averaged crops (``multimodal.predict_multimodal_raster``), not tiles.
    """
    if metadata.get("modalities") and not aux:
        trained = [m["name"] for m in metadata["modalities"] if m["role"] == "aux"]
        raise ValueError(f"the model is multi-modal ({metadata['model']['name']}: the hyperspectral raster plus "
                         f"{len(trained)} auxiliary raster(s), trained with {', '.join(trained)}); give its auxiliary "
                         f"rasters in the training order (CLI: classify --aux FILE; toolbox: Auxiliary rasters)")
    if aux:
        if metadata.get("modalities") and out_clusters:
            raise ValueError(f"the {metadata['model']['name']} model gives no cluster map; leave out the cluster "
                             f"output")
        from ..multimodal import predict_multimodal_raster   # crops averaged, auxiliary rasters warped per block

        return predict_multimodal_raster(model, metadata, raster_path, list(aux), out_classes,
                                         out_confidence=out_confidence, out_probabilities=out_probabilities,
                                         device=device, bands=bands, inputs=inputs, progress=progress,
                                         cancelled=cancelled)
    if not out_classes:
        raise ValueError("no path for the class raster; give one (the other outputs are optional)")
    info = open_model_input(raster_path, metadata, bands)
    stretch = Stretch.from_dict(metadata["normalisation"])
    tiles = plan_tiles(info.rows, info.cols, tile, overlap)
    torch_device = resolve_device(device)
    log.info("classifying %s (%d x %d px, %d bands) on %s in %d tiles of up to %d x %d px with %d px overlap",
             raster_path, info.rows, info.cols, info.bands, torch_device, len(tiles),
             max(t.rows for t in tiles), max(t.cols for t in tiles), overlap)

    def predict_group(group: List[Tile]) -> List[TilePrediction]:
        # One read and one stretch for the strip the group's tiles share (group_tiles keeps a group in one
        # row of tiles): a GDAL read per band and tile costs more than the model on 64 px tiles.
        row0, col0 = group[0].row0, min(t.col0 for t in group)
        strip, strip_valid = read_window(info, row0, col0, group[0].rows, max(t.col0 + t.cols for t in group) - col0)
        image = apply_stretch(strip, strip_valid, stretch)
        del strip                                       # the model's activations need the memory more
        windows = [(slice(None), slice(t.col0 - col0, t.col0 - col0 + t.cols)) for t in group]
        results: List[TilePrediction] = [(strip_valid[w][t.crop_in_window], None, None)
                                         for t, w in zip(group, windows)]
        todo = [k for k, (keep, _, _) in enumerate(results) if keep.any()]
        if not todo:
            return results
        probabilities, clusters = predict_windows(model, np.stack([image[(slice(None),) + windows[k]] for k in todo]),
                                                  np.stack([strip_valid[windows[k]] for k in todo]), torch_device)
        for j, k in enumerate(todo):
            t = group[k]
            results[k] = (results[k][0], probabilities[j][(slice(None),) + t.crop_in_window],
                          None if clusters is None else clusters[j])
        return results

    was_training = model.training
    model.to(torch_device).eval()
    try:
        with torch.inference_mode():
            return classify_tiles(metadata, info, group_tiles(tiles, PREDICT_BATCH_PIXELS), predict_group,
                                  out_classes, out_confidence=out_confidence, out_clusters=out_clusters,
                                  out_probabilities=out_probabilities, inputs=inputs, progress=progress,
                                  cancelled=cancelled)
    finally:
        model.train(was_training)


def group_tiles(tiles: List[Tile], max_pixels: int) -> List[List[Tile]]:
    """Consecutive tiles of one window shape and one row of tiles in groups of at most ``max_pixels``
    pixels (at least one tile each), for one read and one forward per group."""
    groups: List[List[Tile]] = []
    for t in tiles:
        last = groups[-1] if groups else None
        if last and (last[0].rows, last[0].cols, last[0].row0) == (t.rows, t.cols, t.row0) \
                and (len(last) + 1) * t.rows * t.cols <= max_pixels:
            last.append(t)
        else:
            groups.append([t])
    return groups


def classify_tiles(metadata: dict, info: RasterInfo, groups: List[List[Tile]],
                   predict_group: Callable[[List[Tile]], List[TilePrediction]],
                   out_classes: str, out_confidence: Optional[str] = None, out_clusters: Optional[str] = None,
                   out_probabilities: Optional[str] = None, inputs: Optional[Dict[str, Any]] = None,
                   progress: Optional[Progress] = None, cancelled: Optional[Cancelled] = None) -> Dict[str, str]:
    """Write the requested outputs on ``info``'s grid, tile by tile: the writing half of classification,
    shared by every model family (``predict_group`` is the model half). Returns {kind: path written}.

    ``inputs``: {what: path(s)} of the files the run reads besides the raster (the model file, auxiliary
    rasters); no output may be one of them. A raster with no valid pixel at all (often one band that is
    entirely nodata) is refused after the tiles, naming the band, instead of writing an all-nodata map. A
    write that fails (a full disk) is a ValueError that names the output and leaves nothing behind.

    The crops of the tiles in ``groups`` must partition the raster. ``predict_group(tiles)`` gives one
    (keep, probabilities, clusters) per tile, for the tile's crop: keep bool (crop_rows, crop_cols), probabilities float32 (Ncls, crop_rows,
    crop_cols) or None when no pixel is kept, clusters int64 over the tile's window or None. Paths are
    checked and reserved before the first tile; on cancel or error every temporary is deleted.
    """
    ids = [int(v) for v in metadata["classes"]["ids"]]
    names = [str(v) for v in metadata["classes"]["names"]]
    colors = [list(c) for c in metadata["classes"]["colors"]]
    if max(ids) > 65535 or min(ids) < 1:
        raise ValueError(f"class ids must lie in 1..65535 (0 marks nodata), the model has {min(ids)}..{max(ids)}")
    class_type = gdal.GDT_Byte if max(ids) <= 255 else gdal.GDT_UInt16
    outputs = [_Output(kind, path, gdal_type, bands, nodata) for kind, path, gdal_type, bands, nodata in (
        ("classes", out_classes, class_type, 1, 0),
        ("confidence", out_confidence, gdal.GDT_Float32, 1, CONFIDENCE_NODATA),
        ("clusters", out_clusters, gdal.GDT_UInt16, 1, 0),
        ("probabilities", out_probabilities, gdal.GDT_Float32, len(ids), PROBABILITY_NODATA),
    ) if path]
    try:
        _reserve(outputs, dict(inputs or {}, raster=info.path))
        by_kind = _open_outputs(outputs, info, ids, names, colors)
        lookup = np.asarray(ids, dtype=np.uint16)
        any_valid = False
        total, done = sum(len(group) for group in groups), 0
        for group in groups:
            if cancelled is not None and cancelled():
                raise PredictionCancelled(f"classification of {info.path} cancelled; no output written")
            for t, (keep, probabilities, clusters) in zip(group, predict_group(group)):
                any_valid = any_valid or bool(keep.any())
                if "clusters" in by_kind and probabilities is not None and clusters is None:
                    raise ValueError(f"the {metadata['model']['name']} model gives no cluster map; "
                                     f"leave out the cluster output")
                _write_tile(by_kind, t, keep, probabilities, clusters, lookup)
            done += len(group)
            if progress is not None:
                progress(_TILE_SHARE * done / total, f"classified tile {done} of {total}")
        if not any_valid:
            raise ValueError(explain_no_valid_pixel(info, "the model needs every one of its bands"))
        return _finish(outputs, ids, names, colors, progress, cancelled, info.path)
    except (RuntimeError, OSError) as error:            # GDAL's write errors are RuntimeErrors
        _cleanup(outputs)
        failed = next((out for out in outputs if out.failed), None)
        if failed is None:                              # not a write: the model's or the reader's error
            raise
        _release(error)
        raise ValueError(describe_write_error(error, failed.path, f"{failed.kind} raster") +
                         "; no output was written") from None
    except BaseException:
        _cleanup(outputs)
        raise


def _open_outputs(outputs: List[_Output], info: RasterInfo, ids: List[int], names: List[str],
                  colors: List[List[int]]) -> Dict[str, _Output]:
    """Create every output's uncompressed stage and describe its bands; {kind: output}."""
    by_kind = {out.kind: out for out in outputs}
    for out in outputs:
        with _writing(out):
            _create(out, info)
    _describe_classes(by_kind["classes"].dataset.GetRasterBand(1), ids, names, colors)
    if "confidence" in by_kind:
        by_kind["confidence"].dataset.GetRasterBand(1).SetDescription("confidence (max softmax probability)")
    if "clusters" in by_kind:
        by_kind["clusters"].dataset.GetRasterBand(1).SetDescription("cluster id + 1")
    if "probabilities" in by_kind:
        for k, (class_id, name) in enumerate(zip(ids, names)):
            band = by_kind["probabilities"].dataset.GetRasterBand(k + 1)
            band.SetDescription(name)
            band.SetMetadataItem("class_id", str(class_id))
    return by_kind


def _write_tile(by_kind: Dict[str, _Output], t: Tile, keep: np.ndarray, probabilities: Optional[np.ndarray],
                clusters: Optional[np.ndarray], lookup: np.ndarray) -> None:
    """Write one tile's crop to every output and flush it, so no block stays in memory across tiles."""
    rows, cols = keep.shape
    if probabilities is None:                           # no valid pixel in the crop: nodata everywhere
        probabilities = np.zeros((len(lookup), rows, cols), np.float32)
    winner = probabilities.argmax(0)
    layers = {
        "classes": np.where(keep, lookup[winner], 0),
        "confidence": np.where(keep, probabilities.max(0), np.float32(CONFIDENCE_NODATA)),
    }
    if "clusters" in by_kind and clusters is not None:
        found = clusters[t.crop_in_window]
        if found.max() >= 65535:
            raise ValueError(f"cluster id {int(found.max())} does not fit the UInt16 cluster raster")
        layers["clusters"] = np.where(keep, found + 1, 0)
    elif "clusters" in by_kind:
        layers["clusters"] = np.zeros((rows, cols), np.uint16)
    for kind, out in by_kind.items():
        with _writing(out):
            if kind == "probabilities":
                stack = np.where(keep, probabilities, np.float32(PROBABILITY_NODATA))
                for k in range(out.bands):
                    out.dataset.GetRasterBand(k + 1).WriteArray(stack[k], t.crop_col0, t.crop_row0)
            else:
                out.dataset.GetRasterBand(1).WriteArray(layers[kind], t.crop_col0, t.crop_row0)
            out.dataset.FlushCache()


def _release(error: BaseException) -> None:
    """Drop the frames of a write error's traceback now, quietly: they may hold the last reference to a
    dataset on the full disk, whose close would otherwise print a second GDAL error much later."""
    with _gdal_quiet():
        error.with_traceback(None)


@contextmanager
def _gdal_quiet() -> Iterator[None]:
    """No message from GDAL inside, and no "Exception ignored" report of a dataset whose close fails (a
    destructor cannot raise to anyone, so Python hands the error to ``sys.unraisablehook``). The hook is
    process-wide; it is swapped only for the few lines that close datasets already known to have failed."""
    previous = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        yield
    finally:
        gdal.PopErrorHandler()
        sys.unraisablehook = previous


@contextmanager
def _writing(out: _Output) -> Iterator[None]:
    """Mark ``out`` as the output that failed when a write inside raises (GDAL: RuntimeError)."""
    try:
        yield
    except (RuntimeError, OSError):
        out.failed = True
        raise


def _finish(outputs: List[_Output], ids: List[int], names: List[str], colors: List[List[int]],
            progress: Optional[Progress], cancelled: Optional[Cancelled], raster_path: str) -> Dict[str, str]:
    """Compress every output into its final temporary, then rename all of them into place."""
    for out in outputs:
        out.dataset = None                              # closes the uncompressed stage
    for i, out in enumerate(outputs):
        if cancelled is not None and cancelled():
            raise PredictionCancelled(f"classification of {raster_path} cancelled; no output written")
        predictor = "PREDICTOR=3" if out.gdal_type == gdal.GDT_Float32 else "PREDICTOR=2"
        os.remove(out.final)                            # the placeholder, as in _create
        with _writing(out):
            ds = gdal.Translate(out.final, out.raw, format="GTiff", creationOptions=_COMPRESSED + [predictor])
            if ds is None:
                raise RuntimeError(gdal.GetLastErrorMsg() or "GDAL could not write the compressed copy")
            if out.kind == "classes":
                _name_classes(ds.GetRasterBand(1), ids, names, colors)
            ds.FlushCache()
            ds = None
        os.remove(out.raw)
        if progress is not None:
            progress(_TILE_SHARE + (1 - _TILE_SHARE) * (i + 1) / len(outputs), f"wrote {out.kind} raster")
    for out in outputs:
        with _writing(out):
            os.replace(out.final, out.path)
            side, target = out.final + ".aux.xml", out.path + ".aux.xml"
            if os.path.exists(side):
                os.replace(side, target)
            elif os.path.exists(target):
                os.remove(target)                       # a stale sidecar would describe the old file
        log.info("wrote the %s raster %s", out.kind, out.path)
    return {out.kind: out.path for out in outputs}
