"""Styles for the rasters the algorithms write: class map, confidence and cluster map.

Each style is applied twice, for the two ways a layer reaches the map: written as a ``.qml`` sidecar
(``<basename>.qml``, which QGIS loads as the default style whenever the raster is opened again) and
applied by a post-processor when Processing loads the output into the project on completion.
"""

import colorsys
import os
import re
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsColorRampShader,
    QgsContrastEnhancement,
    QgsMapLayer,
    QgsMarkerSymbol,
    QgsMultiBandColorRenderer,
    QgsPalettedRasterRenderer,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProject,
    QgsRasterDataProvider,
    QgsRasterLayer,
    QgsRasterRenderer,
    QgsRasterShader,
    QgsRendererCategory,
    QgsSingleBandPseudoColorRenderer,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor

RendererFn = Callable[[QgsRasterLayer], QgsRasterRenderer]

# Viridis at five stops: perceptually even and readable with colour-vision deficiencies.
_VIRIDIS = ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725")


def class_renderer(layer: QgsRasterLayer, ids: Sequence[int], names: Sequence[str],
                   colors: Sequence[Sequence[int]]) -> QgsPalettedRasterRenderer:
    """Paletted renderer of a class raster: one entry per class id, labelled with the class name."""
    classes = [QgsPalettedRasterRenderer.Class(int(value), QColor(*map(int, rgb)), str(name))
               for value, name, rgb in zip(ids, names, colors)]
    return QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes)


def probability_renderer(layer: QgsRasterLayer) -> QgsSingleBandPseudoColorRenderer:
    """Band 1 in a pseudocolour ramp fixed to 0–1, so maps of different runs compare by colour: the
    confidence map, or the first class of a class-probability raster (its bands are named after the
    classes, so another class is one choice away in the layer properties)."""
    ramp = QgsColorRampShader(0.0, 1.0)
    ramp.setColorRampType(QgsColorRampShader.Interpolated)
    ramp.setColorRampItemList([
        QgsColorRampShader.ColorRampItem(k / (len(_VIRIDIS) - 1), QColor(color), f"{k / (len(_VIRIDIS) - 1):g}")
        for k, color in enumerate(_VIRIDIS)])
    shader = QgsRasterShader(0.0, 1.0)
    shader.setRasterShaderFunction(ramp)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
    renderer.setClassificationMin(0.0)
    renderer.setClassificationMax(1.0)
    return renderer


def cluster_colors(n: int) -> List[QColor]:
    """``n`` distinct colours: golden-angle hues, alternating brightness so neighbours in id differ."""
    colors = []
    for k in range(n):
        r, g, b = colorsys.hsv_to_rgb((k * 0.6180339887498949) % 1.0, 0.8, 0.95 if k % 2 else 0.7)
        colors.append(QColor(int(r * 255), int(g * 255), int(b * 255)))
    return colors


def cluster_renderer(layer: QgsRasterLayer, n: int,
                     class_names: Optional[Sequence[str]] = None) -> QgsPalettedRasterRenderer:
    """Paletted renderer of a cluster raster (value = cluster id + 1, 0 = nodata) with ``n`` clusters.

    CSSMamba numbers clusters class by class (cluster id = class index · K + k, K = n / classes), so
    with ``class_names`` each entry is labelled "<class name> · cluster k" (k from 1).
    """
    per_class = n // len(class_names) if class_names else 0
    classes = []
    for cluster, color in enumerate(cluster_colors(n)):
        if per_class:
            label = f"{class_names[cluster // per_class]} · cluster {cluster % per_class + 1}"
        else:
            label = f"cluster {cluster + 1}"
        classes.append(QgsPalettedRasterRenderer.Class(cluster + 1, color, label))
    return QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes)


def roi_class_style(layer: Optional[QgsVectorLayer],
                    class_field: str) -> Dict[int, Tuple[Optional[str], Tuple[int, int, int]]]:
    """{class id: (name or None, (r, g, b))} of an ROI layer styled by category on ``class_field``, so the
    class map keeps the colours (and names) the analyst already gave the classes; {} otherwise.

    A layer Processing opened from a path ("qgis_process … ROIS=rois.gpkg") comes without its default
    style, so that style (a .qml sidecar or the one stored in the GeoPackage) is read from a fresh copy.
    Labels such as "3 low vegetation" give the name "low vegetation"; a label that only repeats the id
    is no name.
    """
    if layer is None:
        return {}
    if not _categorised_on(layer.renderer(), class_field) and QgsProject.instance().mapLayer(layer.id()) is None:
        layer = QgsVectorLayer(layer.source(), layer.name(), layer.providerType())  # owns the renderer: keep it
    renderer = layer.renderer()
    if not _categorised_on(renderer, class_field):
        return {}
    style = {}
    for category in renderer.categories():
        try:
            class_id = int(category.value())
        except (TypeError, ValueError):  # the catch-all category, or a value that is no class id
            continue
        color = category.symbol().color()
        name = re.sub(rf"^{class_id}\b\s*[:=,;.-]?\s*", "", category.label().strip())
        style[class_id] = (name or None, (color.red(), color.green(), color.blue()))
    return style


def _categorised_on(renderer, field: str) -> bool:
    return isinstance(renderer, QgsCategorizedSymbolRenderer) and renderer.classAttribute() == field


TRUE_COLOUR_NM = (640.0, 550.0, 470.0)  # red, green, blue band centres


def true_colour_renderer(layer: QgsRasterLayer) -> Optional[QgsMultiBandColorRenderer]:
    """RGB from the bands nearest 640/550/470 nm, each stretched to its 2–98 % cumulative range, as the
    EnMAP-Box shows a hyperspectral scene (QGIS's default, bands 1-2-3, is a grey blur of the blue end).
    None when the raster has no wavelengths, or none within 50 nm of a visible colour."""
    from ..engine.data.raster import open_raster

    info = open_raster(layer.source(), drop_bad_bands=False)
    if info.wavelengths is None:
        return None
    bands = []
    for nm in TRUE_COLOUR_NM:
        k = min(range(info.bands), key=lambda i: abs(info.wavelengths[i] - nm))
        if abs(info.wavelengths[k] - nm) > 50:
            return None
        bands.append(info.band_indices[k])
    provider = layer.dataProvider()
    renderer = QgsMultiBandColorRenderer(provider, *bands)
    setters = (renderer.setRedContrastEnhancement, renderer.setGreenContrastEnhancement,
               renderer.setBlueContrastEnhancement)
    for band, set_enhancement in zip(bands, setters):
        low, high = provider.cumulativeCut(band, 0.02, 0.98)
        enhancement = QgsContrastEnhancement(provider.dataType(band))
        enhancement.setContrastEnhancementAlgorithm(QgsContrastEnhancement.StretchToMinimumMaximum)
        enhancement.setMinimumValue(low)
        enhancement.setMaximumValue(high)
        set_enhancement(enhancement)
    return renderer


def apply_renderer(layer: QgsRasterLayer, renderer: QgsRasterRenderer) -> None:
    """Set ``renderer`` on ``layer``; a paletted one (class or cluster ids) also gets nearest-neighbour
    resampling, zoomed in and out: a user default of bilinear or cubic (Settings ▸ Options ▸ Rendering)
    would blend neighbouring classes into colours no class has, and the map would look smoothed."""
    layer.setRenderer(renderer)
    if isinstance(renderer, QgsPalettedRasterRenderer):
        layer.resampleFilter().setZoomedInResampler(None)
        layer.resampleFilter().setZoomedOutResampler(None)
        provider = layer.dataProvider()
        provider.setZoomedInResamplingMethod(QgsRasterDataProvider.ResamplingMethod.Nearest)
        provider.setZoomedOutResamplingMethod(QgsRasterDataProvider.ResamplingMethod.Nearest)


def sidecar_path(path: str) -> str:
    """Where QGIS looks for a raster's default style: the same folder and basename, ``.qml``."""
    return os.path.splitext(path)[0] + ".qml"


def write_qml_sidecar(path: str,
                      renderer_fn: Callable[[QgsRasterLayer], Optional[QgsRasterRenderer]]) -> Optional[str]:
    """Style the raster at ``path`` with ``renderer_fn`` and save that style as its sidecar; returns
    the ``.qml`` path, or None when ``renderer_fn`` has no renderer for it (QGIS's default then applies).
    GDAL's .aux.xml statistics file is not left behind (opening the layer computes statistics). Raises
    OSError when the raster cannot be opened or the style not written."""
    from osgeo import gdal

    pam = gdal.GetConfigOption("GDAL_PAM_ENABLED")
    gdal.SetConfigOption("GDAL_PAM_ENABLED", "NO")
    try:
        layer = QgsRasterLayer(path, os.path.basename(path), "gdal")
        if not layer.isValid():
            raise OSError(f"cannot open {path} to write its style")
        renderer = renderer_fn(layer)
        if renderer is None:
            return None
        apply_renderer(layer, renderer)
        qml = sidecar_path(path)
        message, saved = layer.saveNamedStyle(qml, categories=QgsMapLayer.Symbology)
        if not saved:
            raise OSError(f"cannot write the style {qml}: {message}")
        return qml
    finally:
        layer = None  # closes the dataset while GDAL still writes no .aux.xml
        gdal.SetConfigOption("GDAL_PAM_ENABLED", pam)


class StyleOnLoad(QgsProcessingLayerPostProcessorInterface):
    """Applies a renderer to an output layer once Processing has loaded it into the project."""

    def __init__(self, renderer_fn: RendererFn) -> None:
        super().__init__()
        self.renderer_fn = renderer_fn

    def postProcessLayer(self, layer: QgsMapLayer, context: QgsProcessingContext,  # noqa: N802 (QGIS API)
                         feedback: QgsProcessingFeedback) -> None:
        if isinstance(layer, QgsRasterLayer):
            apply_renderer(layer, self.renderer_fn(layer))
            layer.triggerRepaint()
        elif isinstance(layer, QgsVectorLayer):
            layer.setRenderer(self.renderer_fn(layer))
            layer.triggerRepaint()


# QGIS calls the post-processor after the algorithm object is gone, and PyQGIS does not keep the
# Python half of a subclass alive for C++ (the documented trap), so one is kept per output path,
# replaced when that path is written again.
_POST_PROCESSORS: Dict[str, StyleOnLoad] = {}


def style_on_completion(context: QgsProcessingContext, path: str, renderer_fn: RendererFn, name: str) -> None:
    """When ``path`` is to be loaded on completion, name its layer ``name`` and style it there."""
    if not context.willLoadLayerOnCompletion(path):
        return
    details = context.layerToLoadOnCompletionDetails(path)
    details.name = name
    _POST_PROCESSORS[path] = StyleOnLoad(renderer_fn)
    details.setPostProcessor(_POST_PROCESSORS[path])


def suggestion_renderer(layer: QgsVectorLayer, ids: Sequence[int], names: Sequence[str],
                        colors: Sequence[Sequence[int]]) -> QgsCategorizedSymbolRenderer:
    """Suggested locations as stars in the colour of their predicted class, one legend entry per class."""
    categories = []
    for class_id, name, (r, g, b) in zip(ids, names, colors):
        symbol = QgsMarkerSymbol.createSimple({"name": "star", "color": f"{r},{g},{b},255", "size": "4.5",
                                               "outline_color": "0,0,0,255", "outline_width": "0.3"})
        categories.append(QgsRendererCategory(int(class_id), symbol, f"suggested: {name}"))
    return QgsCategorizedSymbolRenderer("predicted_id", categories)
