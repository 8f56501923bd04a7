"""Processing algorithm ``cssmamba:classify``: apply a model file to a raster, outputs styled on loading.

The helpers below are shared with ``cssmamba:train`` and ``cssmamba:trainmultimodal``, whose optional
classification of the training scene is this algorithm's job done in the same run.
"""

import os
from functools import partial
from typing import Any, Dict, List, Tuple

from qgis.core import (
    QgsMapLayer,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterBand,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..algorithm import CSSMambaAlgorithm, engine_callbacks, engine_run
from ..styling import (
    RendererFn,
    class_renderer,
    cluster_renderer,
    probability_renderer,
    style_on_completion,
    write_qml_sidecar,
)

DEVICES = ("auto", "cpu", "cuda")
MODEL_EXTENSION = "pt"  # what the engine's CLI writes (engine/cli.py)
MODEL_FILTER = f"CSSMamba model (*.{MODEL_EXTENSION})"
GEOTIFF_EXTENSIONS = (".tif", ".tiff")


def device_parameter(alg: CSSMambaAlgorithm, name: str) -> QgsProcessingParameterEnum:
    return QgsProcessingParameterEnum(name, alg.tr("Device"), options=[alg.tr("Auto"), alg.tr("CPU"), alg.tr("CUDA")],
                                      defaultValue=0)


def advanced(parameter: QgsProcessingParameterDefinition) -> QgsProcessingParameterDefinition:
    parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    return parameter


def raster_file(alg: QgsProcessingAlgorithm, parameters: Dict[str, Any], name: str,
                context: QgsProcessingContext) -> Tuple[str, str]:
    """(file path, layer name) of a raster parameter; the engine reads files through GDAL, so a layer
    from another provider (WMS, PostGIS raster, …) is refused with the way out."""
    layer = alg.parameterAsRasterLayer(parameters, name, context)
    if layer is None:
        raise QgsProcessingException(alg.tr("{}: the raster layer cannot be opened; choose a raster file").format(name))
    return _gdal_source(alg, layer, name), layer.name()


def raster_files(alg: QgsProcessingAlgorithm, parameters: Dict[str, Any], name: str,
                 context: QgsProcessingContext) -> List[str]:
    """The file paths of a multiple-raster parameter, in the order given (empty when unset)."""
    return [_gdal_source(alg, layer, name) for layer in alg.parameterAsLayerList(parameters, name, context)]


def _gdal_source(alg: QgsProcessingAlgorithm, layer: QgsMapLayer, name: str) -> str:
    if layer.providerType() != "gdal":
        raise QgsProcessingException(alg.tr(
            "{}: the layer '{}' comes from the '{}' provider, not from a file; save it as a GeoTIFF first "
            "(Raster ▸ Conversion ▸ Translate) and use that file").format(name, layer.name(), layer.providerType()))
    return layer.source()


def geotiff_output(alg: QgsProcessingAlgorithm, parameters: Dict[str, Any], name: str,
                   context: QgsProcessingContext) -> str:
    """The path of a raster destination ("" when skipped); the engine writes GeoTIFF only."""
    path = alg.parameterAsOutputLayer(parameters, name, context)
    if path and os.path.splitext(path)[1].lower() not in GEOTIFF_EXTENSIONS:
        raise QgsProcessingException(alg.tr(
            "{}: the outputs are written as GeoTIFF; give a file name ending in .tif (got {})").format(name, path))
    return path or ""


def clusters_per_class(metadata: Dict[str, Any]) -> int:
    """K of a model that clusters (CSSMamba); 0 for a model without clusters (MambaHSI)."""
    return int(metadata["model"]["config"].get("clusters_per_class") or 0)


def output_styles(metadata: Dict[str, Any]) -> Dict[str, RendererFn]:
    """Renderer functions by output kind ('classes', 'confidence', 'clusters', 'probabilities', and the
    cleaned class maps 'sieved' and 'majority'), from the model metadata."""
    classes = metadata["classes"]
    class_style = partial(class_renderer, ids=classes["ids"], names=classes["names"], colors=classes["colors"])
    styles: Dict[str, RendererFn] = {
        "classes": class_style, "sieved": class_style, "majority": class_style,
        "confidence": probability_renderer,
        "probabilities": probability_renderer,
    }
    k = clusters_per_class(metadata)
    if k:
        styles["clusters"] = partial(cluster_renderer, n=k * len(classes["ids"]), class_names=classes["names"])
    return styles


def write_styles(written: Dict[str, str], metadata: Dict[str, Any], layer_name: str,
                 labels: Dict[str, str]) -> List[Tuple[str, RendererFn, str]]:
    """Write the ``.qml`` sidecar of every styled output; returns (path, renderer, layer name) for
    ``style_on_completion``. ``labels``: the layer-name suffix of each output kind."""
    styles = output_styles(metadata)
    styled = []
    for kind, path in written.items():
        if kind in styles:
            write_qml_sidecar(path, styles[kind])
            styled.append((path, styles[kind], f"{layer_name} {labels[kind]}"))
    return styled


def _aux_listing(metadata: Dict[str, Any]) -> str:
    """The auxiliary rasters a multi-modal model was trained with, numbered in the training order."""
    return "; ".join(f"{k}. {m['name']} ({m['bands']} band{'s' if m['bands'] != 1 else ''})"
                     for k, m in enumerate(metadata["modalities"][1:], start=1))


class StylesOnCompletion:
    """Mixin of the algorithms that write styled rasters: ``processAlgorithm`` sets ``_styled`` to
    (path, renderer, layer name) tuples, and the styles go to the layers Processing loads."""

    _styled: Tuple[Tuple[str, RendererFn, str], ...] = ()

    def postProcessAlgorithm(self, context: QgsProcessingContext,  # noqa: N802 (QGIS API)
                             feedback: QgsProcessingFeedback) -> Dict[str, Any]:
        """Main thread, after processAlgorithm: hand the styles to the layers about to be loaded."""
        for path, renderer_fn, name in self._styled:
            style_on_completion(context, path, renderer_fn, name)
        return {}


class ClassifyAlgorithm(StylesOnCompletion, CSSMambaAlgorithm):
    ALGORITHM_ID = "classify"
    DISPLAY_NAME = "Classify raster"
    GROUP = "Classification"
    GROUP_ID = "classification"
    HELP = (
        "Classifies a raster with a model trained by 'Train CSSMamba' or 'Train M3amba (multi-modal)'. The "
        "raster is read and written tile by tile, so it may be far larger than memory. The outputs lie on the "
        "raster's grid (GeoTIFF) and are loaded styled; each also gets a .qml style file of the same name, so "
        "the style survives reopening.\n\n"
        "Raster to classify: it needs the bands the model was trained on (same count and wavelengths).\n"
        "Model file: a .pt file written by 'Train CSSMamba' or 'Train M3amba (multi-modal)'.\n"
        "Auxiliary rasters: only for a multi-modal model: the same kinds of rasters (LiDAR, SAR) in the same "
        "order as in training.\n"
        "Device: Auto uses the GPU when PyTorch sees one, else the CPU.\n"
        "Bands to read (advanced): only for a raster with another number of bands than the training raster "
        "and no wavelengths to find the model's bands by; such a raster is otherwise refused.\n"
        "Tile size, Tile overlap (advanced): smaller tiles need less memory; the overlap hides tile edges. 0 "
        "= the tiles the model was trained on, else the defaults. Multi-modal models ignore both.\n"
        "Classes: the class map (0 = nodata) with the model's class names and colours.\n"
        "Confidence: the winning class's probability, 0–1; low values show where the model hesitates, often "
        "at class boundaries.\n"
        "Clusters: CSSMamba's cluster map (the sub-class clusters the pixels joined), to inspect boundaries; "
        "MambaHSI and M3amba models have none.\n"
        "Class probabilities (optional): one band per class.\n"
        "Classes, minimum mapping unit (optional): the class map with every patch smaller than 'Minimum mapping "
        "unit' pixels merged into its largest neighbour (GDAL's sieve filter; 'Connectedness' 8 joins pixels "
        "that touch at a corner, 4 only along an edge), as maps are delivered.\n"
        "Classes, majority filtered (optional): every pixel gets the most frequent class of its 'Majority window' "
        "neighbourhood, which removes single pixels and smooths borders.\n"
        "Both keep the unclassified pixels and the class colours; the class map itself stays as predicted."
    )

    INPUT, MODEL, AUX_RASTERS, DEVICE, BANDS = "INPUT", "MODEL", "AUX_RASTERS", "DEVICE", "BANDS"
    TILE_SIZE, OVERLAP = "TILE_SIZE", "OVERLAP"
    MIN_MAPPING_UNIT, CONNECTEDNESS, MAJORITY_WINDOW = "MIN_MAPPING_UNIT", "CONNECTEDNESS", "MAJORITY_WINDOW"
    OUTPUT, OUTPUT_CONFIDENCE = "OUTPUT", "OUTPUT_CONFIDENCE"
    OUTPUT_CLUSTERS, OUTPUT_PROBABILITIES = "OUTPUT_CLUSTERS", "OUTPUT_PROBABILITIES"
    OUTPUT_SIEVED, OUTPUT_MAJORITY = "OUTPUT_SIEVED", "OUTPUT_MAJORITY"
    OUTPUTS = {"classes": OUTPUT, "confidence": OUTPUT_CONFIDENCE, "clusters": OUTPUT_CLUSTERS,
               "probabilities": OUTPUT_PROBABILITIES}
    CLEANED = {"sieved": OUTPUT_SIEVED, "majority": OUTPUT_MAJORITY}

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        integer = QgsProcessingParameterNumber.Integer
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Raster to classify")))
        self.addParameter(QgsProcessingParameterFile(
            self.MODEL, self.tr("Model file"), QgsProcessingParameterFile.File, fileFilter=self.tr(MODEL_FILTER)))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.AUX_RASTERS, self.tr("Auxiliary rasters of a multi-modal model (in the training order)"),
            QgsProcessing.TypeRaster, optional=True))
        self.addParameter(device_parameter(self, self.DEVICE))
        self.addParameter(advanced(QgsProcessingParameterBand(
            self.BANDS, self.tr("Bands to read, in the model's order (empty = as in training)"),
            parentLayerParameterName=self.INPUT, optional=True, allowMultiple=True)))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            self.TILE_SIZE, self.tr("Tile size in pixels (0 = default)"), integer, 0, minValue=0)))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            self.OVERLAP, self.tr("Tile overlap in pixels (0 = default)"), integer, 0, minValue=0)))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr("Classes")))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.OUTPUT_CONFIDENCE, self.tr("Confidence"), optional=True))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.OUTPUT_CLUSTERS, self.tr("Clusters"), optional=True))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            self.MIN_MAPPING_UNIT, self.tr("Minimum mapping unit in pixels"), integer, 9, minValue=2)))
        self.addParameter(advanced(QgsProcessingParameterEnum(
            self.CONNECTEDNESS, self.tr("Connectedness of a patch"),
            options=[self.tr("8 (edges and corners)"), self.tr("4 (edges only)")], defaultValue=0)))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            self.MAJORITY_WINDOW, self.tr("Majority window in pixels (odd)"), integer, 3, minValue=3)))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.OUTPUT_PROBABILITIES, self.tr("Class probabilities"), optional=True, createByDefault=False))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.OUTPUT_SIEVED, self.tr("Classes, minimum mapping unit"), optional=True, createByDefault=False))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.OUTPUT_MAJORITY, self.tr("Classes, majority filtered"), optional=True, createByDefault=False))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        from ...engine.modelfile import load_model
        from ...engine.pipeline import classify_file
        from ...engine.paths import check_distinct
        from ...engine.inference.postprocess import majority, sieve
        from ...engine.inference.predict import PredictionCancelled

        raster, layer_name = raster_file(self, parameters, self.INPUT, context)
        aux = raster_files(self, parameters, self.AUX_RASTERS, context)
        model_path = self.parameterAsFile(parameters, self.MODEL, context)
        paths = {kind: geotiff_output(self, parameters, name, context) for kind, name in self.OUTPUTS.items()}
        tiling = {"tile": self.parameterAsInt(parameters, self.TILE_SIZE, context) or None,
                  "overlap": self.parameterAsInt(parameters, self.OVERLAP, context) or None}
        device = DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)]
        bands = self.parameterAsInts(parameters, self.BANDS, context) or None
        cleaned = {kind: geotiff_output(self, parameters, name, context) for kind, name in self.CLEANED.items()}
        unit = self.parameterAsInt(parameters, self.MIN_MAPPING_UNIT, context)
        connectedness = (8, 4)[self.parameterAsEnum(parameters, self.CONNECTEDNESS, context)]
        window = self.parameterAsInt(parameters, self.MAJORITY_WINDOW, context)
        progress, cancelled = engine_callbacks(feedback)
        with engine_run(feedback):
            if cleaned["majority"] and window % 2 == 0:
                raise ValueError(f"the majority window must be an odd number of pixels (3, 5, 7 …), got {window}")
            check_distinct({"raster": raster, "model file": model_path},
                           {**{f"{kind} raster": path for kind, path in paths.items()},
                            **{f"{kind} class raster": path for kind, path in cleaned.items()}})
            _, metadata = load_model(model_path)
            multimodal = bool(metadata.get("modalities"))
            if multimodal:
                self._check_aux(metadata, aux, tiling, feedback)
            elif aux:
                feedback.pushWarning(self.tr(
                    "The {} model reads the hyperspectral raster only, so the {} raster(s) in AUX_RASTERS are "
                    "ignored; to use them, train a model with 'Train M3amba (multi-modal)'.").format(
                    metadata["model"]["name"], len(aux)))
            if paths["clusters"] and not clusters_per_class(metadata):
                feedback.pushInfo(self.tr("The {} model has no clustering, so there is no cluster map; "
                                          "OUTPUT_CLUSTERS is not written.").format(metadata["model"]["name"]))
                paths["clusters"] = ""
            feedback.pushInfo(self.tr("Model {}: {} classes ({})").format(
                metadata["model"]["name"], len(metadata["classes"]["ids"]), ", ".join(metadata["classes"]["names"])))
            outputs = {"confidence": paths["confidence"] or None, "probabilities": paths["probabilities"] or None}
            try:
                own = {"aux": aux} if multimodal else {"clusters": paths["clusters"] or None, **tiling}
                written = classify_file(model_path, raster, paths["classes"], device=device, bands=bands,
                                        progress=progress, cancelled=cancelled, **outputs, **own)
            except PredictionCancelled:
                feedback.pushWarning(self.tr("Classification cancelled; no output was written."))
                return {}
            if cleaned["sieved"]:
                written["sieved"] = sieve(written["classes"], cleaned["sieved"], unit, connectedness)
                feedback.pushInfo(self.tr("Patches under {} px ({}-connected) merged into their largest "
                                          "neighbour.").format(unit, connectedness))
            if cleaned["majority"]:
                written["majority"] = majority(written["classes"], cleaned["majority"], window)
                feedback.pushInfo(self.tr("Majority of every {0} x {0} px window.").format(window))
            labels = {"classes": self.tr("classes"), "confidence": self.tr("confidence"),
                      "clusters": self.tr("clusters"), "probabilities": self.tr("probabilities"),
                      "sieved": self.tr("classes, minimum mapping unit"),
                      "majority": self.tr("classes, majority filtered")}
            self._styled = tuple(write_styles(written, metadata, layer_name, labels))
        return {{**self.OUTPUTS, **self.CLEANED}[kind]: path for kind, path in written.items()}

    def _check_aux(self, metadata: Dict[str, Any], aux: List[str], tiling: Dict[str, Any],
                   feedback: QgsProcessingFeedback) -> None:
        """Refuse a multi-modal model's run before any work when AUX_RASTERS does not hold as many rasters
        as it was trained with (their bands the engine checks), and say that tiling does not apply."""
        name, expected = metadata["model"]["name"], len(metadata["modalities"]) - 1
        if not aux:
            raise QgsProcessingException(self.tr(
                "The {} model is multi-modal: besides the hyperspectral raster (INPUT) it needs {} auxiliary "
                "raster(s) in AUX_RASTERS, in the training order: {}. Add them to AUX_RASTERS.").format(
                name, expected, _aux_listing(metadata)))
        if len(aux) != expected:
            raise QgsProcessingException(self.tr(
                "AUX_RASTERS holds {} raster(s), but the {} model was trained with {} auxiliary raster(s), in this "
                "order: {}. Give the same kinds of rasters in the same order.").format(
                len(aux), name, expected, _aux_listing(metadata)))
        unused = [parameter for parameter, key in ((self.TILE_SIZE, "tile"), (self.OVERLAP, "overlap"))
                  if tiling[key]]
        if unused:
            feedback.pushWarning(self.tr("{}: not used by multi-modal models, which predict on overlapping crops "
                                         "of their own.").format(", ".join(unused)))
