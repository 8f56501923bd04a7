"""Processing algorithm ``cssmamba:compare``: several models on the same ROIs and split, one report.

A thin adapter over ``engine.compare.compare_models``: the chosen models train one after the other
(the progress bar runs across them, a cancel stops the model in progress), the report and every
model's class map go to the output folder, and the class maps are loaded styled with the class colours.
"""

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)

from ..algorithm import CSSMambaAlgorithm, engine_callbacks, engine_run
from .classify import DEVICES, StylesOnCompletion, advanced, device_parameter, raster_file, write_styles
from .train import SPLITS, roi_parameters, split_parameter, training_rois

MODELS = ("rf", "svm", "mambahsi", "cssmamba")
MODEL_LABELS = ("Random forest (500 trees)", "SVM (RBF kernel)", "MambaHSI", "CSSMamba")


class CompareAlgorithm(StylesOnCompletion, CSSMambaAlgorithm):
    ALGORITHM_ID = "compare"
    DISPLAY_NAME = "Compare models"
    GROUP = "Training"
    GROUP_ID = "training"
    HELP = (
        "Trains several classifiers on the same training ROIs and the same split, classifies the raster with "
        "each, and writes one HTML report: overall accuracy, average accuracy and kappa with the training and "
        "classification times, the accuracy of every class, the class maps side by side and each model's "
        "confusion matrix. The class maps are loaded, styled with the class colours.\n\n"
        "Models: at least two; by default the random forest and the SVM that analysts know, MambaHSI and "
        "CSSMamba. The classical ones fit in seconds; the deep ones take the time 'Train CSSMamba' takes.\n"
        "Epochs (deep models): as in 'Train CSSMamba'.\n"
        "Sample split: 'Auto' tests on ROIs that no model trained on when every class has at least 3 separate "
        "ROIs, else on random pixels; the report says which.\n"
        "Output folder: the report (compare.html), every model file (model.pt) and class map "
        "(model_classes.tif), ready for 'Classify raster'. Cancel stops the model in progress; the models "
        "finished before it stay, and no report is written."
    )

    INPUT, MODELS, EPOCHS, SPLIT, SEED, DEVICE = "INPUT", "MODELS", "EPOCHS", "SPLIT", "SEED", "DEVICE"
    OUTPUT_FOLDER, OUTPUT_REPORT, BEST_OA = "OUTPUT_FOLDER", "OUTPUT_REPORT", "BEST_OVERALL_ACCURACY"

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        integer = QgsProcessingParameterNumber.Integer
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Raster")))
        for parameter in roi_parameters(self)[:3]:
            self.addParameter(parameter)
        self.addParameter(QgsProcessingParameterEnum(
            self.MODELS, self.tr("Models"), options=[self.tr(label) for label in MODEL_LABELS], allowMultiple=True,
            defaultValue=list(range(len(MODELS)))))
        self.addParameter(QgsProcessingParameterNumber(
            self.EPOCHS, self.tr("Epochs (deep models)"), integer, 200, minValue=1))
        self.addParameter(split_parameter(self, self.SPLIT, self.tr("Sample split")))
        self.addParameter(advanced(QgsProcessingParameterNumber(self.SEED, self.tr("Random seed"), integer, 0,
                                                                minValue=0)))
        self.addParameter(device_parameter(self, self.DEVICE))
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT_FOLDER, self.tr("Output folder")))
        self.addOutput(QgsProcessingOutputFile(self.OUTPUT_REPORT, self.tr("Comparison report")))
        self.addOutput(QgsProcessingOutputNumber(self.BEST_OA, self.tr("Best overall accuracy")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        from ...engine.compare import compare_models
        from ...engine.pipeline import SplitOptions
        from ...engine.inference.predict import PredictionCancelled
        from ...engine.training.train import TrainingCancelled

        raster, layer_name = raster_file(self, parameters, self.INPUT, context)
        rois = training_rois(self, parameters, context, feedback)
        models = [MODELS[k] for k in self.parameterAsEnums(parameters, self.MODELS, context)]
        folder = self.parameterAsString(parameters, self.OUTPUT_FOLDER, context)
        progress, cancelled = engine_callbacks(feedback)
        with engine_run(feedback):
            try:
                comparison = compare_models(
                    raster, folder, models=models, rois=rois.rois, class_field=rois.class_field,
                    name_field=rois.name_field, split=SplitOptions(mode=SPLITS[self.parameterAsEnum(
                        parameters, self.SPLIT, context)]),
                    seed=self.parameterAsInt(parameters, self.SEED, context),
                    epochs=self.parameterAsInt(parameters, self.EPOCHS, context),
                    device=DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
                    class_style=rois.class_style, progress=progress, cancelled=cancelled)
            except (TrainingCancelled, PredictionCancelled):
                feedback.pushWarning(self.tr("Comparison cancelled: the models finished before stay in the output "
                                             "folder; no report was written."))
                return {}
            styled = []
            for row in comparison["models"]:
                metadata = {"classes": row["classes"], "model": {"config": row["config"]}}
                name = f"{layer_name} {row['model']}"
                styled += write_styles({"classes": row["class_map"]}, metadata, name, {"classes": self.tr("classes")})
                context.addLayerToLoadOnCompletion(row["class_map"], QgsProcessingContext.LayerDetails(
                    f"{name} {self.tr('classes')}", context.project(), f"{name} classes"))
                m = row["metrics"]
                feedback.pushInfo(self.tr("{}: OA {:.2f} %, AA {:.2f} %, kappa {:.4f}; trained in {:.1f} s, "
                                          "classified in {:.1f} s").format(
                    row["model"], 100 * m["overall_accuracy"], 100 * m["average_accuracy"], m["kappa"],
                    row["train_seconds"], row["predict_seconds"]))
            self._styled = tuple(styled)
        best = max(row["metrics"]["overall_accuracy"] for row in comparison["models"])
        return {self.OUTPUT_FOLDER: folder, self.OUTPUT_REPORT: comparison["report"], self.BEST_OA: best}
