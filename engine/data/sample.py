"""The built-in synthetic hyperspectral sample: an EnMAP-like scene the project makes itself.

Why synthetic: the demo and the speed benchmarks need a georeferenced hyperspectral raster of
any size, with training ROIs, on a machine that has nothing else. The scene mimics the EnMAP
Potsdam data the plugin is tested on (same six classes, colours, metadata conventions, Int16
reflectance x 10,000 with band scale 0.0001, nodata -32768, EPSG:32633, 30 m pixels), so
everything written for one works on the other.

Spectra are physically shaped (chlorophyll absorption and red edge for vegetation, liquid-water
absorption in the SWIR, rising soil continuum with a clay feature, dark water, red-tile roofs,
grey pavement); each pixel varies in brightness and shape through smooth random fields, mixes
with its neighbours at class boundaries, and carries sensor noise, so a classifier has real
work to do. The atmospheric water-vapour bands are flagged as bad bands (``bbl=0``) and hold
noise, like real L2A products.

The raster is generated and written in row blocks, so a 1,000 x 1,000 x 224 scene needs a few
hundred MB of memory at most.

QGIS styles come with the files, written here as plain ``.qml`` text (no QGIS needed), so the sample
looks right however it was made (``python -m engine sample``, the CLI demo, the toolbox): the ROI
layer categorised by class in the sample's colours (``sample_rois.qml``), the raster in true colour
(``sample.qml``, when bands lie near 640/550/470 nm); the label raster carries a colour table.
"""

import os
from dataclasses import astuple, dataclass
from typing import Callable, Dict, List, Optional, Tuple
from xml.sax.saxutils import quoteattr

import numpy as np
from osgeo import gdal, ogr, osr

gdal.UseExceptions()
ogr.UseExceptions()
osr.UseExceptions()

Progress = Callable[[float, str], None]
Cancelled = Callable[[], bool]

NODATA = -32768
SCALE = 1e-4
EPSG = 32633
PIXEL_SIZE = 30.0
ORIGIN = (364095.0, 5809965.0)  # the EnMAP Potsdam mosaic's upper-left corner
BLOCK_ROWS = 64


@dataclass(frozen=True)
class SampleClass:
    id: int
    name: str
    rgb: Tuple[int, int, int]


CLASSES: Tuple[SampleClass, ...] = (
    SampleClass(1, "roof", (230, 0, 0)),
    SampleClass(2, "pavement", (156, 156, 156)),
    SampleClass(3, "low vegetation", (152, 230, 0)),
    SampleClass(4, "tree", (38, 115, 0)),
    SampleClass(5, "soil", (168, 112, 0)),
    SampleClass(6, "water", (0, 100, 255)),
)


@dataclass(frozen=True)
class SamplePaths:
    raster: str
    labels: str
    rois: str
    classes_csv: str


class SampleCancelled(RuntimeError):
    """Raised when the cancel check fires; nothing partial is left behind."""


def wavelengths(bands: int) -> np.ndarray:
    """Band centres in nm, evenly spread over the EnMAP range 418-2446 nm."""
    return np.linspace(418.0, 2446.0, bands)


def bad_band_list(wl: np.ndarray) -> np.ndarray:
    """1 = good band, 0 = atmospheric water-vapour band (as EnMAP's ``bbl``)."""
    bad = ((wl > 1330) & (wl < 1450)) | ((wl > 1790) & (wl < 1960))
    return (~bad).astype(np.int32)


def _gauss(wl: np.ndarray, centre: float, width: float) -> np.ndarray:
    return np.exp(-0.5 * ((wl - centre) / width) ** 2)


def _sigmoid(wl: np.ndarray, centre: float, width: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(wl - centre) / width))


def _leaf_water(wl: np.ndarray, strength: float) -> np.ndarray:
    """Multiplicative liquid-water absorption of leaves (970, 1200, 1450, 1940 nm, SWIR tail)."""
    depth = (
        0.06 * _gauss(wl, 970, 25)
        + 0.14 * _gauss(wl, 1200, 40)
        + 0.45 * _gauss(wl, 1450, 70)
        + 0.60 * _gauss(wl, 1940, 90)
        + 0.35 * _sigmoid(wl, 2300, 120)
    )
    return 1.0 - strength * depth


def endmembers(wl: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Two reflectance spectra per class, (classes, bands) each: a base and a variant.

    Pixels mix base and variant through a smooth field, which gives within-class spectral
    variability with the right shape (e.g. dry vs. lush grass, bright vs. dark roofs).
    """

    def vegetation(nir: float, green: float, water: float, visible: float) -> np.ndarray:
        vis = visible + green * _gauss(wl, 550, 35) - 0.6 * visible * _gauss(wl, 675, 25)
        edge = nir * _sigmoid(wl, 715, 16)
        swir_drop = 1.0 - 0.35 * _sigmoid(wl, 1300, 60)
        return (vis + edge * swir_drop) * _leaf_water(wl, water)

    def soil(level: float, clay: float) -> np.ndarray:
        continuum = 0.06 + level * (1.0 - np.exp(-(wl - 380.0) / 650.0))
        features = 1.0 - clay * _gauss(wl, 2205, 28) - 0.08 * _gauss(wl, 900, 90)
        return continuum * features * _leaf_water(wl, 0.25)

    def roof(level: float) -> np.ndarray:
        return (0.07 + level * _sigmoid(wl, 585, 28) + 0.05 * (wl - 400) / 2000) * (
            1.0 - 0.12 * _gauss(wl, 880, 70)
        )

    def pavement(level: float) -> np.ndarray:
        return (level + 0.05 * (wl - 400) / 2000) * (
            1.0 - 0.05 * _gauss(wl, 1730, 25) - 0.07 * _gauss(wl, 2310, 30)
        )

    def water(turbidity: float) -> np.ndarray:
        return 0.012 + 0.045 * _gauss(wl, 480 + 120 * turbidity, 90) + turbidity * 0.03 * _gauss(wl, 700, 60)

    base = np.stack(
        [roof(0.22), pavement(0.11), vegetation(0.42, 0.06, 0.9, 0.045),
         vegetation(0.33, 0.035, 1.1, 0.03), soil(0.30, 0.12), water(0.1)]
    )
    variant = np.stack(
        [roof(0.12), pavement(0.19), vegetation(0.30, 0.05, 0.6, 0.07),
         vegetation(0.40, 0.03, 1.2, 0.025), soil(0.22, 0.05), water(0.7)]
    )
    return base.astype(np.float32), variant.astype(np.float32)


def _smooth_field(rows: int, cols: int, cell: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth random field in [0, 1]: a coarse uniform grid, bilinearly upsampled."""
    grid = rng.random((rows // cell + 2, cols // cell + 2))
    r = np.arange(rows) / cell
    c = np.arange(cols) / cell
    r0, c0 = np.floor(r).astype(int), np.floor(c).astype(int)
    fr, fc = (r - r0)[:, None], (c - c0)[None, :]
    top = grid[r0][:, c0] * (1 - fc) + grid[r0][:, c0 + 1] * fc
    bottom = grid[r0 + 1][:, c0] * (1 - fc) + grid[r0 + 1][:, c0 + 1] * fc
    return (top * (1 - fr) + bottom * fr).astype(np.float32)


def class_map(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Urban-like layout (rows, cols) of class ids 1..6: parcels, a road grid and a river.

    Parcels are Voronoi cells of jittered grid seeds (each pixel compares the 9 neighbouring
    cells' seeds only, so this stays linear in the image size).
    """
    cell = 14
    gr, gc = rows // cell + 3, cols // cell + 3
    seeds = (np.stack(np.meshgrid(np.arange(gr), np.arange(gc), indexing="ij"), -1) - 1 + rng.random((gr, gc, 2))) * cell
    parcel_class = rng.choice([1, 2, 3, 4, 5], size=(gr, gc), p=[0.26, 0.12, 0.30, 0.22, 0.10])
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    ir, ic = rr // cell + 1, cc // cell + 1
    best = np.full((rows, cols), np.inf)
    labels = np.zeros((rows, cols), np.uint8)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            sr, sc = ir + dr, ic + dc
            dist = (seeds[sr, sc, 0] - rr) ** 2 + (seeds[sr, sc, 1] - cc) ** 2
            closer = dist < best
            best[closer] = dist[closer]
            labels[closer] = parcel_class[sr, sc][closer]
    spacing = 36
    offset_r, offset_c = rng.integers(0, spacing, 2)
    labels[((rr + offset_r) % spacing) < 2] = 2
    labels[((cc + offset_c) % spacing) < 2] = 2
    centre = cols * 0.72 + 0.08 * cols * np.sin(rr / max(rows, 1) * 2 * np.pi * 1.3 + rng.random() * 6)
    labels[np.abs(cc - centre) < max(2.0, cols * 0.035)] = 6
    return labels


def _swath_nodata(rows: int, cols: int) -> np.ndarray:
    """A diagonal no-data corner, like the edge of a satellite swath (True = no data)."""
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    return (rr / max(rows, 1) + cc / max(cols, 1)) < 0.12


def _mixing(labels: np.ndarray) -> np.ndarray:
    """Per-pixel class fractions (classes, rows, cols): pure inside parcels, mixed at edges."""
    onehot = np.stack([(labels == c.id).astype(np.float32) for c in CLASSES])
    padded = np.pad(onehot, ((0, 0), (1, 1), (1, 1)), mode="edge")
    neighbours = sum(
        padded[:, 1 + dr: 1 + dr + labels.shape[0], 1 + dc: 1 + dc + labels.shape[1]]
        for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)
    ) / 8.0
    return 0.8 * onehot + 0.2 * neighbours


def _roi_windows(labels: np.ndarray, nodata: np.ndarray, rng: np.random.Generator,
                 per_class: int) -> List[Tuple[int, int, int, int]]:
    """Square ROIs (class id, row, col, size) on pure, valid pixels of each class."""
    rois = []
    for klass in CLASSES:
        for size in (5, 4, 3, 2):
            inside = ((labels == klass.id) & ~nodata).astype(np.int32)
            integral = np.pad(inside, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
            window = (integral[size:, size:] - integral[:-size, size:]
                      - integral[size:, :-size] + integral[:-size, :-size])
            r, c = np.nonzero(window == size * size)
            if len(r) >= per_class:
                break
        if len(r) == 0:
            continue
        chosen = rng.choice(len(r), size=min(per_class, len(r)), replace=False)
        rois.extend((klass.id, int(r[i]), int(c[i]), size) for i in chosen)
    return rois


def _geotransform() -> Tuple[float, ...]:
    return (ORIGIN[0], PIXEL_SIZE, 0.0, ORIGIN[1], 0.0, -PIXEL_SIZE)


def _srs() -> osr.SpatialReference:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(EPSG)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def _create_raster(path: str, rows: int, cols: int, bands: int, dtype: int, options: List[str]) -> gdal.Dataset:
    ds = gdal.GetDriverByName("GTiff").Create(path, cols, rows, bands, dtype, options)
    ds.SetGeoTransform(_geotransform())
    ds.SetProjection(_srs().ExportToWkt())
    return ds


def _write_spectral_metadata(ds: gdal.Dataset, wl: np.ndarray, bbl: np.ndarray) -> None:
    """EnMAP-Box / ENVI conventions: per-band description, wavelength, fwhm, bbl."""
    fwhm = np.gradient(wl) * 1.2
    for i in range(len(wl)):
        band = ds.GetRasterBand(i + 1)
        band.SetDescription(f"band {i + 1} ({wl[i]:.2f} nm)")
        band.SetNoDataValue(NODATA)
        band.SetScale(SCALE)
        band.SetOffset(0.0)
        band.SetMetadata({
            "wavelength": f"{wl[i]:.2f}", "wavelength_units": "Nanometers",
            "fwhm": f"{fwhm[i]:.2f}", "bbl": str(int(bbl[i])),
        })

    def envi_list(values) -> str:
        return "{" + ", ".join(str(v) for v in values) + "}"

    ds.SetMetadata({
        "wavelength": envi_list(f"{w:.2f}" for w in wl), "wavelength_units": "Nanometers",
        "fwhm": envi_list(f"{f:.2f}" for f in fwhm), "bbl": envi_list(int(b) for b in bbl),
    }, "ENVI")
    ds.SetMetadataItem("source", "CSSMamba plugin built-in synthetic sample (engine.data.sample)")


def _write_labels(path: str, labels: np.ndarray) -> None:
    ds = _create_raster(path, *labels.shape, 1, gdal.GDT_Byte, ["COMPRESS=DEFLATE", "TILED=YES"])
    band = ds.GetRasterBand(1)
    band.WriteArray(labels)
    band.SetNoDataValue(0)
    table = gdal.ColorTable()
    table.SetColorEntry(0, (0, 0, 0, 0))
    for klass in CLASSES:
        table.SetColorEntry(klass.id, (*klass.rgb, 255))
    band.SetRasterColorTable(table)
    band.SetRasterColorInterpretation(gdal.GCI_PaletteIndex)
    ds.SetMetadata({
        "class_ids": ",".join(str(c.id) for c in CLASSES),
        "class_names": ",".join(c.name for c in CLASSES),
        "unlabelled_value": "0",
    })
    ds.FlushCache()
    ds = None


def _write_rois(path: str, rois: List[Tuple[int, int, int, int]]) -> None:
    names: Dict[int, str] = {c.id: c.name for c in CLASSES}
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(path)
    layer = ds.CreateLayer("rois", _srs(), ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("class_id", ogr.OFTInteger))
    layer.CreateField(ogr.FieldDefn("class_name", ogr.OFTString))
    x0, y0 = ORIGIN
    for class_id, row, col, size in rois:
        left, top = x0 + col * PIXEL_SIZE, y0 - row * PIXEL_SIZE
        right, bottom = left + size * PIXEL_SIZE, top - size * PIXEL_SIZE
        ring = ogr.Geometry(ogr.wkbLinearRing)
        for x, y in ((left, top), (right, top), (right, bottom), (left, bottom), (left, top)):
            ring.AddPoint_2D(x, y)
        polygon = ogr.Geometry(ogr.wkbPolygon)
        polygon.AddGeometry(ring)
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("class_id", class_id)
        feature.SetField("class_name", names[class_id])
        feature.SetGeometry(polygon)
        layer.CreateFeature(feature)
    ds = None


def _write_classes_csv(path: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("id,name,r,g,b\n")
        for klass in CLASSES:
            handle.write(f"{klass.id},{klass.name},{klass.rgb[0]},{klass.rgb[1]},{klass.rgb[2]}\n")


TRUE_COLOUR_NM = (640.0, 550.0, 470.0)  # red, green, blue band centres (as provider/styling.py)
_QML_HEAD = ("<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
             '<qgis version="3.22.0" styleCategories="Symbology">\n')


def sidecar_path(path: str) -> str:
    """Where QGIS looks for a layer's default style: the same folder and basename, ``.qml``."""
    return os.path.splitext(path)[0] + ".qml"


def true_colour_bands(wl: np.ndarray) -> Optional[Tuple[int, int, int]]:
    """1-based bands nearest 640/550/470 nm, or None when one of them is more than 50 nm away."""
    bands = [int(np.argmin(np.abs(wl - nm))) for nm in TRUE_COLOUR_NM]
    if any(abs(wl[b] - nm) > 50 for b, nm in zip(bands, TRUE_COLOUR_NM)):
        return None
    return tuple(b + 1 for b in bands)


def _true_colour_qml(ds: gdal.Dataset, bands: Tuple[int, int, int]) -> str:
    """Multiband-colour style of the written raster: each band stretched to its 2-98 % range of valid
    reflectance (QGIS shows the band scale applied, so in reflectance, not x 10,000)."""
    enhancements = []
    for colour, band in zip(("red", "green", "blue"), bands):
        values = ds.GetRasterBand(band).ReadAsArray()
        valid = values[values != NODATA].astype(np.float64) * SCALE
        low, high = np.percentile(valid, (2, 98)) if valid.size else (0.0, 1.0)
        enhancements.append(
            f"      <{colour}ContrastEnhancement>\n        <minValue>{low:.6g}</minValue>\n"
            f"        <maxValue>{max(high, low + SCALE):.6g}</maxValue>\n"
            f"        <algorithm>StretchToMinimumMaximum</algorithm>\n      </{colour}ContrastEnhancement>\n")
    red, green, blue = bands
    return (_QML_HEAD + "  <pipe>\n"
            f'    <rasterrenderer type="multibandcolor" redBand="{red}" greenBand="{green}" blueBand="{blue}" '
            'alphaBand="-1" opacity="1" nodataColor="">\n'
            + "".join(enhancements) + "    </rasterrenderer>\n  </pipe>\n</qgis>\n")


def _rois_qml() -> str:
    """Categorised style of the ROI layer on class_id, labelled with the class names: half-transparent fills
    with solid outlines in the class colours (as 'Create training ROI layer' styles a new layer)."""
    categories, symbols = [], []
    for k, klass in enumerate(CLASSES):
        categories.append(
            f'      <category symbol="{k}" value="{klass.id}" label={quoteattr(klass.name)} render="true"/>\n')
        rgb = ",".join(map(str, klass.rgb))
        props = {"color": f"{rgb},110", "outline_color": f"{rgb},255", "outline_width": "0.5",
                 "outline_width_unit": "MM", "style": "solid", "outline_style": "solid", "joinstyle": "bevel"}
        options = "".join(f'            <Option type="QString" name="{key}" value="{value}"/>\n'
                          for key, value in props.items())
        legacy = "".join(f'          <prop k="{key}" v="{value}"/>\n' for key, value in props.items())
        symbols.append(   # the properties twice, as QGIS writes them: as options (new) and as props (old)
            f'      <symbol type="fill" name="{k}" alpha="1" clip_to_extent="1" force_rhr="0">\n'
            '        <layer class="SimpleFill" enabled="1" locked="0" pass="0">\n'
            f'          <Option type="Map">\n{options}          </Option>\n{legacy}'
            '        </layer>\n      </symbol>\n')
    return (_QML_HEAD
            + '  <renderer-v2 type="categorizedSymbol" attr="class_id" symbollevels="0" forceraster="0" '
              'enableorderby="0">\n    <categories>\n' + "".join(categories) + "    </categories>\n"
            + "    <symbols>\n" + "".join(symbols) + "    </symbols>\n  </renderer-v2>\n</qgis>\n")


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def generate_sample(
    out_dir: str,
    rows: int = 128,
    cols: int = 128,
    bands: int = 128,
    seed: int = 0,
    rois_per_class: int = 8,
    progress: Optional[Progress] = None,
    cancelled: Optional[Cancelled] = None,
) -> SamplePaths:
    """Write ``sample.tif``, ``sample_labels.tif``, ``sample_rois.gpkg`` and ``classes.csv``, and the QGIS
    styles ``sample_rois.qml`` and (with bands near red, green and blue) ``sample.qml``.

    The same seed gives the same files. Every file is written under a temporary name and
    renamed at the end, so a cancelled or failed run leaves no half-written output behind.
    """
    if rows < 16 or cols < 16:
        raise ValueError(f"sample size {rows} x {cols} px is too small: use at least 16 x 16 px")
    if bands < 10:
        raise ValueError(f"sample with {bands} bands is too few for a hyperspectral scene: use at least 10")
    os.makedirs(out_dir, exist_ok=True)
    progress = progress or (lambda fraction, text="": None)
    cancelled = cancelled or (lambda: False)
    rng = np.random.default_rng(seed)

    wl = wavelengths(bands)
    bbl = bad_band_list(wl)
    base, variant = endmembers(wl)
    labels = class_map(rows, cols, rng)
    nodata = _swath_nodata(rows, cols)
    fractions = _mixing(labels)
    shape_mix = _smooth_field(rows, cols, 12, rng)
    brightness = 0.85 + 0.3 * _smooth_field(rows, cols, 20, rng)
    noise_sigma = np.where(bbl == 1, 0.003, 0.02).astype(np.float32)
    rois = _roi_windows(labels, nodata, rng, rois_per_class)
    labels = np.where(nodata, 0, labels).astype(np.uint8)

    final = SamplePaths(*(os.path.join(out_dir, name) for name in (
        "sample.tif", "sample_labels.tif", "sample_rois.gpkg", "classes.csv")))
    partial = SamplePaths(*(os.path.join(out_dir, f".partial-{os.getpid()}-{os.path.basename(p)}")
                            for p in astuple(final)))
    rgb = true_colour_bands(wl)
    styles = [(sidecar_path(part), sidecar_path(whole)) for part, whole in (
        (partial.rois, final.rois), (partial.raster, final.raster)) if rgb is not None or whole != final.raster]
    try:
        ds = _create_raster(partial.raster, rows, cols, bands, gdal.GDT_Int16, [
            "COMPRESS=DEFLATE", "PREDICTOR=2", "TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256",
            "INTERLEAVE=BAND", "BIGTIFF=IF_SAFER"])
        _write_spectral_metadata(ds, wl, bbl)
        for r0 in range(0, rows, BLOCK_ROWS):
            if cancelled():
                raise SampleCancelled("sample generation cancelled")
            r1 = min(rows, r0 + BLOCK_ROWS)
            frac = fractions[:, r0:r1]                            # (classes, h, w)
            mix = shape_mix[r0:r1][None, :, :, None]
            spectra = np.einsum("khw,khwb->hwb", frac, (1 - mix) * base[:, None, None] + mix * variant[:, None, None])
            spectra *= brightness[r0:r1, :, None]
            spectra += rng.normal(0.0, 1.0, spectra.shape).astype(np.float32) * noise_sigma
            block = np.clip(np.round(spectra / SCALE), -500, 15000).astype(np.int16)
            block[nodata[r0:r1]] = NODATA
            for b in range(bands):
                ds.GetRasterBand(b + 1).WriteArray(block[:, :, b], 0, r0)
            progress(0.9 * r1 / rows, "")
        ds.FlushCache()
        if rgb is not None:
            _write_text(sidecar_path(partial.raster), _true_colour_qml(ds, rgb))
        ds = None
        _write_labels(partial.labels, labels)
        _write_rois(partial.rois, rois)
        _write_text(sidecar_path(partial.rois), _rois_qml())
        _write_classes_csv(partial.classes_csv)
        for src, dst in list(zip(astuple(partial), astuple(final))) + styles:
            os.replace(src, dst)
        if rgb is None and os.path.exists(sidecar_path(final.raster)):
            os.remove(sidecar_path(final.raster))   # an earlier sample's style would show the wrong bands
    finally:
        ds = None
        for leftover in list(astuple(partial)) + [src for src, _ in styles]:
            if os.path.exists(leftover):
                os.remove(leftover)
    progress(1.0, f"sample written to {out_dir}: {rows} x {cols} px, {bands} bands, {len(rois)} ROIs")
    return final
