"""Processing algorithm ``cssmamba:trainmultimodal``: train M3amba on a hyperspectral raster fused with
auxiliary rasters (LiDAR, SAR), from the same training ROIs as ``cssmamba:train``.

A thin adapter: its parameters become a ``TrainingJob`` with auxiliary rasters, which ``train.run_training``
runs through the engine's one path as for the other models; the ROI parameters and their checks come from
``train.py`` too, the styled outputs from ``classify.py``.
"""

from qgis.core import (
    QgsProcessing,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)

from ..algorithm import CSSMambaAlgorithm
from .classify import (
    DEVICES,
    StylesOnCompletion,
    advanced,
    device_parameter,
    geotiff_output,
    raster_file,
    raster_files,
)
from .train import (
    CLASS_FIELD,
    NAME_FIELD,
    ROIS,
    VALIDATION_ROIS,
    TrainingJob,
    model_file_path,
    roi_parameters,
    run_training,
    training_outputs,
    training_rois,
)

MODEL = "m3amba"
# Defaults of engine/multimodal.py (EPOCHS, LEARNING_RATE) and the methods of engine/data/auxiliary.py
# (RESAMPLING), repeated so that loading the provider does not import torch; a test keeps them equal.
EPOCHS = 100
LEARNING_RATE = 1e-3
RESAMPLING = ("bilinear", "cubic", "nearest", "average")
CLIP_FILTER = "CLIP ViT weights (*.pt *.pth *.bin *.safetensors);;All files (*.*)"


class TrainMultimodalAlgorithm(StylesOnCompletion, CSSMambaAlgorithm):
    ALGORITHM_ID = "trainmultimodal"
    DISPLAY_NAME = "Train M3amba (multi-modal)"
    GROUP = "Training"
    GROUP_ID = "training"
    HELP = (
        "Trains M3amba, a CLIP-driven multi-modal Mamba classifier, on a hyperspectral raster together with "
        "auxiliary rasters of the same area (LiDAR DSM or intensity, SAR), and writes a model file for "
        "'Classify raster', an HTML training report and, optionally, the classified training scene.\n\n"
        "Hyperspectral raster: its grid is the grid of the outputs; bad bands (bbl=0) and nodata are left "
        "out.\n"
        "Auxiliary rasters: each is resampled onto the hyperspectral raster's grid (another resolution, "
        "extent or CRS is fine if they overlap); pixels that are nodata in any raster are left out. The order "
        "matters: 'Classify raster' needs the same kinds of rasters in the same order.\n"
        "Training ROIs, Class id field, Class name field: as in 'Train CSSMamba'.\n"
        "Validation ROIs (optional): choose the best epoch; without them 30 training and 10 validation pixels "
        "per class are drawn and the other labelled pixels test the model.\n"
        "CLIP ViT-B/32 image-encoder weights: the plugin cannot download them: OpenAI's ViT-B-32.pt "
        "(https://openaipublic.azureedge.net/clip/models/"
        "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt), or an open_clip or "
        "safetensors ViT-B/32 file, saved on this computer. The model file records its checksum.\n"
        "Without the CLIP branch: trains the documented ablation instead; then leave the weights empty.\n"
        "Epochs: passes over the crops holding training pixels; the epoch with the best validation accuracy "
        "is kept.\n"
        "Learning rate: AdamW's step size.\n"
        "Device: Auto uses the GPU when PyTorch sees one, else the CPU.\n"
        "Random seed: the same seed gives the same split and the same model.\n"
        "Hidden width, Blocks per stream (advanced): 0 = the paper's width 384 and 9 blocks on a GPU whose "
        "memory fits them (else the largest width that fits), width 16 and 2 blocks on the CPU.\n"
        "Resampling of the auxiliary rasters (advanced): bilinear for continuous data such as a DSM, nearest "
        "neighbour for classes or codes, average for rasters much finer than the hyperspectral one.\n"
        "Model file: written only when training completes; a cancelled run leaves none.\n"
        "Training report: HTML with the training curves, confusion matrix, per-class accuracy, parameters, "
        "device and timings.\n"
        "Classified training scene (optional): the training raster classified, in the class colours."
    )

    INPUT, AUX_RASTERS, CLIP_WEIGHTS, NO_CLIP = "INPUT", "AUX_RASTERS", "CLIP_WEIGHTS", "NO_CLIP"
    EPOCHS, LEARNING_RATE, DEVICE, SEED = "EPOCHS", "LEARNING_RATE", "DEVICE", "SEED"
    WIDTH, DEPTH, AUX_RESAMPLING = "WIDTH", "DEPTH", "AUX_RESAMPLING"
    OUTPUT_MODEL, OUTPUT_REPORT, OUTPUT_CLASSIFICATION = "OUTPUT_MODEL", "OUTPUT_REPORT", "OUTPUT_CLASSIFICATION"

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        integer, double = QgsProcessingParameterNumber.Integer, QgsProcessingParameterNumber.Double
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Hyperspectral raster")))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.AUX_RASTERS, self.tr("Auxiliary rasters (LiDAR DSM/intensity, SAR), in this order"),
            QgsProcessing.TypeRaster))
        for parameter in roi_parameters(self):
            self.addParameter(parameter)
        self.addParameter(QgsProcessingParameterFile(
            self.CLIP_WEIGHTS, self.tr("CLIP ViT-B/32 image-encoder weights"), QgsProcessingParameterFile.File,
            fileFilter=self.tr(CLIP_FILTER), optional=True))
        self.addParameter(QgsProcessingParameterBoolean(
            self.NO_CLIP, self.tr("Without the CLIP branch (ablation, no weights needed)"), False))
        self.addParameter(QgsProcessingParameterNumber(self.EPOCHS, self.tr("Epochs"), integer, EPOCHS, minValue=1))
        self.addParameter(QgsProcessingParameterNumber(
            self.LEARNING_RATE, self.tr("Learning rate"), double, LEARNING_RATE, minValue=1e-7, maxValue=1.0))
        self.addParameter(device_parameter(self, self.DEVICE))
        self.addParameter(QgsProcessingParameterNumber(self.SEED, self.tr("Random seed"), integer, 0, minValue=0))
        for parameter in (
            QgsProcessingParameterNumber(self.WIDTH, self.tr("Hidden width (0 = chosen for the device)"), integer,
                                         0, minValue=0),
            QgsProcessingParameterNumber(self.DEPTH, self.tr("Blocks per stream (0 = chosen for the device)"), integer,
                                         0, minValue=0),
            QgsProcessingParameterEnum(self.AUX_RESAMPLING, self.tr("Resampling of the auxiliary rasters"),
                                       options=[self.tr("Bilinear"), self.tr("Cubic"), self.tr("Nearest neighbour"),
                                                self.tr("Average")], defaultValue=0),
        ):
            self.addParameter(advanced(parameter))
        for output in training_outputs(self):
            self.addParameter(output)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        from ...engine.pipeline import SplitOptions

        raster, layer_name = raster_file(self, parameters, self.INPUT, context)
        aux = raster_files(self, parameters, self.AUX_RASTERS, context)
        rois = training_rois(self, parameters, context, feedback)
        device = DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)]
        given_model_path, model_path = model_file_path(self, parameters, context, feedback)
        report_path = self.parameterAsFileOutput(parameters, self.OUTPUT_REPORT, context)
        classification = geotiff_output(self, parameters, self.OUTPUT_CLASSIFICATION, context)
        overrides = {key: value for key, value in (("dim", self.parameterAsInt(parameters, self.WIDTH, context)),
                                                   ("depth", self.parameterAsInt(parameters, self.DEPTH, context)))
                     if value}
        run = {
            self.INPUT: raster, self.AUX_RASTERS: aux, ROIS: rois.rois, CLASS_FIELD: rois.class_field,
            NAME_FIELD: rois.name_field, VALIDATION_ROIS: rois.validation or None,
            self.CLIP_WEIGHTS: self.parameterAsFile(parameters, self.CLIP_WEIGHTS, context) or None,
            self.NO_CLIP: self.parameterAsBool(parameters, self.NO_CLIP, context),
            self.EPOCHS: self.parameterAsInt(parameters, self.EPOCHS, context),
            self.LEARNING_RATE: self.parameterAsDouble(parameters, self.LEARNING_RATE, context),
            self.DEVICE: device, self.SEED: self.parameterAsInt(parameters, self.SEED, context),
            self.AUX_RESAMPLING: RESAMPLING[self.parameterAsEnum(parameters, self.AUX_RESAMPLING, context)],
        }
        feedback.pushInfo(self.tr("Model {}: {}; auxiliary rasters in this order: {}").format(
            MODEL, ", ".join(f"{key} {value}" for key, value in overrides.items())
            or self.tr("size chosen for the device"),
            ", ".join(aux)))
        return run_training(self, TrainingJob(
            raster=raster, layer_name=layer_name,
            sources=dict(self.source_files(parameters, (ROIS, VALIDATION_ROIS), context), raster=raster),
            given_model_path=given_model_path, model_path=model_path, report_path=report_path,
            classification=classification, device=device,
            validation_note=self.tr("The validation ROIs choose the epoch: every training ROI pixel trains."),
            settings=run,
            train=dict(aux=aux, clip_weights=run[self.CLIP_WEIGHTS], use_clip=not run[self.NO_CLIP], model=MODEL,
                       epochs=run[self.EPOCHS], seed=run[self.SEED], lr=run[self.LEARNING_RATE],
                       aux_resampling=[run[self.AUX_RESAMPLING]], overrides=overrides,
                       split=SplitOptions(val_rois=rois.validation or None)),
            classify=dict(aux=aux)), rois, feedback)
