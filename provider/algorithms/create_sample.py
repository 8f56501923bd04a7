"""Processing algorithm ``cssmamba:createsample``: write the built-in synthetic sample."""

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputRasterLayer,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsVectorLayer,
)

from ..algorithm import CSSMambaAlgorithm, engine_callbacks
from ..styling import true_colour_renderer, write_qml_sidecar


class CreateSampleAlgorithm(CSSMambaAlgorithm):
    ALGORITHM_ID = "createsample"
    DISPLAY_NAME = "Create sample dataset"
    GROUP = "Training data"
    GROUP_ID = "trainingdata"
    NEEDS_TORCH = False
    HELP = (
        "Writes the plugin's built-in synthetic hyperspectral scene, to try the tools without data of your "
        "own: an EnMAP-like GeoTIFF (EPSG:32633, 30 m, reflectance x 10,000, wavelengths and bad-band list in "
        "the metadata) that opens in true colour, a label raster with the true classes, and a GeoPackage of "
        "training ROIs with the fields class_id and class_name, styled by class.\n\n"
        "Rows, Columns: scene size in pixels.\n"
        "Bands: number of spectral bands between 418 and 2446 nm.\n"
        "Random seed: the same seed writes the same files.\n"
        "Output folder: where sample.tif, sample_labels.tif, sample_rois.gpkg and classes.csv are written."
    )

    ROWS, COLUMNS, BANDS, SEED = "ROWS", "COLUMNS", "BANDS", "SEED"
    OUTPUT_FOLDER = "OUTPUT_FOLDER"
    OUTPUT_RASTER, OUTPUT_LABELS, OUTPUT_ROIS = "OUTPUT_RASTER", "OUTPUT_LABELS", "OUTPUT_ROIS"
    OUTPUT_CLASSES = "CLASSES_CSV"

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        integer = QgsProcessingParameterNumber.Integer
        self.addParameter(QgsProcessingParameterNumber(self.ROWS, self.tr("Rows"), integer, 128, minValue=16))
        self.addParameter(QgsProcessingParameterNumber(self.COLUMNS, self.tr("Columns"), integer, 128, minValue=16))
        self.addParameter(QgsProcessingParameterNumber(self.BANDS, self.tr("Bands"), integer, 128, minValue=10))
        self.addParameter(QgsProcessingParameterNumber(self.SEED, self.tr("Random seed"), integer, 0, minValue=0))
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT_FOLDER, self.tr("Output folder")))
        self.addOutput(QgsProcessingOutputRasterLayer(self.OUTPUT_RASTER, self.tr("Sample raster")))
        self.addOutput(QgsProcessingOutputRasterLayer(self.OUTPUT_LABELS, self.tr("Sample labels")))
        self.addOutput(QgsProcessingOutputVectorLayer(self.OUTPUT_ROIS, self.tr("Sample training ROIs")))
        self.addOutput(QgsProcessingOutputFile(self.OUTPUT_CLASSES, self.tr("Class table")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        from ...engine.data.sample import SampleCancelled, generate_sample

        progress, cancelled = engine_callbacks(feedback)
        folder = self.parameterAsString(parameters, self.OUTPUT_FOLDER, context)
        try:
            paths = generate_sample(
                folder,
                rows=self.parameterAsInt(parameters, self.ROWS, context),
                cols=self.parameterAsInt(parameters, self.COLUMNS, context),
                bands=self.parameterAsInt(parameters, self.BANDS, context),
                seed=self.parameterAsInt(parameters, self.SEED, context),
                progress=progress,
                cancelled=cancelled,
            )
        except SampleCancelled:
            return {}
        except (ValueError, OSError) as exc:
            raise QgsProcessingException(str(exc)) from exc
        self._style_rois(paths.rois, feedback)
        write_qml_sidecar(paths.raster, true_colour_renderer)   # opens in true colour, not as grey bands 1-2-3
        return {
            self.OUTPUT_FOLDER: folder,
            self.OUTPUT_RASTER: paths.raster,
            self.OUTPUT_LABELS: paths.labels,
            self.OUTPUT_ROIS: paths.rois,
            self.OUTPUT_CLASSES: paths.classes_csv,
        }

    def _style_rois(self, path: str, feedback) -> None:
        """Save the ROI layer's categorised style (the sample's class colours and names, as 'Create
        training ROI layer' styles a new one) inside the GeoPackage, so it opens coloured by class."""
        from ...engine.data.sample import CLASSES
        from .create_roi_layer import style_roi_layer

        layer = QgsVectorLayer(path, "sample ROIs", "ogr")
        colors = {c.id: c.rgb for c in CLASSES}
        style_roi_layer(layer, [(c.id, c.name) for c in CLASSES], colors.__getitem__)
        problem = layer.saveStyleToDatabase(layer.name(), "sample ROI classes (cssmamba)", True, "")
        if problem:
            feedback.pushWarning(self.tr("The sample ROIs' style could not be saved in {}: {}").format(path, problem))
