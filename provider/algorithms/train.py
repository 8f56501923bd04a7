"""Processing algorithm ``cssmamba:train``: train CSSMamba or MambaHSI from a raster and training ROIs.

The ROI parameters, their checks, the training log lines and ``run_training`` (train, report, classify,
style) are module functions, shared with ``cssmamba:trainmultimodal``, which takes the same ROIs.
"""

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from qgis.core import (
    NULL,
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterBand,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..algorithm import CSSMambaAlgorithm, engine_callbacks, engine_run
from ..styling import roi_class_style
from .classify import (
    DEVICES,
    MODEL_EXTENSION,
    MODEL_FILTER,
    StylesOnCompletion,
    advanced,
    device_parameter,
    geotiff_output,
    raster_file,
    write_styles,
)

MODELS = ("cssmamba", "mambahsi", "rf", "svm")   # appended, so saved parameter sets keep their meaning
CLASSICAL = ("rf", "svm")
SPLITS = ("fixed", "ratio", "spatial", "auto")   # appended, so saved parameter sets keep their meaning
CLUSTER_LOSSES = ("la", "lb", "none")
GATES = ("sigmoid", "prior", "attention")
HEAD_KERNELS = (3, 5, 1)                         # the choices of "Head neighbourhood", in their order
TRAINING_WINDOW_MAX = 512  # engine.training.sampler.LABEL_TILE_RANGE[1], mirrored (no engine import here; tested)
CLASSIFY_SHARE = 0.9  # of the progress bar for training when the training scene is classified too
ROIS, CLASS_FIELD, NAME_FIELD, VALIDATION_ROIS = "ROIS", "CLASS_FIELD", "NAME_FIELD", "VALIDATION_ROIS"
ClassStyle = Dict[int, Tuple[Optional[str], Tuple[int, int, int]]]


def roi_parameters(alg: CSSMambaAlgorithm) -> List[QgsProcessingParameterDefinition]:
    """ROIS, CLASS_FIELD, NAME_FIELD and VALIDATION_ROIS, as every training algorithm takes them."""
    types = [QgsProcessing.TypeVectorPolygon, QgsProcessing.TypeVectorPoint]
    return [
        QgsProcessingParameterFeatureSource(ROIS, alg.tr("Training ROIs"), types),
        QgsProcessingParameterField(
            CLASS_FIELD, alg.tr("Class id field"), "class_id", ROIS, QgsProcessingParameterField.Numeric),
        QgsProcessingParameterField(NAME_FIELD, alg.tr("Class name field"), None, ROIS, optional=True),
        QgsProcessingParameterFeatureSource(VALIDATION_ROIS, alg.tr("Validation ROIs"), types, optional=True),
    ]


def split_parameter(alg: CSSMambaAlgorithm, name: str, label: str) -> QgsProcessingParameterEnum:
    """The sample split, one option per SPLITS mode, *Auto* by default (training and Compare models)."""
    return QgsProcessingParameterEnum(
        name, label, options=[alg.tr("Pixels per class"), alg.tr("Ratio"), alg.tr("Separate ROIs (spatial)"),
                              alg.tr("Auto (spatial with 3 separate ROIs per class)")],
        defaultValue=SPLITS.index("auto"))


@dataclass(frozen=True)
class TrainingRois:
    """The ROI parameters, checked: files the engine reads, the fields, the ROI layer's class style."""

    rois: str
    validation: str                 # "" without validation ROIs
    class_field: str
    name_field: Optional[str]
    class_style: ClassStyle         # {} when the ROI layer is not styled by category on the class field


def training_outputs(alg: CSSMambaAlgorithm) -> List[QgsProcessingParameterDefinition]:
    """The outputs both training algorithms write: model file, HTML report, optional classified scene."""
    return [
        QgsProcessingParameterFileDestination(alg.OUTPUT_MODEL, alg.tr("Model file"), alg.tr(MODEL_FILTER)),
        QgsProcessingParameterFileDestination(alg.OUTPUT_REPORT, alg.tr("Training report"),
                                              alg.tr("HTML files (*.html)"), optional=True),
        QgsProcessingParameterRasterDestination(alg.OUTPUT_CLASSIFICATION, alg.tr("Classified training scene"),
                                                optional=True, createByDefault=False),
    ]


def model_file_path(alg: CSSMambaAlgorithm, parameters: Dict[str, Any], context: QgsProcessingContext,
                    feedback: QgsProcessingFeedback) -> Tuple[str, str]:
    """(OUTPUT_MODEL as given, the path written): the .pt extension that 'Classify raster' (and its file
    filter in qgis_process) accepts is appended when the user gave another one, so the model can be used
    where it was written. The path as given is still checked against the inputs: a model aimed at the
    input raster is a mistake to report, not one to hide behind a new name."""
    given = alg.parameterAsFileOutput(parameters, alg.OUTPUT_MODEL, context)
    path = given
    if path and not path.lower().endswith(f".{MODEL_EXTENSION}"):
        path = f"{path}.{MODEL_EXTENSION}"
        feedback.pushInfo(alg.tr("The model file gets the extension .pt, which 'Classify raster' expects: {}")
                          .format(path))
    return given, path


def training_rois(alg: CSSMambaAlgorithm, parameters: Dict[str, Any], context: QgsProcessingContext,
                  feedback: QgsProcessingFeedback) -> TrainingRois:
    """Read and check the ROI parameters; the class colours (and names) come from the ROI layer's
    categorised style, so the class map looks like the ROIs the analyst drew."""
    class_field = alg.parameterAsString(parameters, CLASS_FIELD, context)
    name_field = alg.parameterAsString(parameters, NAME_FIELD, context) or None
    rois = roi_file(alg, parameters, ROIS, class_field, name_field, context, feedback)
    validation = roi_file(alg, parameters, VALIDATION_ROIS, class_field, None, context, feedback)
    class_style = roi_class_style(alg.vector_layer(parameters, ROIS, context), class_field)
    if class_style:
        feedback.pushInfo(alg.tr("Class colours{} taken from the categorised style of the ROI layer.").format(
            "" if name_field else alg.tr(" and names")))
    return TrainingRois(rois, validation, class_field, name_field, class_style)


def roi_file(alg: CSSMambaAlgorithm, parameters: Dict[str, Any], name: str, class_field: str,
             name_field: Optional[str], context: QgsProcessingContext, feedback: QgsProcessingFeedback) -> str:
    """A file the engine can read holding the ROI features ("" for an unset optional layer), after
    the checks QGIS can make better than the engine: fields present, class ids numeric, features
    present, at least two classes (training ROIs)."""
    source = alg.parameterAsSource(parameters, name, context)
    if source is None:
        return ""
    what = alg.tr("The training ROI layer") if name == ROIS else alg.tr("The validation ROI layer")
    fields = source.fields()
    listing = ", ".join(fields.names()) or alg.tr("(none)")
    for field, holding, parameter in ((class_field, alg.tr("class ids"), CLASS_FIELD),
                                      (name_field, alg.tr("class names"), NAME_FIELD)):
        if field and fields.lookupField(field) < 0:
            raise QgsProcessingException(alg.tr(
                "{} ({}) has no field '{}'; its fields: {}. Choose the field that holds the {} in {}.").format(
                what, name, field, listing, holding, parameter))
    index = fields.lookupField(class_field)
    if not fields.at(index).isNumeric():
        raise QgsProcessingException(alg.tr(
            "{} ({}): the class field '{}' holds {} values, not numbers; class ids must be integers >= 1. "
            "Choose a numeric field, or add one with the Field Calculator, e.g. to_int(\"{}\").").format(
            what, name, class_field, fields.at(index).typeName(), class_field))
    if source.featureCount() == 0:
        raise QgsProcessingException(alg.tr(
            "{} ({}) has no features (or none is selected while 'Selected features only' is on); digitise "
            "ROIs first, e.g. in a layer made by 'Create training ROI layer'.").format(what, name))
    ids = sorted(v for v in source.uniqueValues(index) if v != NULL)
    if not ids:
        raise QgsProcessingException(alg.tr(
            "{} ({}): every feature has NULL in the class field '{}'; fill in the class ids.").format(
            what, name, class_field))
    if name == ROIS and len(ids) < 2:
        raise QgsProcessingException(alg.tr(
            "{} ({}) has only one class (id {} in '{}'); a classifier needs at least two: digitise ROIs of "
            "the other classes too.").format(what, name, ids[0], class_field))
    return alg.vector_file(parameters, name, context, feedback)


def announce_device(alg: CSSMambaAlgorithm, device: str, feedback: QgsProcessingFeedback) -> None:
    """Log the device training runs on; Auto says when it fell back to the CPU. Raises ValueError
    (inside engine_run) for CUDA without a GPU before any data is read."""
    from ...engine.device import resolve_device

    resolved = resolve_device(device)
    fallback = device == "auto" and resolved.type == "cpu"
    feedback.pushInfo(alg.tr("Training device: {}").format(resolved)
                      + (alg.tr(" (Auto: PyTorch sees no CUDA GPU)") if fallback else ""))


def announce_result(alg: CSSMambaAlgorithm, metadata: Dict[str, Any], result: Any,
                    feedback: QgsProcessingFeedback) -> None:
    """One log line with how training went: device, scan backend, time, kept epoch, accuracy."""
    metrics = metadata["provenance"]["metrics"]
    feedback.pushInfo(alg.tr(
        "Trained on {} with the '{}' selective-scan backend in {:.1f} s; kept epoch {} (validation OA "
        "{:.4f}); {} OA {:.4f}, kappa {:.4f}").format(
        result.device, result.backend, result.seconds, result.best_epoch, result.best_val_oa,
        metadata["provenance"]["evaluated_on"], metrics["overall_accuracy"], metrics["kappa"]))


@dataclass
class TrainingJob:
    """What a training algorithm runs, read from its parameters: the one engine path (train_from_files,
    then classify_file for the optional classified scene) takes the same steps for every model."""

    raster: str
    layer_name: str
    sources: Dict[str, str]          # the input files no output may overwrite
    given_model_path: str            # OUTPUT_MODEL as the user gave it (checked against the inputs too)
    model_path: str
    report_path: str
    classification: str
    device: str
    validation_note: str             # logged when validation ROIs replace the split
    settings: Dict[str, Any]         # the run's settings; the report lists those that are set
    train: Dict[str, Any]            # train_from_files keywords other than those run_training passes itself
    classify: Dict[str, Any]         # (paths, ROIs and their fields, class style, device, outputs, callbacks)


def run_training(alg: CSSMambaAlgorithm, job: TrainingJob, rois: TrainingRois,
                 feedback: QgsProcessingFeedback) -> Dict[str, Any]:
    """Train, write the report, classify the training scene if asked and style it (``alg`` is also a
    StylesOnCompletion, which loads the styled outputs): the algorithm's outputs.
    A cancelled training writes no model; a cancelled classification keeps the model and the report."""
    from ...engine.paths import check_distinct
    from ...engine.pipeline import classify_file, train_from_files
    from ...engine.inference.predict import PredictionCancelled
    from ...engine.report import training_report_html, write_report
    from ...engine.training.train import TrainingCancelled

    progress, cancelled = engine_callbacks(feedback)
    share = CLASSIFY_SHARE if job.classification else 1.0
    with engine_run(feedback):
        check_distinct(job.sources, {"model file": job.given_model_path, "report": job.report_path,
                                     "classification": job.classification})
        announce_device(alg, job.device, feedback)
        if rois.validation:
            feedback.pushInfo(job.validation_note)
        try:
            metadata, result = train_from_files(
                job.raster, job.model_path, rois=rois.rois, class_field=rois.class_field, name_field=rois.name_field,
                device=job.device, class_style=rois.class_style,
                other_outputs={"report": job.report_path, "classification": job.classification},
                progress=lambda fraction, text="": progress(share * fraction, text), cancelled=cancelled, **job.train)
        except TrainingCancelled:
            feedback.pushWarning(alg.tr("Training cancelled; no model file was written."))
            return {}
        announce_result(alg, metadata, result, feedback)
        outputs = {alg.OUTPUT_MODEL: job.model_path}
        if job.report_path:
            shown = {key: value for key, value in job.settings.items() if value is not None}
            write_report(job.report_path, training_report_html(metadata, result.history, shown))
            outputs[alg.OUTPUT_REPORT] = job.report_path
        if not job.classification:
            return outputs
        try:
            written = classify_file(
                job.model_path, job.raster, job.classification, device=job.device,
                progress=lambda fraction, text="": progress(share + (1 - share) * fraction, text),
                cancelled=cancelled, **job.classify)
        except PredictionCancelled:
            feedback.pushWarning(alg.tr("Classification of the training scene cancelled; the model and the "
                                        "report were kept: classify later with 'Classify raster'."))
            return outputs
        alg._styled = tuple(write_styles(written, metadata, job.layer_name, {"classes": alg.tr("classes")}))
    outputs[alg.OUTPUT_CLASSIFICATION] = job.classification
    return outputs


class TrainAlgorithm(StylesOnCompletion, CSSMambaAlgorithm):
    ALGORITHM_ID = "train"
    DISPLAY_NAME = "Train CSSMamba"
    GROUP = "Training"
    GROUP_ID = "training"
    HELP = (
        "Trains a pixel classifier on a raster from training ROIs and writes a model file for 'Classify "
        "raster', an HTML training report and, optionally, the classified training scene.\n\n"
        "Raster: the raster to learn from (e.g. a hyperspectral scene); bad bands (bbl=0) and nodata are left "
        "out.\n"
        "Bands: optional subset of bands to train on; the model remembers them.\n"
        "Training ROIs: polygons or points in any CRS; the pixels whose centres they cover are the labels. "
        "'Selected features only' and unsaved edits are honoured.\n"
        "Class id field: numeric field with the class ids (whole numbers from 1); features with NULL are "
        "skipped.\n"
        "Class name field (optional): text field with the class names for the legend and the report.\n"
        "Validation ROIs (optional): ROIs with the same class field that choose the best epoch; every "
        "training ROI pixel then trains.\n"
        "Model: CSSMamba (clustering-guided Mamba), MambaHSI (the baseline without clustering), or the classical "
        "baselines random forest (500 trees) and SVM (RBF kernel), fitted in seconds on the same bands, ROIs and "
        "split and tuned on the validation pixels; the settings of the deep models do not apply to them.\n"
        "Clusters per class: CSSMamba's sub-clusters of each class.\n"
        "Epochs: passes over the scene; the epoch with the best validation accuracy is kept.\n"
        "Learning rate: Adam's step size.\n"
        "Device: Auto uses the GPU when PyTorch sees one, else the CPU.\n"
        "Random seed: the same seed gives the same split and the same model.\n"
        "Sample split without validation ROIs (advanced): 'Pixels per class' draws the training and "
        "validation pixels per class at random (the papers' 30 / 10), 'Ratio' the training and validation "
        "ratios; the other labelled pixels test the model in the report. Random test pixels lie next to "
        "training pixels, which flatters the accuracy: 'Separate ROIs (spatial)' draws the same counts from "
        "some ROIs of each class and tests on the others (a class with fewer than 3 separate ROIs is cut into "
        "blocks); 'Auto' (default) is spatial when every class has 3 separate ROIs, else pixels per class. "
        "The log says which split ran.\n"
        "Hidden width (advanced): 0 = the paper's 128 on a GPU whose memory fits it (else the largest width "
        "that fits), 32 on the CPU.\n"
        "Token selection, Cluster loss, Gate, Pooling between stages (advanced): the paper's ablations. "
        "Pooling trains about twice as fast but cost 5 to 8 points of OA, so it is off by default.\n"
        "Head neighbourhood (advanced): the pixels the classifier head looks at around each pixel. 5 x 5 smooths "
        "the map: on Salinas-A's large fields it gained 0.1 point (10 seeds), on the small objects of the MUUFL "
        "scene it cost about 1.5 points; 1 x 1 lost 1 to 5 points on both.\n"
        "Memory budget (advanced): MB a training step may use; a scene that needs more trains in overlapping "
        "windows. 0 = half the RAM (CPU) or 80 % of the free GPU memory.\n"
        "Training window size (advanced): on a scene larger than one classification tile (512 px), training steps "
        "over the tiles of this size that hold ROI pixels, and the classification repeats them, so the time "
        "follows the ROIs, not the scene. 0 = 64 px, the measured default. Larger windows give each ROI pixel more "
        "context but cost training time in proportion to their pixels (128 px: about 3 times) and did not raise "
        "CSSMamba's accuracy on the EnMAP scene; smaller ones train faster with less context.\n"
        "Model file: written only when training completes; a cancelled run leaves none.\n"
        "Training report: HTML with the training curves, confusion matrix, per-class accuracy, parameters, "
        "device and timings.\n"
        "Classified training scene (optional): the training raster classified, in the class colours."
    )

    INPUT, BANDS, MODEL, CLUSTERS_PER_CLASS = "INPUT", "BANDS", "MODEL", "CLUSTERS_PER_CLASS"
    EPOCHS, LEARNING_RATE, DEVICE, SEED = "EPOCHS", "LEARNING_RATE", "DEVICE", "SEED"
    SPLIT, TRAIN_PER_CLASS, VAL_PER_CLASS = "SPLIT", "TRAIN_PER_CLASS", "VAL_PER_CLASS"
    TRAIN_RATIO, VAL_RATIO, WIDTH = "TRAIN_RATIO", "VAL_RATIO", "WIDTH"
    TOKEN_SELECTION, CLUSTER_LOSS, GATE, POOLING = "TOKEN_SELECTION", "CLUSTER_LOSS", "GATE", "POOLING"
    HEAD = "HEAD"
    MEMORY_BUDGET, TRAINING_WINDOW, TILE_SIZE = "MEMORY_BUDGET", "TRAINING_WINDOW", "TILE_SIZE"
    OUTPUT_MODEL, OUTPUT_REPORT, OUTPUT_CLASSIFICATION = "OUTPUT_MODEL", "OUTPUT_REPORT", "OUTPUT_CLASSIFICATION"

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        integer, double = QgsProcessingParameterNumber.Integer, QgsProcessingParameterNumber.Double
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Raster")))
        self.addParameter(QgsProcessingParameterBand(
            self.BANDS, self.tr("Bands (empty = every good band)"), parentLayerParameterName=self.INPUT,
            optional=True, allowMultiple=True))
        for parameter in roi_parameters(self):
            self.addParameter(parameter)
        self.addParameter(QgsProcessingParameterEnum(
            self.MODEL, self.tr("Model"), options=["CSSMamba", "MambaHSI", self.tr("Random forest (500 trees)"),
                                                   self.tr("SVM (RBF kernel)")], defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.CLUSTERS_PER_CLASS, self.tr("Clusters per class (CSSMamba)"), integer, 3, minValue=1, maxValue=5))
        self.addParameter(QgsProcessingParameterNumber(self.EPOCHS, self.tr("Epochs"), integer, 200, minValue=1))
        self.addParameter(QgsProcessingParameterNumber(
            self.LEARNING_RATE, self.tr("Learning rate"), double, 3e-4, minValue=1e-7, maxValue=1.0))
        self.addParameter(device_parameter(self, self.DEVICE))
        self.addParameter(QgsProcessingParameterNumber(self.SEED, self.tr("Random seed"), integer, 0, minValue=0))
        for parameter in (
            split_parameter(self, self.SPLIT, self.tr("Sample split without validation ROIs")),
            QgsProcessingParameterNumber(self.TRAIN_PER_CLASS, self.tr("Training pixels per class"), integer, 30,
                                         minValue=1),
            QgsProcessingParameterNumber(self.VAL_PER_CLASS, self.tr("Validation pixels per class"), integer, 10,
                                         minValue=1),
            QgsProcessingParameterNumber(self.TRAIN_RATIO, self.tr("Training ratio"), double, 0.1, minValue=0.0,
                                         maxValue=1.0),
            QgsProcessingParameterNumber(self.VAL_RATIO, self.tr("Validation ratio"), double, 0.01, minValue=0.0,
                                         maxValue=1.0),
            QgsProcessingParameterNumber(self.WIDTH, self.tr("Hidden width (0 = chosen for the device)"), integer,
                                         0, minValue=0),
            # Defaults of the switches: engine/models/registry.py default_config("cssmamba") (a test checks).
            QgsProcessingParameterBoolean(self.TOKEN_SELECTION, self.tr("Token selection (CSSMamba)"), True),
            QgsProcessingParameterEnum(self.CLUSTER_LOSS, self.tr("Cluster loss (CSSMamba)"),
                                       options=[self.tr("La (compact, separated clusters)"),
                                                self.tr("Lb (follow the k-means prior)"), self.tr("None")],
                                       defaultValue=0),
            QgsProcessingParameterEnum(self.GATE, self.tr("Gate (CSSMamba)"),
                                       options=[self.tr("Sigmoid (learned)"), self.tr("Prior only"),
                                                self.tr("Attention only")], defaultValue=0),
            QgsProcessingParameterBoolean(self.POOLING, self.tr("Pooling between stages (CSSMamba)"), False),
            QgsProcessingParameterEnum(self.HEAD, self.tr("Head neighbourhood (CSSMamba)"),
                                       options=[self.tr("3 x 3 px (the paper's)"),
                                                self.tr("5 x 5 px (smoother: large fields)"),
                                                self.tr("1 x 1 px (sharpest)")], defaultValue=0),
            QgsProcessingParameterNumber(self.MEMORY_BUDGET, self.tr("Memory budget in MB (0 = auto)"), integer, 0,
                                         minValue=0),
            QgsProcessingParameterNumber(self.TRAINING_WINDOW, self.tr("Training window size in px (0 = 64)"),
                                         integer, 0, minValue=0, maxValue=TRAINING_WINDOW_MAX),
            QgsProcessingParameterNumber(self.TILE_SIZE, self.tr("Tile size for the classification (0 = default)"),
                                         integer, 0, minValue=0),
        ):
            self.addParameter(advanced(parameter))
        for output in training_outputs(self):
            self.addParameter(output)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        from ...engine.pipeline import SplitOptions

        raster, layer_name = raster_file(self, parameters, self.INPUT, context)
        rois = training_rois(self, parameters, context, feedback)
        model = MODELS[self.parameterAsEnum(parameters, self.MODEL, context)]
        device = DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)]
        given_model_path, model_path = model_file_path(self, parameters, context, feedback)
        report_path = self.parameterAsFileOutput(parameters, self.OUTPUT_REPORT, context)
        classification = geotiff_output(self, parameters, self.OUTPUT_CLASSIFICATION, context)
        with engine_run(feedback):                      # bad split settings: a Processing error, no traceback
            split = SplitOptions(
                mode=SPLITS[self.parameterAsEnum(parameters, self.SPLIT, context)],
                train_per_class=self.parameterAsInt(parameters, self.TRAIN_PER_CLASS, context),
                val_per_class=self.parameterAsInt(parameters, self.VAL_PER_CLASS, context),
                train_ratio=self.parameterAsDouble(parameters, self.TRAIN_RATIO, context),
                val_ratio=self.parameterAsDouble(parameters, self.VAL_RATIO, context),
                val_rois=rois.validation or None)
        overrides = self._model_options(parameters, model, context, feedback)
        run = {
            self.INPUT: raster, self.BANDS: self.parameterAsInts(parameters, self.BANDS, context) or None,
            ROIS: rois.rois, CLASS_FIELD: rois.class_field, NAME_FIELD: rois.name_field,
            VALIDATION_ROIS: rois.validation or None, self.MODEL: model,
            self.EPOCHS: 1 if model in CLASSICAL else self.parameterAsInt(parameters, self.EPOCHS, context),
            self.LEARNING_RATE: self.parameterAsDouble(parameters, self.LEARNING_RATE, context),
            self.DEVICE: device, self.SEED: self.parameterAsInt(parameters, self.SEED, context),
            self.MEMORY_BUDGET: self.parameterAsInt(parameters, self.MEMORY_BUDGET, context) or None,
            self.TRAINING_WINDOW: None if model in CLASSICAL
            else self.parameterAsInt(parameters, self.TRAINING_WINDOW, context) or None,
        }
        return run_training(self, TrainingJob(
            raster=raster, layer_name=layer_name,
            sources=dict(self.source_files(parameters, (ROIS, VALIDATION_ROIS), context), raster=raster),
            given_model_path=given_model_path, model_path=model_path, report_path=report_path,
            classification=classification, device=device,
            validation_note=self.tr("The validation ROIs choose the epoch: every training ROI pixel trains "
                                    "and SPLIT is not used."),
            settings=run,
            train=dict(model=model, epochs=run[self.EPOCHS], seed=run[self.SEED], bands=run[self.BANDS],
                       lr=run[self.LEARNING_RATE], overrides=overrides, split=split,
                       memory_budget_mb=run[self.MEMORY_BUDGET], label_tile=run[self.TRAINING_WINDOW]),
            classify=dict(tile=self.parameterAsInt(parameters, self.TILE_SIZE, context) or None)), rois, feedback)

    def _model_options(self, parameters: Dict[str, Any], model: str, context: QgsProcessingContext,
                       feedback: QgsProcessingFeedback) -> Dict[str, Any]:
        """The model options (``build_model`` overrides) the parameters set; for MambaHSI, say which
        CSSMamba-only settings the user changed and are ignored."""
        width = self.parameterAsInt(parameters, self.WIDTH, context)
        if model in CLASSICAL:
            deep = [name for name in (self.WIDTH, self.EPOCHS, self.LEARNING_RATE, self.CLUSTERS_PER_CLASS,
                                      self.TOKEN_SELECTION, self.CLUSTER_LOSS, self.GATE, self.POOLING, self.HEAD,
                                      self.TRAINING_WINDOW)
                    if parameters.get(name) is not None
                    and parameters[name] != self.parameterDefinition(name).defaultValue()]
            if deep:
                feedback.pushWarning(self.tr("{} is fitted once on the training pixels: the deep-model settings {} "
                                             "do not apply and are ignored.").format(
                    model.upper(), ", ".join(self.parameterDefinition(name).description() for name in deep)))
            return {}
        options = {"dim": width} if width else {}
        switches = {
            self.CLUSTERS_PER_CLASS: self.parameterAsInt(parameters, self.CLUSTERS_PER_CLASS, context),
            self.TOKEN_SELECTION: self.parameterAsBool(parameters, self.TOKEN_SELECTION, context),
            self.CLUSTER_LOSS: self.parameterAsEnum(parameters, self.CLUSTER_LOSS, context),
            self.GATE: self.parameterAsEnum(parameters, self.GATE, context),
            self.POOLING: self.parameterAsBool(parameters, self.POOLING, context),
            self.HEAD: self.parameterAsEnum(parameters, self.HEAD, context),
        }
        if model == "cssmamba":
            options.update(
                clusters_per_class=switches[self.CLUSTERS_PER_CLASS],
                token_selection=switches[self.TOKEN_SELECTION],
                cluster_loss=CLUSTER_LOSSES[switches[self.CLUSTER_LOSS]],
                gate=GATES[switches[self.GATE]],
                pooling=switches[self.POOLING],
                head_kernel=HEAD_KERNELS[switches[self.HEAD]])
        else:
            changed = [name for name, value in switches.items()
                       if value != self.parameterDefinition(name).defaultValue()]
            if changed:
                feedback.pushWarning(self.tr("{} has no clustering: {} apply to CSSMamba only and are ignored.").format(
                    "MambaHSI", ", ".join(changed)))
        feedback.pushInfo(self.tr("Model {}: {}").format(
            model, ", ".join(f"{key} {value}" for key, value in options.items())
            or self.tr("size chosen for the device")))
        return options
