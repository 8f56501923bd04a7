"""Reading hyperspectral rasters through GDAL: band choice, validity, physical values, spectral metadata.

Every reader returns ``data`` float32 (Nb, rows, cols) with each band's scale/offset applied and
``valid`` bool (rows, cols). A pixel is invalid when any band in use is nodata, NaN or Inf there, or
when a GDAL mask band (per-dataset mask, alpha band, per-band mask) says so; invalid pixels hold 0 in
every band, so nothing downstream ever sees a nodata value or a NaN.

Inside this module, per-band invalid values are carried as NaN until the last step: that lets
``load_training_raster`` find bands that are invalid everywhere (and drop them) without a second
(Nb, H, W) mask in memory.
"""

import logging
import math
import os
from dataclasses import dataclass, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from osgeo import gdal, osr

from ..memory import available_memory_bytes, gigabytes

gdal.UseExceptions()

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
Cancelled = Callable[[], bool]

BLOCK_BYTES = 64 * 1024 * 1024  # float32 bytes per block read by read_raster
# Valid pixels the 2-98 % stretch is fitted on, a lattice spread over the raster (``read_sample``); the
# shared scenes hold fewer, so their sample is every pixel. Measured against the fit on every pixel of the
# 1000 x 1000 sample: bench/results/scale_stretch.md.
STRETCH_SAMPLE = 65_536
_UNIT_TO_NM = {
    "nanometers": 1.0, "nanometer": 1.0, "nm": 1.0,
    "micrometers": 1e3, "micrometer": 1e3, "microns": 1e3, "micron": 1e3, "um": 1e3, "µm": 1e3,
    "millimeters": 1e6, "millimeter": 1e6, "mm": 1e6,
}


class ReadCancelled(RuntimeError):
    """Raised by read_raster / load_training_raster when the cancel check fires between blocks."""


@dataclass(frozen=True)
class RasterInfo:
    """What the engine needs to know about a raster, for the bands in use (in this order)."""

    path: str
    rows: int
    cols: int
    band_indices: List[int]            # 1-based file bands in use (bad/empty bands dropped)
    band_names: List[str]
    wavelengths: Optional[List[float]]  # nm, for the bands in use; None when the file has none
    nodata: List[Optional[float]]      # per band in use, in file values (before scale/offset)
    geotransform: Tuple[float, ...]
    projection: str                    # WKT, '' when none
    dtype: str = ""                    # GDAL data type name of the file bands, e.g. 'Int16'
    file_bands: int = 0                # bands in the file (all of them, not only those in use); 0 = unknown

    @property
    def bands(self) -> int:
        return len(self.band_indices)


def spatial_reference(wkt: str) -> Optional[osr.SpatialReference]:
    """The CRS of a WKT string in x = east/longitude order, or None for no CRS."""
    if not wkt:
        return None
    srs = osr.SpatialReference()
    srs.ImportFromWkt(wkt)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def srs_name(srs: Optional[osr.SpatialReference]) -> str:
    """'EPSG:32633', else the CRS's name, for messages and the model file; 'no CRS' for None."""
    if srs is None:
        return "no CRS"
    code = srs.GetAuthorityCode(None)
    return f"{srs.GetAuthorityName(None)}:{code}" if code else (srs.GetName() or "custom CRS")


def open_dataset(path: str, what: str = "raster") -> gdal.Dataset:
    """gdal.Open with errors a user can act on: ValueError naming the path (GDAL paths such as
    /vsizip/... work, so existence is only checked to explain a failure)."""
    try:
        ds = gdal.Open(path)
    except RuntimeError as error:
        if not os.path.exists(path):
            raise ValueError(f"{what} file not found: {path}") from None
        raise ValueError(f"cannot read {what} {path}: {error}") from None
    if ds is None or ds.RasterCount == 0:
        raise ValueError(f"cannot read {what} {path}: GDAL finds no raster band in it")
    return ds


def read_band(ds: gdal.Dataset, band: int, col0: int, row0: int, cols: int, rows: int, what: str = "raster",
              mask: bool = False) -> np.ndarray:
    """``ReadAsArray`` of one band's window (its mask band with ``mask``), with a GDAL read failure (a
    truncated or damaged file: ``IReadBlock failed``, ``TIFFReadEncodedTile``) turned into a ValueError
    that names the file, the band and the window, and says what to do."""
    source = ds.GetRasterBand(band)
    if mask:
        source = source.GetMaskBand()
    try:
        values = source.ReadAsArray(col0, row0, cols, rows)
    except RuntimeError as error:
        values, detail = None, " ".join(str(error).split())
    else:
        detail = gdal.GetLastErrorMsg() if values is None else ""
    if values is None:
        raise ValueError(f"cannot read {'the mask of ' if mask else ''}band {band} of the {what} {ds.GetDescription()} "
                         f"at rows {row0}..{row0 + rows - 1}, columns {col0}..{col0 + cols - 1}: the file is damaged "
                         f"or truncated (GDAL: {detail[:300] or 'read failed'}); copy or export it again")
    return values


def _envi_list(ds: gdal.Dataset, key: str) -> Optional[List[str]]:
    """A dataset-level ENVI list such as ``wavelength = {418.24, 423.87, ...}``, one item per file band."""
    text = (ds.GetMetadata("ENVI") or {}).get(key)
    if text is None:
        return None
    items = [item.strip() for item in text.strip().strip("{}").split(",")]
    if len(items) != ds.RasterCount:
        log.warning("%s: ENVI %s list has %d items for %d bands; ignored", ds.GetDescription(), key,
                    len(items), ds.RasterCount)
        return None
    return items


def _to_nm(value: float, units: Optional[str]) -> Optional[float]:
    """Wavelength in nm. Without units, values below 100 are taken as µm (the usual ENVI convention)."""
    if units is None or units.strip() == "":
        return value * 1e3 if value < 100 else value
    factor = _UNIT_TO_NM.get(units.strip().lower())
    return None if factor is None else value * factor


def _wavelengths(ds: gdal.Dataset) -> Optional[List[float]]:
    """Band centres in nm for every file band, from (in this order of preference) the band's
    ``wavelength``/``wavelength_units`` items, its IMAGERY ``CENTRAL_WAVELENGTH_UM`` (GDAL >= 3.10
    convention) or the dataset's ENVI lists. None unless every band has a usable one."""
    envi = _envi_list(ds, "wavelength")
    envi_units = (ds.GetMetadata("ENVI") or {}).get("wavelength_units") or ds.GetMetadataItem("wavelength_units")
    found: List[Tuple[Optional[str], Optional[str]]] = []
    for i in range(ds.RasterCount):
        band = ds.GetRasterBand(i + 1)
        value, units = band.GetMetadataItem("wavelength"), band.GetMetadataItem("wavelength_units") or envi_units
        if value is None and band.GetMetadataItem("CENTRAL_WAVELENGTH_UM", "IMAGERY") is not None:
            value, units = band.GetMetadataItem("CENTRAL_WAVELENGTH_UM", "IMAGERY"), "um"
        if value is None and envi is not None:
            value, units = envi[i], envi_units
        found.append((value, units))
    if all(value is None for value, _ in found):
        return None
    result = []
    for i, (value, units) in enumerate(found):
        try:
            nm = _to_nm(float(value), units) if value is not None else None
        except ValueError:
            nm = None
        if nm is None:
            log.warning("%s: band %d has no usable wavelength (value %r, units %r); wavelengths ignored",
                        ds.GetDescription(), i + 1, value, units)
            return None
        result.append(nm)
    return result


def _bad_band_list(ds: gdal.Dataset) -> Optional[List[bool]]:
    """True for bad bands (``bbl`` = 0) per file band, from band metadata or the ENVI list; None if absent."""
    envi = _envi_list(ds, "bbl")
    flags = []
    for i in range(ds.RasterCount):
        value = ds.GetRasterBand(i + 1).GetMetadataItem("bbl")
        if value is None and envi is not None:
            value = envi[i]
        if value is None:
            return None
        try:
            flags.append(float(value) == 0)
        except ValueError:
            log.warning("%s: band %d has an unreadable bbl value %r; bad-band list ignored",
                        ds.GetDescription(), i + 1, value)
            return None
    return flags


def band_ranges(bands: Sequence[int]) -> str:
    """[1, 2, 3, 5, 7, 8] -> "1-3,5,7-8" (the --bands syntax)."""
    parts: List[str] = []
    start = previous = None
    for band in list(bands) + [None]:
        if band is not None and previous is not None and band == previous + 1:
            previous = band
            continue
        if start is not None:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = band
    return ",".join(parts)


def _describe(names: Sequence[str], indices: Sequence[int], wavelengths: Optional[Sequence[float]] = None) -> str:
    """'130 (band 130), 131 (band 131)' for a few bands; for more, the band numbers as ranges and their
    wavelength span, so that 18 dropped water-vapour bands take one short line, not eighteen."""
    if len(indices) <= 4:
        return ", ".join(f"{index} ({name})" for index, name in zip(indices, names))
    span = f" ({min(wavelengths):.0f}-{max(wavelengths):.0f} nm)" if wavelengths else ""
    return f"bands {band_ranges(indices)}{span}"


def open_raster(path: str, bands: Optional[Sequence[int]] = None, drop_bad_bands: bool = True) -> RasterInfo:
    """Describe a raster without reading its pixels.

    ``bands`` (1-based file bands) are used exactly as given, so a model trained on some bands reads
    the same ones again. Without it every band is used except alpha bands and, with
    ``drop_bad_bands``, bands flagged ``bbl=0``. Missing or unreadable file -> ValueError.
    """
    ds = open_dataset(path)
    count = ds.RasterCount
    if bands is not None:
        bands = [int(b) for b in bands]
        wrong = [b for b in bands if not 1 <= b <= count]
        if wrong or not bands or len(set(bands)) != len(bands):
            raise ValueError(f"band list {bands} is not valid for {path}: give distinct band numbers "
                             f"from 1 to {count}")
    else:
        bands = [b for b in range(1, count + 1)
                 if ds.GetRasterBand(b).GetColorInterpretation() != gdal.GCI_AlphaBand]
        bad = _bad_band_list(ds) if drop_bad_bands else None
        if bad is not None and any(bad[b - 1] for b in bands):
            dropped = [b for b in bands if bad[b - 1]]
            bands = [b for b in bands if not bad[b - 1]]
            all_wavelengths = _wavelengths(ds)
            log.info("%s: %d bad bands (bbl=0) dropped: %s", path, len(dropped), _describe(
                [ds.GetRasterBand(b).GetDescription() for b in dropped], dropped,
                None if all_wavelengths is None else [all_wavelengths[b - 1] for b in dropped]))
        if not bands:
            raise ValueError(f"raster {path} has no usable band: every band is an alpha or bad band (bbl=0)")
    wavelengths = _wavelengths(ds)
    return RasterInfo(
        path=path, rows=ds.RasterYSize, cols=ds.RasterXSize, band_indices=bands,
        band_names=[ds.GetRasterBand(b).GetDescription() or f"band {b}" for b in bands],
        wavelengths=None if wavelengths is None else [wavelengths[b - 1] for b in bands],
        nodata=[ds.GetRasterBand(b).GetNoDataValue() for b in bands],
        geotransform=tuple(ds.GetGeoTransform()), projection=ds.GetProjection() or "",
        dtype=gdal.GetDataTypeName(ds.GetRasterBand(bands[0]).DataType), file_bands=count,
    )


def _equals_nodata(raw: np.ndarray, nodata: float) -> np.ndarray:
    """Where ``raw`` (file values) equals the band's nodata, compared in the band's own type."""
    if np.isnan(nodata):
        return np.isnan(raw) if raw.dtype.kind == "f" else np.zeros(raw.shape, bool)
    if raw.dtype.kind == "f":
        return raw == raw.dtype.type(nodata)
    info = np.iinfo(raw.dtype)
    if nodata != int(nodata) or not info.min <= nodata <= info.max:
        return np.zeros(raw.shape, bool)
    return raw == raw.dtype.type(nodata)


def _read_marked(ds: gdal.Dataset, info: RasterInfo, row0: int, col0: int, rows: int, cols: int,
                 out: np.ndarray) -> None:
    """Fill ``out`` (Nb, rows, cols) float32 with physical values, NaN wherever a band is invalid."""
    dataset_mask: Optional[np.ndarray] = None
    for k, b in enumerate(info.band_indices):
        band = ds.GetRasterBand(b)
        raw = read_band(ds, b, col0, row0, cols, rows)
        invalid = ~np.isfinite(raw) if raw.dtype.kind == "f" else np.zeros(raw.shape, bool)
        nodata = info.nodata[k]
        if nodata is not None:
            invalid |= _equals_nodata(raw, nodata)
        flags = band.GetMaskFlags()
        # A nodata mask repeats the comparison above; every other mask (dataset mask, alpha,
        # per-band mask) has to be read.
        if not flags & gdal.GMF_ALL_VALID and not (flags & gdal.GMF_NODATA and nodata is not None):
            if flags & gdal.GMF_PER_DATASET:
                if dataset_mask is None:
                    dataset_mask = read_band(ds, b, col0, row0, cols, rows, mask=True) == 0
                invalid |= dataset_mask
            else:
                invalid |= read_band(ds, b, col0, row0, cols, rows, mask=True) == 0
        values = out[k]
        values[...] = raw
        scale, offset = band.GetScale(), band.GetOffset()
        if scale not in (None, 1.0):
            values *= np.float32(scale)
        if offset not in (None, 0.0):
            values += np.float32(offset)
        values[invalid] = np.nan


def _finalise(data: np.ndarray) -> np.ndarray:
    """Turn NaN marks into the (H, W) valid mask and zero the invalid pixels in every band, in place."""
    valid = np.ones(data.shape[1:], bool)
    for band in data:
        valid &= np.isfinite(band)
    for band in data:
        band[~valid] = 0
    return valid


def read_window(info: RasterInfo, row0: int, col0: int, rows: int, cols: int) -> Tuple[np.ndarray, np.ndarray]:
    """One window: data float32 (Nb, rows, cols) in physical units, valid bool (rows, cols); invalid -> 0."""
    if rows <= 0 or cols <= 0 or row0 < 0 or col0 < 0 or row0 + rows > info.rows or col0 + cols > info.cols:
        raise ValueError(f"window rows {row0}:{row0 + rows}, cols {col0}:{col0 + cols} lies outside "
                         f"{info.path} ({info.rows} x {info.cols} px)")
    ds = open_dataset(info.path)
    data = np.empty((info.bands, rows, cols), np.float32)
    _read_marked(ds, info, row0, col0, rows, cols, data)
    return data, _finalise(data)


def empty_bands(info: RasterInfo) -> List[int]:
    """Positions (0-based, into the bands in use) of the bands with no valid value anywhere; reads the
    raster band by band in row blocks and stops reading a band at its first valid value."""
    ds = open_dataset(info.path)
    step = _block_rows(ds, replace(info, band_indices=info.band_indices[:1]))
    empty = []
    for k in range(info.bands):
        one = _subset(info, [k])
        block = np.empty((1, step, info.cols), np.float32)
        for row0 in range(0, info.rows, step):
            rows = min(step, info.rows - row0)
            _read_marked(ds, one, row0, 0, rows, info.cols, block[:, :rows])
            if np.isfinite(block[:, :rows]).any():
                break
        else:
            empty.append(k)
    return empty


def explain_no_valid_pixel(info: RasterInfo, need: str) -> str:
    """Why ``info``'s raster has no valid pixel, for an error message: the band(s) that are entirely
    nodata/NaN (one such band invalidates every pixel) and how to leave them out; ``need`` says why the
    band cannot simply be dropped here."""
    empty = empty_bands(info)
    if not empty:
        return (f"{info.path} has no valid pixel in the bands in use: at every pixel at least one band is nodata, "
                f"NaN/Inf or masked (or an auxiliary raster is); check the nodata values and the coverage")
    shown = _describe([info.band_names[k] for k in empty[:5]], [info.band_indices[k] for k in empty[:5]])
    more = f" and {len(empty) - 5} more" if len(empty) > 5 else ""
    return (f"band(s) {shown}{more} of {info.path} hold no valid value (every pixel is nodata, NaN/Inf or masked), "
            f"so every pixel would be nodata; {need}. Repair the band(s), or leave them out: train again on the "
            f"other bands (CLI: train --bands; toolbox: Bands), which drops such bands by itself")


def _block_rows(ds: gdal.Dataset, info: RasterInfo) -> int:
    """Rows per block: about BLOCK_BYTES of output, a multiple of the file's own block height."""
    natural = max(1, ds.GetRasterBand(info.band_indices[0]).GetBlockSize()[1])
    rows = max(1, BLOCK_BYTES // (4 * info.bands * info.cols))
    return max(natural, rows // natural * natural)


def _read_all_marked(info: RasterInfo, progress: Optional[Progress], cancelled: Optional[Cancelled]) -> np.ndarray:
    ds = open_dataset(info.path)
    data = np.empty((info.bands, info.rows, info.cols), np.float32)
    step = _block_rows(ds, info)
    for row0 in range(0, info.rows, step):
        if cancelled is not None and cancelled():
            raise ReadCancelled(f"reading {info.path} cancelled")
        rows = min(step, info.rows - row0)
        _read_marked(ds, info, row0, 0, rows, info.cols, data[:, row0:row0 + rows])
        if progress is not None:
            progress((row0 + rows) / info.rows, f"reading {os.path.basename(info.path)}")
    return data


def read_raster(info: RasterInfo, progress: Optional[Progress] = None,
                cancelled: Optional[Cancelled] = None) -> Tuple[np.ndarray, np.ndarray]:
    """The whole raster, read in row blocks: data float32 (Nb, H, W), valid bool (H, W); invalid -> 0.

    ``cancelled`` is polled before each block and raises ReadCancelled.
    """
    data = _read_all_marked(info, progress, cancelled)
    return data, _finalise(data)


def sample_lattice(rows: int, cols: int, pixels: int) -> int:
    """The step of a square lattice of about ``pixels`` pixels over a rows x cols raster: every step-th
    pixel of every step-th row, both from step // 2 on (1: every pixel, when the raster holds no more)."""
    return max(1, math.isqrt(rows * cols // max(pixels, 1)))


def read_sample(info: RasterInfo, pixels: int = STRETCH_SAMPLE,
                cancelled: Optional[Cancelled] = None) -> Tuple[RasterInfo, np.ndarray, np.ndarray]:
    """A bounded sample of the raster for fitting the stretch without reading it whole: (info, data float32
    (Nb, 1, n), valid bool (1, n), all True): the valid pixels of a square lattice over the raster
    (``sample_lattice``), spread in both directions, since neighbouring pixels are alike and a sample of
    whole rows misses the rare classes that make the 2 % tails (row blocks of the same size moved the
    limits by up to 5.5 of the 255 levels on the 1000 x 1000 sample). While fewer than half of ``pixels``
    are valid (a scene mostly nodata) the lattice is made twice as dense, down to every pixel; memory holds
    only the pixels with data. Rows are read one at a time. Bands with no valid value in the sample are
    dropped with a warning, as ``load_training_raster`` drops the bands empty in the whole raster, and
    ``info`` describes the bands kept. No valid pixel at all -> ValueError."""
    ds = open_dataset(info.path)
    step = sample_lattice(info.rows, info.cols, pixels)
    while True:
        kept: List[np.ndarray] = []
        found = np.zeros(info.bands, bool)
        usable = 0
        row = np.empty((info.bands, 1, info.cols), np.float32)
        for r in range(step // 2, info.rows, step):
            if cancelled is not None and cancelled():
                raise ReadCancelled(f"reading {info.path} cancelled")
            _read_marked(ds, info, r, 0, 1, info.cols, row)
            points = row[:, 0, step // 2::step]
            finite = np.isfinite(points)
            found |= finite.any(axis=1)
            some = finite.any(axis=0)                 # pixels with data in some band (nodata has none)
            kept.append(points[:, some])
            usable += int(finite[:, some].all(axis=0).sum())
        if usable >= pixels // 2 or step == 1:
            break
        step = max(1, step // 2)
    data = np.concatenate(kept, axis=1)[:, None]      # (Nb, 1, n)
    where = f"the {len(range(step // 2, info.rows, step)) * len(range(step // 2, info.cols, step)):,} pixels " \
            f"of the stretch sample"
    info, data = _drop_empty_bands(info, data, found, where)
    valid = _finalise(data)
    if not valid.any():
        raise ValueError(f"raster {info.path} has no valid pixel in {where}: at every pixel at least one band is "
                         f"nodata, NaN/Inf or masked; check the nodata value and the band selection")
    return info, data[:, valid][:, None], np.ones((1, int(valid.sum())), bool)


def _drop_empty_bands(info: RasterInfo, data: np.ndarray, found: np.ndarray, where: str) -> Tuple[RasterInfo, np.ndarray]:
    """Drop, with a warning, the bands of NaN-marked ``data`` whose ``found`` is False (no valid value in
    ``where``): one such band would otherwise invalidate every pixel."""
    keep = [k for k in range(info.bands) if found[k]]
    if len(keep) == info.bands:
        return info, data
    empty = [k for k in range(info.bands) if k not in keep]
    log.warning("%s: %d bands hold no valid value in %s (all nodata/NaN/Inf or masked) and are dropped: %s",
                info.path, len(empty), where, _describe([info.band_names[k] for k in empty],
                                                        [info.band_indices[k] for k in empty],
                                                        None if info.wavelengths is None else
                                                        [info.wavelengths[k] for k in empty]))
    if not keep:
        raise ValueError(f"raster {info.path} has no valid pixel: every band is entirely nodata, NaN/Inf or masked")
    for new, old in enumerate(keep):
        data[new] = data[old]
    return _subset(info, keep), data[:len(keep)]


TRAINING_COPIES = 2  # training holds the raster as read and its stretched copy


def check_fits_in_memory(info: RasterInfo, available: Optional[int] = None) -> None:
    """Refuse, before allocating, a raster that training cannot hold: TRAINING_COPIES float32 cubes of the
    bands in use must fit the memory free now (``available`` bytes; None: ask the OS, and skip the check
    when it does not say). The message gives the memory needed and the ways out."""
    available = available_memory_bytes() if available is None else available
    if available is not None and training_bytes(info) > available:
        raise ValueError(_too_large(info, f"{gigabytes(available)} is free"))


def training_bytes(info: RasterInfo, pixels: Optional[int] = None) -> int:
    """Memory training holds for ``pixels`` pixels (None: the whole raster) of the bands in use."""
    return TRAINING_COPIES * 4 * info.bands * (info.rows * info.cols if pixels is None else pixels)


def _too_large(info: RasterInfo, situation: str) -> str:
    return (f"{info.path} is too large to train on here: {info.rows:,} x {info.cols:,} px x {info.bands} bands needs "
            f"{gigabytes(training_bytes(info))} in memory (the raster and its stretched copy as float32) but "
            f"{situation}. Train on fewer bands (CLI: --bands; toolbox: Bands), or on a smaller extent around your "
            f"ROIs (e.g. gdal_translate -projwin or Clip raster by extent), and classify the whole raster "
            f"afterwards, which streams it tile by tile")


def load_training_raster(path: str, bands: Optional[Sequence[int]] = None, progress: Optional[Progress] = None,
                         cancelled: Optional[Cancelled] = None) -> Tuple[RasterInfo, np.ndarray, np.ndarray]:
    """Open and read a raster for training: (info, data float32 (Nb, H, W), valid bool (H, W)).

    Beyond read_raster, bands with no valid pixel at all (unflagged bad bands, all-NaN bands) are
    dropped with a warning, since one such band would otherwise invalidate every pixel; ``info``
    describes the bands kept. A raster without any valid pixel, or one too large for the memory free
    now (``check_fits_in_memory``), -> ValueError.
    """
    info = open_raster(path, bands)
    check_fits_in_memory(info)
    try:
        data = _read_all_marked(info, progress, cancelled)
    except MemoryError:  # the estimate said it fits, but another program took the memory meanwhile
        raise ValueError(_too_large(info, "the memory ran out while reading it")) from None
    info, data = _drop_empty_bands(info, data, np.array([np.isfinite(band).any() for band in data]), "the raster")
    valid = _finalise(data)
    if not valid.any():
        raise ValueError(f"raster {path} has no valid pixel: at every pixel at least one band is nodata, "
                         f"NaN/Inf or masked; check the nodata value and the band selection")
    log.info("%s: %d x %d px, %d bands in use, %d of %d pixels valid", path, info.rows, info.cols,
             info.bands, int(valid.sum()), valid.size)
    return info, data, valid


def _subset(info: RasterInfo, keep: Sequence[int]) -> RasterInfo:
    """The same raster description for the bands at positions ``keep`` (0-based, into the bands in use)."""
    pick: Dict[str, list] = {name: [getattr(info, name)[k] for k in keep]
                             for name in ("band_indices", "band_names", "nodata")}
    wavelengths = None if info.wavelengths is None else [info.wavelengths[k] for k in keep]
    return replace(info, wavelengths=wavelengths, **pick)

