"""Training and reference labels on a raster's pixel grid: label rasters and vector ROIs.

Both sources give the same thing: ``ids`` (H, W) int64 class ids with 0 = unlabelled, on exactly the
grid of the image (a RasterInfo), and a ClassTable of the classes that occur, sorted by id. Class
ids are kept as the user wrote them (Salinas-A uses 1 and 10-14); ``class_indices`` maps them to
the 0..n-1 indices a model predicts.

For training, pass the image's valid mask as ``valid``: pixels under nodata then become unlabelled
and classes left with fewer than 2 usable pixels are dropped (see ``drop_unusable_classes``).
"""

import colorsys
import logging
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
from osgeo import gdal, ogr, osr

from .raster import RasterInfo, open_dataset, read_band, spatial_reference, srs_name

gdal.UseExceptions()
ogr.UseExceptions()
osr.UseExceptions()

log = logging.getLogger(__name__)

Color = Tuple[int, int, int]

# Kelly's colours of maximum contrast (white and black left out); ids beyond them get golden-angle hues.
_PALETTE: Tuple[Color, ...] = (
    (243, 195, 0), (135, 86, 146), (243, 132, 0), (161, 202, 241), (190, 0, 50), (194, 178, 128),
    (132, 132, 130), (0, 136, 86), (230, 143, 172), (0, 103, 165), (249, 147, 121), (96, 78, 151),
    (246, 166, 0), (179, 68, 108), (220, 211, 0), (136, 45, 23), (141, 182, 0), (101, 69, 34),
    (226, 88, 34), (43, 61, 38),
)
MIN_USABLE_PIXELS = 2  # one pixel for training and one for validation


@dataclass
class ClassTable:
    """The classes of a label source, sorted by id; names and colours (r, g, b) at the same positions."""

    ids: List[int]
    names: List[str]
    colors: List[Color]


def default_color(class_id: int) -> Color:
    """A colour per class id that stays the same across label sources, distinct for neighbouring ids."""
    if 1 <= class_id <= len(_PALETTE):
        return _PALETTE[class_id - 1]
    hue = (class_id * 0.6180339887498949) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.9 if class_id % 2 else 0.7)
    return int(r * 255), int(g * 255), int(b * 255)


def class_indices(ids: np.ndarray, table: ClassTable) -> np.ndarray:
    """(H, W) int64: the position of each pixel's class id in ``table.ids`` (0..n-1), -1 elsewhere."""
    ids = np.asarray(ids)
    order = np.argsort(table.ids)
    known = np.asarray(table.ids, dtype=np.int64)[order]
    if known.size == 0:
        return np.full(ids.shape, -1, np.int64)
    pos = np.clip(np.searchsorted(known, ids), 0, known.size - 1)
    return np.where(known[pos] == ids, order[pos], -1).astype(np.int64)


def drop_unusable_classes(ids: np.ndarray, table: ClassTable, valid: np.ndarray) -> Tuple[np.ndarray, ClassTable]:
    """Training labels restricted to valid pixels; classes with fewer than 2 usable pixels dropped.

    Design choice (issue 3, "Bad input"): a class with 0 usable pixels (all its labels under nodata)
    or exactly 1 (cannot give both a training and a validation pixel) is excluded from the table
    with a warning instead of stopping the run, so one bad ROI does not block the other classes;
    its pixels become unlabelled. Fewer than 2 classes left -> ValueError, since nothing can be
    learned. Returns (ids (H, W) int64, 0 under invalid pixels and for classes not kept, their table).
    """
    if valid.shape != ids.shape:
        raise ValueError(f"valid mask has shape {valid.shape} but the labels have {ids.shape}")
    under_nodata = int(((ids > 0) & ~valid).sum())
    if under_nodata:
        log.info("%d labelled pixels lie under nodata/masked pixels and are not used", under_nodata)
    index = np.where(valid, class_indices(ids, table), -1)
    ids = np.where(index >= 0, ids, 0).astype(np.int64)
    counts = np.bincount(index.ravel() + 1, minlength=len(table.ids) + 1)[1:]
    keep = [k for k, n in enumerate(counts) if n >= MIN_USABLE_PIXELS]
    for k, n in enumerate(counts):
        if n < MIN_USABLE_PIXELS:
            log.warning("class %d (%s) has %d usable pixel%s after nodata masking (at least %d are needed, one "
                        "for training and one for validation); it is left out", table.ids[k], table.names[k],
                        n, "" if n == 1 else "s", MIN_USABLE_PIXELS)
            ids[ids == table.ids[k]] = 0
    if len(keep) < 2:
        raise ValueError(f"only {len(keep)} class(es) have at least {MIN_USABLE_PIXELS} usable pixels "
                         f"(counts per class id: {dict(zip(table.ids, counts.tolist()))}); a classifier needs "
                         f"at least 2: label more pixels on valid (not nodata) parts of the raster")
    return ids, ClassTable([table.ids[k] for k in keep], [table.names[k] for k in keep],
                           [table.colors[k] for k in keep])


def _extent(gt: Tuple[float, ...], rows: int, cols: int) -> Tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of a grid from its four corners."""
    xs, ys = zip(*((gt[0] + c * gt[1] + r * gt[2], gt[3] + c * gt[4] + r * gt[5])
                   for r in (0, rows) for c in (0, cols)))
    return min(xs), min(ys), max(xs), max(ys)


def _grid_text(gt: Tuple[float, ...], rows: int, cols: int, wkt: str) -> str:
    srs = spatial_reference(wkt)
    return (f"{cols} x {rows} px, origin ({gt[0]:g}, {gt[3]:g}), pixel size ({gt[1]:g}, {gt[5]:g}), "
            f"CRS {srs_name(srs) if srs else 'none'}")


def _check_same_grid(path: str, ds: gdal.Dataset, like: RasterInfo) -> None:
    gt, wkt = tuple(ds.GetGeoTransform()), ds.GetProjection() or ""
    tolerance = 1e-6 * max(abs(like.geotransform[1]), abs(like.geotransform[5]))
    same = ((ds.RasterYSize, ds.RasterXSize) == (like.rows, like.cols)
            and all(abs(a - b) <= tolerance for a, b in zip(gt, like.geotransform)))
    mine, theirs = spatial_reference(wkt), spatial_reference(like.projection)
    if same and mine is not None and theirs is not None and not mine.IsSame(theirs):
        same = False
    if same:
        return
    xmin, ymin, xmax, ymax = _extent(like.geotransform, like.rows, like.cols)
    target = f" -t_srs {srs_name(theirs)}" if theirs is not None else ""
    raise ValueError(
        f"label raster {path} is not on the grid of the raster {like.path}:\n"
        f"  labels: {_grid_text(gt, ds.RasterYSize, ds.RasterXSize, wkt)}\n"
        f"  raster: {_grid_text(like.geotransform, like.rows, like.cols, like.projection)}\n"
        f"Resample the labels onto the raster grid (nearest neighbour keeps class ids), e.g.\n"
        f"  gdalwarp -te {xmin:g} {ymin:g} {xmax:g} {ymax:g} -tr {abs(like.geotransform[1]):g} "
        f"{abs(like.geotransform[5]):g}{target} -r near {path} labels_on_grid.tif")


def _metadata_names(ds: gdal.Dataset, band: gdal.Band) -> Dict[int, str]:
    """Class names by id from ``class_names`` (+ ``class_ids``) metadata, else GDAL category names."""
    names, ids = ds.GetMetadataItem("class_names"), ds.GetMetadataItem("class_ids")
    if names:
        names = [n.strip() for n in names.split(",")]
        try:
            keys = [int(i) for i in ids.split(",")] if ids else list(range(1, len(names) + 1))
        except ValueError:
            keys = []
        if len(keys) == len(names):
            return dict(zip(keys, names))
        log.warning("%s: class_ids %r and class_names %r do not pair up; default names used",
                    ds.GetDescription(), ids, ",".join(names))
        return {}
    categories = band.GetCategoryNames() or []
    return {i: name for i, name in enumerate(categories) if i > 0 and name}


def read_label_raster(path: str, like: RasterInfo,
                      valid: Optional[np.ndarray] = None) -> Tuple[np.ndarray, ClassTable]:
    """A single-band label raster (0 = unlabelled; its nodata value and NaN count as unlabelled) on
    exactly ``like``'s grid -> (ids (H, W) int64, ClassTable of the ids present).

    Names come from ``class_ids``/``class_names`` metadata or GDAL category names, colours from the
    colour table; otherwise "class <id>" and default_color. A different grid -> ValueError that shows
    both grids and the gdalwarp command that fixes it. With ``valid`` see drop_unusable_classes.
    """
    ds = open_dataset(path, "label raster")
    if ds.RasterCount != 1:
        raise ValueError(f"label raster {path} has {ds.RasterCount} bands; it must have one band of class ids")
    _check_same_grid(path, ds, like)
    band = ds.GetRasterBand(1)
    raw = read_band(ds, 1, 0, 0, ds.RasterXSize, ds.RasterYSize, what="label raster")
    unlabelled = ~np.isfinite(raw) if raw.dtype.kind == "f" else np.zeros(raw.shape, bool)
    if band.GetNoDataValue() is not None:
        unlabelled |= raw == band.GetNoDataValue()
    values = np.where(unlabelled, 0, raw)
    if raw.dtype.kind == "f" and np.any(values != np.round(values)):
        example = values[values != np.round(values)][0]
        raise ValueError(f"label raster {path} holds non-integer values (e.g. {example}); it must hold class ids")
    ids = values.astype(np.int64)
    if (ids < 0).any():
        raise ValueError(f"label raster {path} holds negative values (e.g. {ids[ids < 0][0]}); class ids must be "
                         f">= 1 with 0 = unlabelled: set its nodata value or recode them to 0")
    present = [int(i) for i in np.unique(ids) if i > 0]
    if not present:
        raise ValueError(f"label raster {path} has no labelled pixel (every pixel is 0 or nodata)")
    names = _metadata_names(ds, band)
    missing = sorted(set(names) - set(present))
    if missing:
        log.info("%s: classes %s are named in the metadata but have no pixel here", path,
                 ", ".join(f"{i} ({names[i]})" for i in missing))
    colors = band.GetColorTable()
    table = ClassTable(present, [names.get(i, f"class {i}") for i in present],
                       [tuple(colors.GetColorEntry(i)[:3]) if colors is not None and i < colors.GetCount()
                        else default_color(i) for i in present])
    if valid is not None:
        ids, table = drop_unusable_classes(ids, table, valid)
    return ids, table


def _class_id(value, field: str, fid: int) -> int:
    """A feature's class id from an integer, integral real or digit-string field value."""
    if isinstance(value, str):
        text = value.strip()
        if not text.lstrip("+-").isdigit():
            raise ValueError(f"feature {fid}: field {field!r} holds {value!r}, which is not an integer class id; "
                             f"choose the field that holds class ids (integers >= 1)")
        return int(text)
    if isinstance(value, float) and value != int(value):
        raise ValueError(f"feature {fid}: field {field!r} holds {value}, which is not an integer class id")
    return int(value)


def _open_layer(path: str, layer: Optional[str]) -> Tuple[ogr.DataSource, ogr.Layer]:
    """The vector datasource and its layer; the caller must keep the datasource referenced while
    using the layer (OGR frees the layer with its datasource and GDAL then crashes)."""
    try:
        source, problem = ogr.Open(path), "OGR finds no vector layer in it"
    except RuntimeError as error:
        source, problem = None, str(error)
    if source is None or source.GetLayerCount() == 0:
        if not os.path.exists(path):
            raise ValueError(f"ROI file not found: {path}")
        raise ValueError(f"cannot read ROI file {path}: {problem}")
    names = [source.GetLayerByIndex(i).GetName() for i in range(source.GetLayerCount())]
    if layer is None:
        if len(names) > 1:
            log.info("%s has layers %s; using the first, %r", path, ", ".join(names), names[0])
        return source, source.GetLayerByIndex(0)
    if layer not in names:
        raise ValueError(f"ROI file {path} has no layer {layer!r}; its layers: {', '.join(names)}")
    return source, source.GetLayerByName(layer)


def _reprojection(path: str, layer_srs: Optional[osr.SpatialReference],
                  raster_srs: Optional[osr.SpatialReference]) -> Optional[osr.CoordinateTransformation]:
    """The ROI -> raster coordinate transformation (logged), or None when coordinates are used as they are."""
    if layer_srs is not None and (layer_srs.GetName() or "").startswith("Undefined "):
        layer_srs = None  # GeoPackage's stand-ins for "no CRS": "Undefined geographic/cartesian SRS"
    if layer_srs is not None and raster_srs is not None:
        layer_srs = layer_srs.Clone()
        layer_srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        if layer_srs.IsSame(raster_srs):
            return None
        log.info("ROIs of %s reprojected from %s to the raster's %s", path, srs_name(layer_srs),
                 srs_name(raster_srs))
        return osr.CoordinateTransformation(layer_srs, raster_srs)
    if layer_srs is not None or raster_srs is not None:
        log.warning("%s has %s and the raster %s; ROI coordinates are used as they are", path,
                    "a CRS" if layer_srs is not None else "no CRS", "has none" if raster_srs is None else "has one")
    return None


def rasterize_rois(path: str, like: RasterInfo, class_field: str, name_field: Optional[str] = None,
                   layer: Optional[str] = None, valid: Optional[np.ndarray] = None) -> Tuple[np.ndarray, ClassTable]:
    """Burn ROI polygons and points onto ``like``'s grid -> (ids (H, W) int64, 0 = unlabelled, ClassTable).

    Polygons label the pixels whose centres they contain (GDAL's default rule, so polygons traced on
    pixel edges reproduce their label raster exactly); a point labels the pixel it falls in. Where
    ROIs overlap, the feature drawn last wins (a warning counts pixels claimed by different
    classes). ROIs in another CRS are reprojected to the raster's (logged); when either side has no
    CRS, coordinates are taken as they are, which makes ROIs drawn on a non-georeferenced scene's
    pixel grid (x = column, y = -row) work. ``class_field`` holds integer ids >= 1 (integer field or
    digit strings); ``name_field`` optional class names. Classes whose ROIs cover no pixel centre are
    left out with a warning. With ``valid`` see drop_unusable_classes.
    """
    source, roi_layer = _open_layer(path, layer)
    definition = roi_layer.GetLayerDefn()
    fields = [definition.GetFieldDefn(i).GetName() for i in range(definition.GetFieldCount())]
    for field in (class_field, name_field):
        if field is not None and field not in fields:
            raise ValueError(f"ROI layer {roi_layer.GetName()!r} of {path} has no field {field!r}; "
                             f"its fields: {', '.join(fields) or '(none)'}")

    raster_srs = spatial_reference(like.projection)
    transform = _reprojection(path, roi_layer.GetSpatialRef(), raster_srs)
    xmin, ymin, xmax, ymax = _extent(like.geotransform, like.rows, like.cols)
    frame = ogr.CreateGeometryFromWkt(
        f"POLYGON(({xmin} {ymin},{xmax} {ymin},{xmax} {ymax},{xmin} {ymax},{xmin} {ymin}))")
    memory = ogr.GetDriverByName("Memory").CreateDataSource("")
    burn_layer = memory.CreateLayer("rois", raster_srs, ogr.wkbUnknown)
    burn_layer.CreateField(ogr.FieldDefn("class", ogr.OFTInteger))
    names: Dict[int, str] = {}
    wanted, bad_ids, no_id, no_geometry, outside, total = set(), [], 0, 0, 0, 0
    envelope = [np.inf, -np.inf, np.inf, -np.inf]  # of all ROIs in the raster's coordinates, for the message
    for feature in roi_layer:
        total += 1
        value = feature.GetField(class_field)
        if value is None or (isinstance(value, str) and not value.strip()):
            no_id += 1
            continue
        class_id = _class_id(value, class_field, feature.GetFID())
        if class_id <= 0:
            bad_ids.append((feature.GetFID(), class_id))
            continue
        geometry = feature.GetGeometryRef()
        if geometry is None or geometry.IsEmpty():
            no_geometry += 1
            continue
        wanted.add(class_id)
        if name_field is not None and class_id not in names and feature.GetField(name_field):
            names[class_id] = str(feature.GetField(name_field)).strip()
        geometry = geometry.Clone()
        if transform is not None:
            try:
                geometry.Transform(transform)
            except RuntimeError as error:
                raise ValueError(f"ROI feature {feature.GetFID()} of {path} cannot be reprojected to the raster's "
                                 f"CRS {srs_name(raster_srs)}: {error}") from None
        envelope = [f(a, b) for f, a, b in zip((min, max, min, max), envelope, geometry.GetEnvelope())]
        if not geometry.Intersects(frame):
            outside += 1
            continue
        burn = ogr.Feature(burn_layer.GetLayerDefn())
        burn.SetField("class", class_id)
        burn.SetGeometry(geometry)
        burn_layer.CreateFeature(burn)
    if total == 0:
        raise ValueError(f"the ROI layer {roi_layer.GetName()!r} of {path} has no features; draw training areas "
                         f"(polygons or points with a class id in {class_field!r}) and save them first")
    if bad_ids:
        raise ValueError(f"ROI field {class_field!r} of {path} holds class ids <= 0 ({len(bad_ids)} features, e.g. "
                         f"feature {bad_ids[0][0]}: {bad_ids[0][1]}); class ids must be >= 1 (0 means unlabelled)")
    for count, what in ((no_id, f"have no value in {class_field!r}"), (no_geometry, "have no geometry"),
                        (outside, "lie outside the raster extent")):
        if count:
            log.warning("%d of %d ROI features of %s %s and are ignored", count, total, path, what)
    if burn_layer.GetFeatureCount() == 0 and not np.isfinite(envelope[0]):
        raise ValueError(f"none of the {total} features of the ROI layer {roi_layer.GetName()!r} of {path} has both a "
                         f"class id in {class_field!r} and a geometry ({no_id} without a class id, {no_geometry} "
                         f"without a geometry); fill in the class ids of the drawn ROIs and save them")
    if burn_layer.GetFeatureCount() == 0:
        raise ValueError(
            f"ROI layer has no features inside the raster extent; check that both use the same area and CRS "
            f"(layer {roi_layer.GetName()!r} of {path}: x {envelope[0]:g}..{envelope[1]:g}, y {envelope[2]:g}.."
            f"{envelope[3]:g}; raster {like.path}: x {xmin:g}..{xmax:g}, y {ymin:g}..{ymax:g})")

    ids = _burn(burn_layer, like)
    present = [i for i in sorted(wanted) if (ids == i).any()]
    for i in sorted(set(wanted) - set(present)):
        log.warning("class %d (%s): its ROIs cover no pixel centre of the raster; left out (draw them larger "
                    "than a pixel or use points)", i, names.get(i, f"class {i}"))
    if not present:
        raise ValueError(f"the ROIs of {path} overlap the raster but cover no pixel centre; draw them larger than "
                         f"a pixel or use points")
    table = ClassTable(present, [names.get(i, f"class {i}") for i in present], [default_color(i) for i in present])
    log.info("ROIs of %s: %s", path, ", ".join(f"{i} ({n}): {int((ids == i).sum())} px"
                                                for i, n in zip(table.ids, table.names)))
    if valid is not None:
        ids, table = drop_unusable_classes(ids, table, valid)
    return ids, table


def _burn(burn_layer: ogr.Layer, like: RasterInfo) -> np.ndarray:
    """Rasterize the ``class`` attribute onto an in-memory copy of the grid -> (H, W) int64.

    Band 1 gets the class of the last feature; bands 2 and 3 add up features and their ids per
    pixel, which shows where ROIs of different classes overlap (sum != count * id).
    """
    grid = gdal.GetDriverByName("MEM").Create("", like.cols, like.rows, 3, gdal.GDT_Int32)
    grid.SetGeoTransform(like.geotransform)
    if like.projection:
        grid.SetProjection(like.projection)
    gdal.RasterizeLayer(grid, [1], burn_layer, options=["ATTRIBUTE=class"])
    gdal.RasterizeLayer(grid, [2], burn_layer, burn_values=[1], options=["MERGE_ALG=ADD"])
    gdal.RasterizeLayer(grid, [3], burn_layer, options=["ATTRIBUTE=class", "MERGE_ALG=ADD"])
    ids, count, total = (grid.GetRasterBand(b).ReadAsArray().astype(np.int64) for b in (1, 2, 3))
    conflicts = int((total != count * ids).sum())
    if conflicts:
        log.warning("%d pixels are covered by ROIs of different classes; the feature drawn last sets their class",
                    conflicts)
    return ids


def read_reference(info: RasterInfo, labels: Optional[str], rois: Optional[str], class_field: Optional[str],
                    name_field: Optional[str], what: str = "training",
                    valid: Optional[np.ndarray] = None) -> Tuple[np.ndarray, ClassTable]:
    """Class ids (H, W) int64 (0 = unlabelled) and the ClassTable, from a label raster or ROI vector.

    With ``valid``, pixels under nodata are unlabelled and classes left with < 2 pixels are dropped
    (labels.drop_unusable_classes).
    """
    if bool(labels) == bool(rois):
        raise ValueError(f"give the {what} classes either as a label raster or as ROIs with a class field, not both "
                         "and not neither")
    if labels:
        return read_label_raster(labels, info, valid=valid)
    if not class_field:
        raise ValueError(f"ROIs {rois} need a class field (the attribute holding the class id), e.g. class_id")
    return rasterize_rois(rois, info, class_field, name_field, valid=valid)
