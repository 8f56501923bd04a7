"""Auxiliary rasters (LiDAR DSM/intensity, SAR) resampled onto the hyperspectral raster's pixel grid.

Multi-modal models see every modality on one grid. The auxiliary rasters an analyst has beside an HSI
rarely share its grid: another resolution, a larger or smaller extent, often another CRS. Each one is
warped with GDAL onto the HSI grid (or a window of it) in memory: reprojected when both rasters have a
CRS and they differ, resampled with a stated method (bilinear for continuous data such as heights,
intensities and backscatter; nearest for categorical layers; average when the auxiliary raster is
much finer than the HSI, where bilinear would read only 4 of the many source pixels under each HSI
pixel). Warping a window gives exactly the values of warping the whole grid, so prediction reads
the auxiliary rasters block by block like the HSI.

Like ``raster.read_window``: data float32 (Nb, rows, cols) with each band's scale/offset applied and
valid bool (rows, cols); a pixel is invalid where the auxiliary raster has nodata (or a mask, or
NaN/Inf) or does not reach, and invalid pixels hold 0. The file name is not ``aux.py`` because AUX is
a reserved device name on Windows, where QGIS users would fail to install the plugin.
"""

import logging
import math
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
from osgeo import gdal, osr

from .raster import RasterInfo, open_dataset, spatial_reference, srs_name

gdal.UseExceptions()
osr.UseExceptions()

log = logging.getLogger(__name__)

RESAMPLING = {"bilinear": gdal.GRA_Bilinear, "cubic": gdal.GRA_Cubic, "nearest": gdal.GRA_NearestNeighbour,
              "average": gdal.GRA_Average}
DEFAULT_RESAMPLING = "bilinear"
EDGE_POINTS = 21                 # points per side when an extent is reprojected (its edges may curve)
FINER_FACTOR = 2.0               # an auxiliary pixel this many times finer than the HSI's: suggest 'average'

Extent = Tuple[float, float, float, float]  # xmin, ymin, xmax, ymax


@dataclass(frozen=True)
class AuxRaster:
    """An auxiliary raster checked against an HSI grid and ready to be read onto it."""

    path: str
    bands: int
    band_names: List[str]
    nodata: List[Optional[float]]
    resampling: str
    crs: Optional[str]           # the raster's own CRS ('EPSG:…'), None when it has none
    reprojected: bool            # True when warping reprojects it into the HSI's CRS

    def describe(self) -> dict:
        """The model-file entry (modelfile.py 'modalities') without the normalisation."""
        return {"name": os.path.basename(self.path), "role": "aux", "path": os.path.abspath(self.path),
                "bands": self.bands, "band_names": list(self.band_names), "nodata": list(self.nodata),
                "resampling": self.resampling, "crs": self.crs, "reprojected": self.reprojected}


def crs_name(wkt: str) -> Optional[str]:
    """'EPSG:32633' (or the CRS's name) for a WKT, None for no CRS: how the model file records a CRS."""
    srs = spatial_reference(wkt)
    return None if srs is None else srs_name(srs)


def _edge_points(gt: Tuple[float, ...], rows: int, cols: int) -> List[Tuple[float, float]]:
    """Points along the four sides of a grid, in its own coordinates."""
    steps = [k / (EDGE_POINTS - 1) for k in range(EDGE_POINTS)]
    pixel_line = ([(s * cols, 0.0) for s in steps] + [(s * cols, float(rows)) for s in steps]
                  + [(0.0, s * rows) for s in steps] + [(float(cols), s * rows) for s in steps])
    return [(gt[0] + p * gt[1] + l * gt[2], gt[3] + p * gt[4] + l * gt[5]) for p, l in pixel_line]


def _extent(points: List[Tuple[float, float]]) -> Extent:
    xs, ys = zip(*points)
    return min(xs), min(ys), max(xs), max(ys)


def _text(extent: Extent) -> str:
    return "x {:g} … {:g}, y {:g} … {:g}".format(extent[0], extent[2], extent[1], extent[3])


def _overlap_share(aux: Extent, grid: Extent) -> float:
    """Fraction of the grid's extent that the auxiliary extent covers (0 when apart or only touching)."""
    width = min(aux[2], grid[2]) - max(aux[0], grid[0])
    height = min(aux[3], grid[3]) - max(aux[1], grid[1])
    if width <= 0 or height <= 0:
        return 0.0
    return width * height / ((grid[2] - grid[0]) * (grid[3] - grid[1]))


def open_aux(path: str, grid: RasterInfo, resampling: str = DEFAULT_RESAMPLING) -> AuxRaster:
    """Open an auxiliary raster for resampling onto ``grid`` (the HSI's RasterInfo); log what will happen.

    ValueError: unknown resampling method, unreadable file, or no overlap with the HSI (the message gives
    both extents in the HSI's CRS and the fix). A raster in another CRS is reprojected; a raster without a
    CRS beside one with a CRS is used in the coordinates it has, with a warning. Partial overlap is
    allowed (the pixels outside are masked) and logged with the share covered.
    """
    if resampling not in RESAMPLING:
        raise ValueError(f"unknown resampling method {resampling!r} for {path}; use one of {', '.join(RESAMPLING)} "
                         f"(bilinear for continuous data, nearest for classes)")
    ds = open_dataset(path, "auxiliary raster")
    gt, rows, cols = tuple(ds.GetGeoTransform()), ds.RasterYSize, ds.RasterXSize
    source, target = spatial_reference(ds.GetProjection() or ""), spatial_reference(grid.projection)
    points = _edge_points(gt, rows, cols)
    reprojected = source is not None and target is not None and not source.IsSame(target)
    if reprojected:
        points = [p[:2] for p in osr.CoordinateTransformation(source, target).TransformPoints(points)]
        log.info("%s is reprojected from %s to the hyperspectral raster's %s", path, srs_name(source),
                 srs_name(target))
    elif (source is None) != (target is None):
        log.warning("%s has %s and the hyperspectral raster %s; the coordinates are used as they are, so check "
                    "that both are registered to the same ground", path, srs_name(source), srs_name(target))
    aux_extent = _extent(points)
    grid_extent = _extent(_edge_points(grid.geotransform, grid.rows, grid.cols))
    share = _overlap_share(aux_extent, grid_extent) if all(map(math.isfinite, aux_extent)) else 0.0
    if share == 0.0:
        raise ValueError(
            f"the auxiliary raster {path} does not overlap the hyperspectral raster {grid.path}:\n"
            f"  auxiliary:     {_text(aux_extent)} ({srs_name(source)}"
            f"{', reprojected to ' + srs_name(target) if reprojected else ''})\n"
            f"  hyperspectral: {_text(grid_extent)} ({srs_name(target)})\n"
            f"Give an auxiliary raster of the same area, or fix the georeferencing (CRS, geotransform) of one of them")
    if share < 1.0 - 1e-9:
        log.warning("%s covers %.1f %% of the hyperspectral raster's extent; the pixels outside it are masked",
                    path, 100 * share)
    pixel = math.sqrt(abs(gt[1] * gt[5] - gt[2] * gt[4]))
    hsi_pixel = math.sqrt(abs(grid.geotransform[1] * grid.geotransform[5] - grid.geotransform[2] * grid.geotransform[4]))
    log.info("%s: %d band(s), %d x %d px of %g units, resampled onto the hyperspectral grid (%d x %d px of %g units) "
             "with %s", path, ds.RasterCount, cols, rows, pixel, grid.cols, grid.rows, hsi_pixel, resampling)
    if resampling == "bilinear" and not reprojected and pixel * FINER_FACTOR <= hsi_pixel:
        log.warning("%s is %.0f times finer than the hyperspectral raster: bilinear reads only the 4 source pixels "
                    "nearest each HSI pixel centre; 'average' uses all of them", path, hsi_pixel / pixel)
    bands = [ds.GetRasterBand(b + 1) for b in range(ds.RasterCount)]
    return AuxRaster(path=path, bands=len(bands),
                     band_names=[band.GetDescription() or f"band {b + 1}" for b, band in enumerate(bands)],
                     nodata=[band.GetNoDataValue() for band in bands], resampling=resampling,
                     crs=crs_name(ds.GetProjection() or ""), reprojected=reprojected)


def read_aux(aux: AuxRaster, grid: RasterInfo, row0: int = 0, col0: int = 0, rows: Optional[int] = None,
             cols: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """The auxiliary raster on a window of the HSI grid (default: all of it): data float32 (Nb, rows, cols)
    in physical units and valid bool (rows, cols); invalid pixels (nodata, masked, NaN/Inf, beyond the
    auxiliary raster) hold 0."""
    rows = grid.rows - row0 if rows is None else rows
    cols = grid.cols - col0 if cols is None else cols
    if rows <= 0 or cols <= 0 or row0 < 0 or col0 < 0 or row0 + rows > grid.rows or col0 + cols > grid.cols:
        raise ValueError(f"window rows {row0}:{row0 + rows}, cols {col0}:{col0 + cols} lies outside "
                         f"{grid.path} ({grid.rows} x {grid.cols} px)")
    source = open_dataset(aux.path, "auxiliary raster")
    if source.RasterCount != aux.bands:
        raise ValueError(f"{aux.path} now has {source.RasterCount} bands, not {aux.bands}; it changed while in use")
    g = grid.geotransform
    target = gdal.GetDriverByName("MEM").Create("", cols, rows, aux.bands, gdal.GDT_Float32)
    target.SetGeoTransform((g[0] + col0 * g[1] + row0 * g[2], g[1], g[2], g[3] + col0 * g[4] + row0 * g[5], g[4], g[5]))
    if grid.projection:
        target.SetProjection(grid.projection)
    for b in range(1, aux.bands + 1):
        band = target.GetRasterBand(b)
        band.SetNoDataValue(math.nan)
        band.Fill(math.nan)
    # The source's nodata and masks are honoured by the warper (left out of the kernel); what no valid
    # source pixel reaches stays NaN.
    try:
        gdal.Warp(target, source, resampleAlg=RESAMPLING[aux.resampling], dstNodata=math.nan)
    except RuntimeError as error:
        raise ValueError(f"cannot read the auxiliary raster {aux.path} for rows {row0}..{row0 + rows - 1}, columns "
                         f"{col0}..{col0 + cols - 1} of the grid: the file is damaged or truncated (GDAL: "
                         f"{' '.join(str(error).split())[:300]}); copy or export it again") from None
    data = target.ReadAsArray().reshape(aux.bands, rows, cols).astype(np.float32, copy=False)
    for k in range(aux.bands):
        band = source.GetRasterBand(k + 1)
        scale, offset = band.GetScale(), band.GetOffset()
        if scale not in (None, 1.0):
            data[k] *= np.float32(scale)
        if offset not in (None, 0.0):
            data[k] += np.float32(offset)
    valid = np.isfinite(data).all(axis=0)
    data[:, ~valid] = 0
    return data, valid


def read_auxes(auxes: Sequence[AuxRaster], grid: RasterInfo, valid: np.ndarray, row0: int = 0, col0: int = 0,
               rows: Optional[int] = None, cols: Optional[int] = None) -> List[np.ndarray]:
    """``read_aux`` of every auxiliary raster on one window of the grid; ``valid`` (the window's mask, updated
    in place) keeps only the pixels valid in all of them."""
    data = []
    for aux in auxes:
        values, aux_valid = read_aux(aux, grid, row0, col0, rows, cols)
        valid &= aux_valid
        data.append(values)
    return data
