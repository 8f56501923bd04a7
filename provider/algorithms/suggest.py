"""Processing algorithm ``cssmamba:suggest``: where to draw the next ROIs.

A thin adapter over ``engine.suggest.suggest_file``: the model classifies the raster, the points where it
hesitates most go to a GeoPackage, loaded as stars in the colour of their predicted class.
"""

from functools import partial

from qgis.core import (
    QgsProcessing,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorDestination,
)

from ..algorithm import CSSMambaAlgorithm, engine_callbacks, engine_run
from ..styling import style_on_completion, suggestion_renderer
from .classify import DEVICES, MODEL_FILTER, advanced, device_parameter, raster_file


class SuggestAlgorithm(CSSMambaAlgorithm):
    ALGORITHM_ID = "suggest"
    DISPLAY_NAME = "Suggest training areas"
    GROUP = "Training data"
    GROUP_ID = "trainingdata"
    HELP = (
        "Tells you where a new ROI would help the model most: it classifies the raster with a trained model and "
        "marks the places where the model hesitates between two classes (and class or cluster borders), spread "
        "over the scene and over the classes, away from the ROIs you already have. Each point says what the "
        "model predicts there, the runner-up and why it was chosen.\n\n"
        "Label the points (look at the image there, fill in class_id, or draw a polygon around the spot), add "
        "them to your ROIs and train again: a few well-placed pixels are worth many easy ones.\n"
        "Existing ROIs (optional): no suggestion lies near them.\n"
        "Number of suggestions: how many points.\n"
        "Least distance in pixels (advanced): between two suggestions; 0 = from the size of the scene and the "
        "number of suggestions. Near the ROIs the half of it is kept."
    )

    INPUT, MODEL, ROIS, CLASS_FIELD, COUNT = "INPUT", "MODEL", "ROIS", "CLASS_FIELD", "COUNT"
    MIN_DISTANCE, DEVICE, OUTPUT = "MIN_DISTANCE", "DEVICE", "OUTPUT"

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Raster")))
        self.addParameter(QgsProcessingParameterFile(
            self.MODEL, self.tr("Model file"), QgsProcessingParameterFile.File, fileFilter=self.tr(MODEL_FILTER)))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.ROIS, self.tr("Existing ROIs"), [QgsProcessing.TypeVectorPolygon, QgsProcessing.TypeVectorPoint],
            optional=True))
        self.addParameter(QgsProcessingParameterField(
            self.CLASS_FIELD, self.tr("Class id field"), "class_id", self.ROIS, QgsProcessingParameterField.Numeric,
            optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.COUNT, self.tr("Number of suggestions"), QgsProcessingParameterNumber.Integer, 20, minValue=1))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            self.MIN_DISTANCE, self.tr("Least distance in pixels (0 = from the scene)"),
            QgsProcessingParameterNumber.Double, 0.0, minValue=0.0)))
        self.addParameter(device_parameter(self, self.DEVICE))
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.OUTPUT, self.tr("Suggested training areas"), QgsProcessing.TypeVectorPoint))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        from ...engine.modelfile import load_model
        from ...engine.inference.predict import PredictionCancelled
        from ...engine.suggest import suggest_file

        raster, layer_name = raster_file(self, parameters, self.INPUT, context)
        model = self.parameterAsFile(parameters, self.MODEL, context)
        out = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        rois = self.vector_file(parameters, self.ROIS, context, feedback) \
            if self.parameterAsSource(parameters, self.ROIS, context) is not None else None
        progress, cancelled = engine_callbacks(feedback)
        with engine_run(feedback):
            _, metadata = load_model(model)
            try:
                result = suggest_file(model, raster, out, n=self.parameterAsInt(parameters, self.COUNT, context),
                                      rois=rois, class_field=self.parameterAsString(parameters, self.CLASS_FIELD,
                                                                                    context) or None,
                                      min_distance=self.parameterAsDouble(parameters, self.MIN_DISTANCE, context)
                                      or None,
                                      device=DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
                                      progress=progress, cancelled=cancelled)
            except PredictionCancelled:
                feedback.pushWarning(self.tr("Cancelled; no suggestion layer was written."))
                return {}
        for record in result["suggestions"]:
            feedback.pushInfo(f"{record['rank']}. {record['reason']}")
        classes = metadata["classes"]
        self._style = partial(suggestion_renderer, ids=classes["ids"], names=classes["names"],
                              colors=classes["colors"])
        self._output, self._name = out, self.tr("{} suggested training areas").format(layer_name)
        return {self.OUTPUT: out}

    def postProcessAlgorithm(self, context, feedback):  # noqa: N802 (QGIS API)
        if getattr(self, "_output", None):
            style_on_completion(context, self._output, self._style, self._name)
        return {}
