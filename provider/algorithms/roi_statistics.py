"""Processing algorithm ``cssmamba:roistats``: class spectra, counts and separability of the training ROIs.

A thin adapter over ``engine.roistats.roi_statistics`` (the numbers) and ``engine.report`` (the HTML).
Both need only numpy, scipy and GDAL, so NEEDS_TORCH is False: an analyst checks the ROIs before
PyTorch is even installed.
"""

import json

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterBand,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterLayer,
)

from ..algorithm import CSSMambaAlgorithm, engine_run
from .classify import raster_file
from .train import CLASS_FIELD, NAME_FIELD, ROIS, roi_class_style, roi_file, roi_parameters


class RoiStatisticsAlgorithm(CSSMambaAlgorithm):
    ALGORITHM_ID = "roistats"
    DISPLAY_NAME = "ROI statistics"
    GROUP = "Training"
    GROUP_ID = "training"
    NEEDS_TORCH = False
    HELP = (
        "Before training, shows whether the classes you drew differ: per class the mean spectrum ± one standard "
        "deviation (over the wavelengths when the raster has them), its number of pixels and of separate ROIs, "
        "and the Jeffries–Matusita (JM) separability of every pair of classes, from 0 (identical spectra) to 2 "
        "(fully separable), in an HTML report.\n\n"
        "The log and the report warn about classes with fewer than 30 pixels and about pairs below JM 1.9: "
        "draw more or larger ROIs there, merge classes that cannot be told apart, or add an auxiliary raster.\n"
        "JM is computed on the first 10 principal components of the standardised ROI spectra, since a few dozen "
        "pixels cannot describe the covariance of hundreds of bands. Only the parts of the raster under the ROIs "
        "are read."
    )

    INPUT, BANDS, OUTPUT_REPORT, OUTPUT_JSON = "INPUT", "BANDS", "OUTPUT_REPORT", "OUTPUT_JSON"
    POORLY_SEPARABLE_PAIRS = "POORLY_SEPARABLE_PAIRS"

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Raster")))
        self.addParameter(QgsProcessingParameterBand(
            self.BANDS, self.tr("Bands (empty = every good band)"), parentLayerParameterName=self.INPUT,
            optional=True, allowMultiple=True))
        for parameter in roi_parameters(self)[:3]:          # the validation ROIs play no part here
            self.addParameter(parameter)
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_REPORT, self.tr("ROI statistics report"), self.tr("HTML files (*.html)")))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_JSON, self.tr("All results (JSON)"), self.tr("JSON files (*.json)"), optional=True,
            createByDefault=False))
        self.addOutput(QgsProcessingOutputNumber(self.POORLY_SEPARABLE_PAIRS,
                                                 self.tr("Pairs of classes below JM 1.9")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        from ...engine.paths import check_distinct, write_text_atomic
        from ...engine.report import roi_statistics_html, write_report
        from ...engine.roistats import JM_WARNING, roi_statistics

        raster, layer_name = raster_file(self, parameters, self.INPUT, context)
        class_field = self.parameterAsString(parameters, CLASS_FIELD, context)
        name_field = self.parameterAsString(parameters, NAME_FIELD, context) or None
        rois = roi_file(self, parameters, ROIS, class_field, name_field, context, feedback)
        style = roi_class_style(self.vector_layer(parameters, ROIS, context), class_field)
        report = self.parameterAsFileOutput(parameters, self.OUTPUT_REPORT, context)
        data = self.parameterAsFileOutput(parameters, self.OUTPUT_JSON, context) or None
        with engine_run(feedback):
            check_distinct(dict(self.source_files(parameters, (ROIS,), context), raster=raster),
                           {"report": report, "JSON file": data})
            stats = roi_statistics(raster, rois=rois, class_field=class_field, name_field=name_field,
                                   bands=self.parameterAsInts(parameters, self.BANDS, context) or None).as_dict()
            for entry in stats["classes"]:                 # the colours (and names) the analyst gave the ROIs
                name, color = style.get(int(entry["id"]), (None, None))
                entry["color"] = list(color) if color else entry["color"]
                entry["name"] = entry["name"] if name_field or not name else name
            write_report(report, roi_statistics_html(stats, f"ROI statistics: {layer_name}"))
            if data:
                write_text_atomic(data, json.dumps(stats, indent=2) + "\n", "JSON file")
        for entry in stats["classes"]:
            feedback.pushInfo(self.tr("class {} {}: {:,} px in {:,} ROIs").format(
                entry["id"], entry["name"], entry["pixels"], entry["rois"]))
        for warning in stats["warnings"]:
            feedback.pushWarning(warning)
        jm = stats["jeffries_matusita"]
        low = sum(1 for i, row in enumerate(jm) for j, value in enumerate(row)
                  if j > i and value is not None and value < JM_WARNING)
        return {self.OUTPUT_REPORT: report, self.OUTPUT_JSON: data, self.POORLY_SEPARABLE_PAIRS: low}
