"""Processing algorithm ``cssmamba:accuracy``: assess a class raster against reference ROIs or labels.

A thin adapter over ``engine.evaluation.evaluate_files`` (the numbers) and ``engine.report`` (the files).
Both need only numpy and GDAL, so NEEDS_TORCH is False: the assessment runs in a QGIS without torch or
scikit-learn (a test imports the algorithm with torch blocked).
"""

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterLayer,
)
from qgis.PyQt.QtCore import QVariant

from ..algorithm import CSSMambaAlgorithm, engine_run


class AccuracyAlgorithm(CSSMambaAlgorithm):
    ALGORITHM_ID = "accuracy"
    DISPLAY_NAME = "Accuracy assessment"
    GROUP = "Accuracy"
    GROUP_ID = "accuracy"
    NEEDS_TORCH = False
    HELP = (
        "Compares a classification raster with reference data the model did not train on: the confusion "
        "matrix (reference in rows, classification in columns), overall accuracy (OA), average accuracy (AA, "
        "the mean of the per-class producer's accuracies), Cohen's kappa (κ), and per class the producer's "
        "accuracy (PA, recall), user's accuracy (UA, precision) and F1.\n\n"
        "Classification raster: one band of class ids (0 = unclassified), e.g. from 'Classify raster'. "
        "Reference pixels it leaves at 0 count as errors.\n"
        "Give the reference either as ROIs or as a label raster, not both:\n"
        "Reference ROIs (vector): polygons or points with the true class, in any CRS; a polygon labels the "
        "pixels whose centres it contains. Unsaved edits and 'Selected features only' are honoured.\n"
        "Class id field of the reference ROIs: whole numbers from 1, the same ids as the classification.\n"
        "Class name field of the reference ROIs (optional): class names for the report.\n"
        "Reference label raster: labels on exactly the classification's grid (0 = unlabelled).\n"
        "Accuracy report (HTML): the report. It adds the area-adjusted accuracy of Olofsson et al. (2014): "
        "with the classification's classes as strata, the OA, user's and producer's accuracies weighted by "
        "each class's share of the map, and each class's estimated area (ha for a projected raster, else "
        "pixels), with 95 % confidence intervals. They assume the reference is a stratified random sample of "
        "the map classes; for drawn ROIs they are an approximation.\n"
        "Per-class table (CSV, optional): each class's row of the confusion matrix and a 'total' row.\n"
        "All results (JSON, optional): every number of the assessment, for scripts.\n"
        "OA, AA and κ are also outputs for models."
    )

    INPUT = "INPUT"
    REFERENCE_VECTOR, CLASS_FIELD, NAME_FIELD = "REFERENCE_VECTOR", "CLASS_FIELD", "NAME_FIELD"
    REFERENCE_RASTER = "REFERENCE_RASTER"
    OUTPUT_REPORT, OUTPUT_CSV, OUTPUT_JSON = "OUTPUT_REPORT", "OUTPUT_CSV", "OUTPUT_JSON"
    OVERALL_ACCURACY, AVERAGE_ACCURACY, KAPPA = "OVERALL_ACCURACY", "AVERAGE_ACCURACY", "KAPPA"

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Classification raster")))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.REFERENCE_VECTOR, self.tr("Reference ROIs (vector)"),
            [QgsProcessing.TypeVectorPolygon, QgsProcessing.TypeVectorPoint], optional=True))
        self.addParameter(QgsProcessingParameterField(
            self.CLASS_FIELD, self.tr("Class id field of the reference ROIs"), defaultValue="class_id",
            parentLayerParameterName=self.REFERENCE_VECTOR, optional=True))
        self.addParameter(QgsProcessingParameterField(
            self.NAME_FIELD, self.tr("Class name field of the reference ROIs"),
            parentLayerParameterName=self.REFERENCE_VECTOR, optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.REFERENCE_RASTER, self.tr("Reference label raster"), optional=True))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_REPORT, self.tr("Accuracy report (HTML)"), self.tr("HTML files (*.html)")))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_CSV, self.tr("Per-class table (CSV)"), self.tr("CSV files (*.csv)"), optional=True,
            createByDefault=False))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_JSON, self.tr("All results (JSON)"), self.tr("JSON files (*.json)"), optional=True,
            createByDefault=False))
        self.addOutput(QgsProcessingOutputNumber(self.OVERALL_ACCURACY, self.tr("Overall accuracy (OA)")))
        self.addOutput(QgsProcessingOutputNumber(self.AVERAGE_ACCURACY, self.tr("Average accuracy (AA)")))
        self.addOutput(QgsProcessingOutputNumber(self.KAPPA, self.tr("Cohen's kappa")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        from ...engine.evaluation import evaluate_files
        from ...engine.paths import check_distinct
        from ...engine.report import accuracy_report_html, write_accuracy_tables, write_report

        classification = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        reference = self._reference(parameters, context, feedback)
        outputs = {key: self.parameterAsFileOutput(parameters, key, context) or None
                   for key in (self.OUTPUT_REPORT, self.OUTPUT_CSV, self.OUTPUT_JSON)}
        with engine_run(feedback):
            named = {f"{what} ({key})": outputs[key] for key, what in (
                (self.OUTPUT_REPORT, "HTML report"), (self.OUTPUT_CSV, "CSV table"), (self.OUTPUT_JSON, "JSON file"))}
            check_distinct(self.source_files(parameters, (self.REFERENCE_VECTOR,), context), named)
            result = evaluate_files(classification.source(), other_outputs=named, **reference)
            write_report(outputs[self.OUTPUT_REPORT],
                         accuracy_report_html(result, f"Accuracy assessment: {classification.name()}"))
            write_accuracy_tables(result, outputs[self.OUTPUT_CSV], outputs[self.OUTPUT_JSON])
        feedback.pushInfo(self.tr("OA {:.2f} %, AA {:.2f} %, kappa {:.4f} on {:,} reference pixels").format(
            100 * result["overall_accuracy"], 100 * result["average_accuracy"], result["kappa"], result["pixels"]))
        area = result["area_adjusted"]
        if area["overall_accuracy"] is not None:
            feedback.pushInfo(self.tr("Area-adjusted OA (Olofsson et al. 2014) {:.2f} % ± {} (95 %); class areas "
                                      "in the report").format(
                100 * area["overall_accuracy"], "–" if area["overall_accuracy_ci95"] is None
                else f"{100 * area['overall_accuracy_ci95']:.2f}"))
        for entry in result["classes"]:
            pa = "–" if entry["producers_accuracy"] is None else f"{100 * entry['producers_accuracy']:.2f} %"
            ua = "–" if entry["users_accuracy"] is None else f"{100 * entry['users_accuracy']:.2f} %"
            feedback.pushInfo(f"class {entry['id']} {entry['name']}: {entry['reference_pixels']:,} px, "
                              f"PA {pa}, UA {ua}")
        return dict(outputs, **{self.OVERALL_ACCURACY: result["overall_accuracy"],
                                self.AVERAGE_ACCURACY: result["average_accuracy"], self.KAPPA: result["kappa"]})

    def _reference(self, parameters, context, feedback) -> dict:
        """evaluate_files' reference arguments: a label raster path, or an ROI file path with its fields.

        Vector references go through ``vector_file``, which writes memory layers, unsaved edits and
        selections to a temporary GeoPackage the engine (GDAL) can read.
        """
        source = self.parameterAsSource(parameters, self.REFERENCE_VECTOR, context)
        raster = self.parameterAsRasterLayer(parameters, self.REFERENCE_RASTER, context)
        if (source is None) == (raster is None):
            raise QgsProcessingException(self.tr(
                "Give the reference either as ROIs (REFERENCE_VECTOR with CLASS_FIELD) or as a label raster "
                "(REFERENCE_RASTER), {}.").format(
                self.tr("not both") if source is not None else self.tr("one of them is needed")))
        if raster is not None:
            return {"labels": raster.source()}
        fields = source.fields()
        names = [field.name() for field in fields]
        class_field = self.parameterAsString(parameters, self.CLASS_FIELD, context)
        name_field = self.parameterAsString(parameters, self.NAME_FIELD, context) or None
        for key, field in ((self.CLASS_FIELD, class_field), (self.NAME_FIELD, name_field)):
            if field and field not in names:
                raise QgsProcessingException(self.tr("The reference ROIs have no field '{}' ({}); their fields: "
                                                     "{}").format(field, key, ", ".join(names) or "(none)"))
        if not class_field:
            raise QgsProcessingException(self.tr("Choose the CLASS_FIELD of the reference ROIs: the field holding "
                                                 "the class ids."))
        field = fields.field(class_field)
        if not field.isNumeric() and field.type() != QVariant.String:
            raise QgsProcessingException(self.tr(
                "The class field '{}' of the reference ROIs is of type {}, not a number; choose the field holding "
                "the class ids (whole numbers from 1).").format(class_field, field.typeName()))
        return {"rois": self.vector_file(parameters, self.REFERENCE_VECTOR, context, feedback), "class_field": class_field, "name_field": name_field}
