"""Processing algorithm ``cssmamba:createroilayer``: an empty, styled GeoPackage to digitise training ROIs in.

The layer is what ``cssmamba:train`` reads: polygons in the raster's CRS with an integer ``class_id``
and a text ``class_name``. Its style (categories per class, a class drop-down in the attribute form,
the name filled in from the id) is saved as the default style inside the GeoPackage, so it survives
reopening the file in any project, and is applied when Processing loads the result.
"""

import os
import re
from typing import Callable, Dict, List, Tuple

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsDefaultValue,
    QgsEditorWidgetSetup,
    QgsExpression,
    QgsField,
    QgsFields,
    QgsFillSymbol,
    QgsMapLayer,
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
    QgsRendererCategory,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from ..algorithm import CSSMambaAlgorithm

ClassList = List[Tuple[int, str]]
Color = Tuple[int, int, int]

CLASS_FIELD, NAME_FIELD = "class_id", "class_name"
OTHER_COLOR: Color = (150, 150, 150)  # the catch-all category: ids not (yet) in the class list
_ID_AND_NAME = re.compile(r"(\d+)(?:\s*[:,;=]\s*|\s+)(.*)")


def parse_class_list(text: str) -> ClassList:
    """Classes [(id, name)] from one class per line: ``1 water``, ``1: water``, ``1,water``, ``1`` (named
    "class 1"), or names only (numbered 1..n in line order). Blank lines are skipped.

    Either every line starts with an id or none does, so that a name beginning with a digit is never
    half-read as an id. ValueError names the offending line and the accepted forms.
    """
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return []
    for line in lines:
        if re.match(r"-\d", line) or re.fullmatch(r"0+(?:\D.*)?", line):
            raise ValueError(f'class line "{line}": class ids must be 1 or more (0 means unlabelled)')
    parsed = [_ID_AND_NAME.fullmatch(line) or re.fullmatch(r"(\d+)()", line) for line in lines]
    if not any(parsed):
        return [(k + 1, name) for k, name in enumerate(lines)]
    missing = [line for line, match in zip(lines, parsed) if match is None]
    if missing:
        raise ValueError(f'class line "{missing[0]}" has no class id while others have one: start every line with '
                         'its id ("1 water", "1: water" or "1,water") or give names only (numbered 1..n)')
    classes = [(int(match.group(1)), match.group(2).strip() or f"class {int(match.group(1))}") for match in parsed]
    ids = [cid for cid, _ in classes]
    duplicates = sorted({cid for cid in ids if ids.count(cid) > 1})
    if duplicates:
        raise ValueError(f"class id {duplicates[0]} is given more than once in the class list; give each class "
                         "its own id")
    return classes


def _symbol(color: Color) -> QgsFillSymbol:
    """Half-transparent fill with a solid outline: the raster stays visible under the ROIs."""
    r, g, b = color
    return QgsFillSymbol.createSimple({"color": f"{r},{g},{b},110", "outline_color": f"{r},{g},{b},255",
                                       "outline_width": "0.5"})


def style_roi_layer(layer: QgsVectorLayer, classes: ClassList, color_of: Callable[[int], Color]) -> None:
    """Categories per class on ``class_id`` (labels = class names) plus a catch-all for other ids, so a
    feature never disappears; with a class list also a class drop-down on ``class_id`` and ``class_name``
    filled in from the id (re-evaluated when the id changes, names of unlisted ids left as typed)."""
    categories = [QgsRendererCategory(cid, _symbol(color_of(cid)), name) for cid, name in classes]
    categories.append(QgsRendererCategory("", _symbol(OTHER_COLOR), "other class ids" if classes else "ROIs"))
    layer.setRenderer(QgsCategorizedSymbolRenderer(CLASS_FIELD, categories))
    id_index, name_index = layer.fields().indexOf(CLASS_FIELD), layer.fields().indexOf(NAME_FIELD)
    if not classes:
        return
    choices = [{f"{cid} {name}": str(cid)} for cid, name in classes]
    layer.setEditorWidgetSetup(id_index, QgsEditorWidgetSetup("ValueMap", {"map": choices}))
    cases = " ".join(f'WHEN "{CLASS_FIELD}" = {cid} THEN {QgsExpression.quotedString(name)}' for cid, name in classes)
    layer.setDefaultValueDefinition(name_index, QgsDefaultValue(f'CASE {cases} ELSE "{NAME_FIELD}" END', True))


class _LoadDefaultStyle(QgsProcessingLayerPostProcessorInterface):
    """Applies the style stored in the GeoPackage when Processing adds the layer to the project
    (Processing opens result layers without their default style) and starts editing it, since drawing
    ROIs is the next thing to do with it."""

    def postProcessLayer(self, layer: QgsMapLayer, context: QgsProcessingContext,  # noqa: N802 (QGIS API)
                         feedback: QgsProcessingFeedback) -> None:
        message, ok = layer.loadDefaultStyle()
        if not ok:
            feedback.pushWarning(f"the ROI layer's style could not be loaded from its GeoPackage: {message}")
        layer.triggerRepaint()
        if not layer.startEditing():
            feedback.pushWarning("the ROI layer could not be switched to editing mode; toggle editing yourself")


# Processing holds post-processors by raw pointer: keep each alive (one per output path) after the
# algorithm object is gone, until the results are loaded.
_POST_PROCESSORS: Dict[str, _LoadDefaultStyle] = {}


class CreateRoiLayerAlgorithm(CSSMambaAlgorithm):
    ALGORITHM_ID = "createroilayer"
    DISPLAY_NAME = "Create training ROI layer"
    GROUP = "Training data"
    GROUP_ID = "trainingdata"
    NEEDS_TORCH = False
    HELP = (
        "Creates an empty GeoPackage polygon layer for drawing training regions (ROIs) over a raster, ready "
        "for 'Train CSSMamba': fields class_id (integer, the class) and class_name (text), in the raster's "
        "CRS, styled by class and added to the project in editing mode: draw polygons over pixels of known "
        "class, pick their class and save the edits.\n\n"
        "Raster to draw ROIs on: the layer gets its CRS.\n"
        "Classes (optional): one class per line, as '1 water', '1: water' or '1,water' (id and name), or "
        "names only ('water'), numbered 1, 2, 3 … in line order. Class ids are whole numbers from 1 (0 means "
        "unlabelled). Each class gets a colour and an entry in the class drop-down of the attribute form, and "
        "class_name is filled in from class_id. Without a list, type the ids yourself; every feature is drawn "
        "in grey until the style is reclassified (Layer Properties > Symbology > Classify).\n"
        "Training ROI layer: the GeoPackage (.gpkg) to write; its style is saved inside it, so it comes back "
        "whenever the file is opened."
    )

    INPUT, CLASSES, OUTPUT = "INPUT", "CLASSES", "OUTPUT"

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Raster to draw ROIs on")))
        self.addParameter(QgsProcessingParameterString(
            self.CLASSES, self.tr("Classes (one per line: '1 water', or names only)"), multiLine=True, optional=True))
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.OUTPUT, self.tr("Training ROI layer"), QgsProcessing.TypeVectorPolygon))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        from ...engine.data.labels import default_color

        raster = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        try:
            classes = parse_class_list(self.parameterAsString(parameters, self.CLASSES, context))
        except ValueError as exc:
            raise QgsProcessingException(str(exc)) from exc
        path = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        if os.path.splitext(path)[1].lower() != ".gpkg":
            raise QgsProcessingException(self.tr(
                "The ROI layer is written as a GeoPackage, which keeps its style inside the file, but {} is "
                "not a .gpkg file name; give a file name ending in .gpkg").format(path))
        crs = raster.crs()
        if not crs.isValid():
            feedback.pushWarning(self.tr("The raster {} has no CRS; draw the ROIs on its pixel grid "
                                         "(x = column, y = -row), as the training reads them that way").format(
                raster.source()))
        layer = self._write_layer(path, crs, context)
        style_roi_layer(layer, classes, default_color)
        problem = layer.saveStyleToDatabase(layer.name(), "training ROI classes (cssmamba)", True, "")
        if problem:
            raise QgsProcessingException(self.tr("Cannot save the style into {}: {}").format(path, problem))
        for cid, name in classes:
            feedback.pushInfo(self.tr("class {}: {}").format(cid, name))
        feedback.pushInfo(self.tr("ROI layer written to {} ({})").format(path, crs.authid() or self.tr("no CRS")))
        if context.willLoadLayerOnCompletion(path):
            _POST_PROCESSORS[path] = _LoadDefaultStyle()
            context.layerToLoadOnCompletionDetails(path).setPostProcessor(_POST_PROCESSORS[path])
        return {self.OUTPUT: path}

    def _write_layer(self, path: str, crs: QgsCoordinateReferenceSystem,
                     context: QgsProcessingContext) -> QgsVectorLayer:
        """Create the GeoPackage (replacing an existing file, as QGIS outputs do) and open its layer."""
        fields = QgsFields()
        fields.append(QgsField(CLASS_FIELD, QVariant.Int))
        fields.append(QgsField(NAME_FIELD, QVariant.String))
        options = QgsVectorFileWriter.SaveVectorOptions()
        options.driverName = "GPKG"
        options.layerName = os.path.splitext(os.path.basename(path))[0]
        writer = QgsVectorFileWriter.create(path, fields, QgsWkbTypes.Polygon, crs, context.transformContext(),
                                            options)
        error = writer.errorMessage() if writer.hasError() else ""
        del writer  # closes the file
        if error:
            raise QgsProcessingException(self.tr("Cannot write the ROI layer {}: {}; choose a writable folder "
                                                 "and a file that is not open elsewhere").format(path, error))
        layer = QgsVectorLayer(f"{path}|layername={options.layerName}", options.layerName, "ogr")
        if not layer.isValid():
            raise QgsProcessingException(self.tr("The ROI layer {} was written but cannot be opened again").format(
                path))
        return layer
