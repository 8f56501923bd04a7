"""cssmamba:createroilayer and cssmamba:accuracy in a real QGIS (offscreen).

The accuracy inputs are exact: a class raster made from the EnMAP Potsdam labels with WRONG class-3
pixels turned into class 4 and EMPTY class-1 pixels left unclassified, so OA, the confusion matrix
and the per-class counts are known in advance; the shared ROI GeoPackage reproduces the labels
exactly, so assessing against it must give the same numbers.
"""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from osgeo import gdal

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QGIS_PROCESS = os.path.join(ROOT, "scripts", "qgis_process.sh")
ORIGIN_X, ORIGIN_Y, PIXEL = 364095.0, 5809965.0, 30.0  # the Potsdam mosaic grid (EPSG:32633)
WRONG, EMPTY = 300, 40

pytestmark = pytest.mark.qgis


@pytest.fixture
def loaded_plugin(qgis_app, plugin_module):
    plugin = plugin_module.classFactory(None)
    plugin.initProcessing()
    yield plugin
    plugin.unload()


@pytest.fixture(scope="module")
def potsdam(shared_data):
    folder = os.path.join(shared_data, "enmap_potsdam")
    return {name: os.path.join(folder, f"enmap_potsdam_{name}") for name in ("mosaic.tif", "labels.tif", "rois.gpkg")}


@pytest.fixture(scope="module")
def class_raster(potsdam, tmp_path_factory):
    """(path, predicted (H, W), labels (H, W)): the labels with WRONG 3→4 and EMPTY 1→0 changes."""
    source = gdal.Open(potsdam["labels.tif"])
    labels = source.ReadAsArray()
    predicted = labels.copy()
    rows, cols = np.nonzero(labels == 3)
    predicted[rows[:WRONG], cols[:WRONG]] = 4
    rows, cols = np.nonzero(labels == 1)
    predicted[rows[:EMPTY], cols[:EMPTY]] = 0
    path = str(tmp_path_factory.mktemp("classification") / "classification.tif")
    target = gdal.GetDriverByName("GTiff").Create(path, source.RasterXSize, source.RasterYSize, 1, gdal.GDT_Byte)
    target.SetGeoTransform(source.GetGeoTransform())
    target.SetProjection(source.GetProjection())
    target.GetRasterBand(1).WriteArray(predicted)
    target = None
    return path, predicted, labels


def _rectangle(row0: int, col0: int, row1: int, col1: int):
    """The polygon covering pixel rows row0..row1-1 and columns col0..col1-1 of the mosaic."""
    from qgis.core import QgsGeometry, QgsRectangle

    return QgsGeometry.fromRect(QgsRectangle(ORIGIN_X + PIXEL * col0, ORIGIN_Y - PIXEL * row1,
                                             ORIGIN_X + PIXEL * col1, ORIGIN_Y - PIXEL * row0))


def _run_error(algorithm, parameters):
    """The message of the QgsProcessingException that running ``algorithm`` raises."""
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException) as raised:
        processing.run(algorithm, parameters)
    return str(raised.value)


# ------------------------------------------------------------------------------------------------
# cssmamba:createroilayer


def test_class_list_accepts_ids_with_names_or_names_only(plugin_module):
    from cssmamba.provider.algorithms.create_roi_layer import parse_class_list

    assert parse_class_list("1 water\n\n2: forest\n 3,urban area \n7\n12 ;x") == [
        (1, "water"), (2, "forest"), (3, "urban area"), (7, "class 7"), (12, "x")]
    assert parse_class_list("water\n2nd growth forest\n") == [(1, "water"), (2, "2nd growth forest")]
    assert parse_class_list("  \n") == []
    for text, message in (("1 water\nforest", 'class line "forest" has no class id'),
                          ("1 water\n1 lake", "class id 1 is given more than once"),
                          ("0 unlabelled\n1 water", "must be 1 or more"), ("-2 x", "must be 1 or more")):
        with pytest.raises(ValueError, match=message):
            parse_class_list(text)


def test_create_roi_layer_writes_a_styled_geopackage_that_keeps_its_style(loaded_plugin, potsdam, tmp_path):
    import processing
    from qgis.core import QgsRenderContext, QgsVectorLayer, QgsVectorLayerUtils, QgsWkbTypes
    from qgis.PyQt.QtCore import QVariant

    from cssmamba.engine.data.labels import default_color

    path = str(tmp_path / "my_rois.gpkg")
    result = processing.run("cssmamba:createroilayer", {
        "INPUT": potsdam["mosaic.tif"], "CLASSES": "1 water\n2: forest\n5,<urban> & co", "OUTPUT": path})
    assert result["OUTPUT"] == path

    layer = QgsVectorLayer(path, "reopened", "ogr")  # a fresh open: only what the file holds
    assert layer.isValid() and layer.featureCount() == 0
    assert layer.crs().authid() == "EPSG:32633" and layer.geometryType() == QgsWkbTypes.PolygonGeometry
    fields = layer.fields()
    assert fields.field("class_id").type() == QVariant.Int and fields.field("class_name").type() == QVariant.String
    renderer = layer.renderer()
    assert renderer.type() == "categorizedSymbol" and renderer.classAttribute() == "class_id"
    categories = [(str(c.value()), c.label(), c.symbol().color().getRgb()[:3]) for c in renderer.categories()]
    assert categories == [("1", "water", default_color(1)), ("2", "forest", default_color(2)),
                          ("5", "<urban> & co", default_color(5)), ("", "other class ids", (150, 150, 150))]
    widget = layer.editorWidgetSetup(fields.indexOf("class_id"))
    assert widget.type() == "ValueMap"
    assert widget.config()["map"] == [{"1 water": "1"}, {"2 forest": "2"}, {"5 <urban> & co": "5"}]

    context = QgsRenderContext()
    renderer.startRender(context, fields)
    colours = {}
    for class_id in (5, 9):  # a digitised ROI: its name filled in from the id, drawn in its class colour
        feature = QgsVectorLayerUtils.createFeature(layer, _rectangle(0, 0, 2, 2), {fields.indexOf("class_id"): class_id})
        colours[class_id] = renderer.symbolForFeature(feature, context).color().getRgb()[:3]
        if class_id == 5:
            assert feature["class_name"] == "<urban> & co"
    renderer.stopRender(context)
    assert colours == {5: default_color(5), 9: (150, 150, 150)}


def test_create_roi_layer_without_classes_still_draws_every_feature(loaded_plugin, potsdam, tmp_path):
    import processing
    from qgis.core import QgsVectorLayer

    path = str(tmp_path / "rois.gpkg")
    processing.run("cssmamba:createroilayer", {"INPUT": potsdam["mosaic.tif"], "OUTPUT": path})
    layer = QgsVectorLayer(path, "rois", "ogr")
    assert [(c.value(), c.label()) for c in layer.renderer().categories()] == [("", "ROIs")]
    assert layer.editorWidgetSetup(layer.fields().indexOf("class_id")).type() != "ValueMap"


def test_processing_loads_the_roi_layer_styled(loaded_plugin, potsdam, tmp_path):
    import processing
    from qgis.core import QgsProject

    path = str(tmp_path / "loaded.gpkg")
    processing.runAndLoadResults("cssmamba:createroilayer", {
        "INPUT": potsdam["mosaic.tif"], "CLASSES": "roof\ntree", "OUTPUT": path})
    project = QgsProject.instance()
    loaded = [layer for layer in project.mapLayers().values() if layer.source().startswith(path)]
    try:
        assert len(loaded) == 1
        assert [c.label() for c in loaded[0].renderer().categories()] == ["roof", "tree", "other class ids"]
        assert loaded[0].isEditable()                    # ready for drawing ROIs
    finally:
        for layer in loaded:
            layer.rollBack()
        project.removeMapLayers([layer.id() for layer in loaded])


def test_create_roi_layer_refuses_other_formats_and_bad_class_lists(loaded_plugin, potsdam, tmp_path):
    assert "give a file name ending in .gpkg" in _run_error("cssmamba:createroilayer", {
        "INPUT": potsdam["mosaic.tif"], "OUTPUT": str(tmp_path / "rois.shp")})
    assert 'class line "forest" has no class id' in _run_error("cssmamba:createroilayer", {
        "INPUT": potsdam["mosaic.tif"], "CLASSES": "1 water\nforest", "OUTPUT": str(tmp_path / "rois.gpkg")})
    assert not os.path.exists(tmp_path / "rois.gpkg")


def test_the_roi_tool_needs_no_torch():
    """NEEDS_TORCH = False is only true while the colours come from a torch-free engine module."""
    code = "import sys, engine.data.labels; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


# ------------------------------------------------------------------------------------------------
# cssmamba:accuracy


def _expected(predicted, labels):
    reference = labels > 0
    return int((predicted[reference] == labels[reference]).sum()) / int(reference.sum()), int(reference.sum())


def test_accuracy_against_a_label_raster_is_exact_and_writes_every_file(loaded_plugin, potsdam, class_raster,
                                                                         tmp_path):
    import processing

    path, predicted, labels = class_raster
    outputs = {key: str(tmp_path / name) for key, name in (("OUTPUT_REPORT", "report.html"),
                                                           ("OUTPUT_CSV", "table.csv"), ("OUTPUT_JSON", "all.json"))}
    result = processing.run("cssmamba:accuracy", dict(outputs, INPUT=path, REFERENCE_RASTER=potsdam["labels.tif"]))
    oa, pixels = _expected(predicted, labels)
    assert oa == pytest.approx((pixels - WRONG - EMPTY) / pixels)
    assert result["OVERALL_ACCURACY"] == pytest.approx(oa)
    assert all(result[key] == value for key, value in outputs.items())
    stored = json.loads(open(outputs["OUTPUT_JSON"], encoding="utf-8").read())
    assert stored["kappa"] == pytest.approx(result["KAPPA"]) and stored["pixels"] == pixels
    assert stored["average_accuracy"] == pytest.approx(result["AVERAGE_ACCURACY"])
    matrix = {(c["id"], stored["classes"][j]["id"]): n for c, row in zip(stored["classes"], stored["confusion_matrix"])
              for j, n in enumerate(row)}
    assert matrix[(3, 4)] == WRONG and matrix[(1, -1)] == EMPTY
    page = open(outputs["OUTPUT_REPORT"], encoding="utf-8").read()
    assert f"{100 * oa:.2f} %" in page and f"{result['KAPPA']:.4f}" in page and "low vegetation" in page
    assert "Area-adjusted accuracy" in page and stored["area_adjusted"]["pixel_area_m2"] == pytest.approx(900.0)
    with open(outputs["OUTPUT_CSV"], newline="", encoding="utf-8") as handle:
        rows = {row["class_id"]: row for row in csv.DictReader(handle)}
    assert int(rows["3"]["predicted_4"]) == WRONG and int(rows[""]["reference_pixels"]) == pixels


def test_accuracy_against_rois_matches_the_labels_also_from_a_memory_layer(loaded_plugin, potsdam, class_raster,
                                                                          tmp_path):
    import processing
    from qgis.core import QgsFeatureRequest, QgsVectorLayer

    path, predicted, labels = class_raster
    memory = QgsVectorLayer(potsdam["rois.gpkg"], "rois", "ogr").materialize(QgsFeatureRequest())
    assert memory.providerType() == "memory" and memory.featureCount() == 810
    oa, _ = _expected(predicted, labels)
    for reference in (potsdam["rois.gpkg"], memory):
        result = processing.run("cssmamba:accuracy", {
            "INPUT": path, "REFERENCE_VECTOR": reference, "CLASS_FIELD": "class_id", "NAME_FIELD": "class_name",
            "OUTPUT_REPORT": str(tmp_path / "report.html"), "OUTPUT_JSON": str(tmp_path / "all.json")})
        assert result["OVERALL_ACCURACY"] == pytest.approx(oa)
        assert result["OUTPUT_CSV"] is None
        assert json.loads((tmp_path / "all.json").read_text(encoding="utf-8"))["classes"][0]["name"] == "roof"


def test_rois_digitised_in_a_created_layer_are_assessed(loaded_plugin, potsdam, class_raster, tmp_path):
    """The workflow of the toolbox: create the ROI layer, draw two ROIs, assess the classification."""
    import processing
    from qgis.core import QgsFeature, QgsVectorLayer

    path, predicted, _ = class_raster
    rois = processing.run("cssmamba:createroilayer", {
        "INPUT": potsdam["mosaic.tif"], "CLASSES": "3 low vegetation\n4 tree",
        "OUTPUT": str(tmp_path / "rois.gpkg")})["OUTPUT"]
    layer = QgsVectorLayer(rois, "rois", "ogr")
    blocks = {3: (100, 40, 104, 46), 4: (150, 130, 153, 134)}  # (row0, col0, row1, col1) per class
    features = []
    for class_id, block in blocks.items():
        feature = QgsFeature(layer.fields())
        feature.setAttributes([None, class_id, None])
        feature.setGeometry(_rectangle(*block))
        features.append(feature)
    assert layer.dataProvider().addFeatures(features)[0]
    correct = sum(int((predicted[r0:r1, c0:c1] == cid).sum()) for cid, (r0, c0, r1, c1) in blocks.items())
    total = sum((r1 - r0) * (c1 - c0) for r0, c0, r1, c1 in blocks.values())
    result = processing.run("cssmamba:accuracy", {"INPUT": path, "REFERENCE_VECTOR": rois, "CLASS_FIELD": "class_id",
                                                  "OUTPUT_REPORT": str(tmp_path / "report.html")})
    assert result["OVERALL_ACCURACY"] == pytest.approx(correct / total)
    assert 0 < correct < total  # the blocks were chosen to hold both right and wrong pixels


def test_accuracy_refuses_bad_references_and_outputs_with_clear_messages(loaded_plugin, potsdam, class_raster,
                                                                        tmp_path):
    from qgis.core import QgsFeatureRequest, QgsVectorLayer

    path = class_raster[0]
    base = {"INPUT": path, "OUTPUT_REPORT": str(tmp_path / "report.html")}
    vector = {"REFERENCE_VECTOR": potsdam["rois.gpkg"], "CLASS_FIELD": "class_id"}
    assert "one of them is needed" in _run_error("cssmamba:accuracy", base)
    assert "not both" in _run_error("cssmamba:accuracy", dict(base, REFERENCE_RASTER=potsdam["labels.tif"], **vector))
    assert "have no field 'klasse'" in _run_error("cssmamba:accuracy", dict(base, **dict(vector, CLASS_FIELD="klasse")))
    assert "which is not an integer class id" in _run_error(
        "cssmamba:accuracy", dict(base, **dict(vector, CLASS_FIELD="class_name")))
    dated = QgsVectorLayer("Polygon?crs=EPSG:32633&field=class_id:date", "dated", "memory")
    assert "is of type date, not a number" in _run_error(
        "cssmamba:accuracy", dict(base, REFERENCE_VECTOR=dated, CLASS_FIELD="class_id"))

    far = QgsVectorLayer(potsdam["rois.gpkg"], "rois", "ogr").materialize(QgsFeatureRequest().setLimit(5))
    far.startEditing()
    for feature in far.getFeatures():
        geometry = feature.geometry()
        geometry.translate(1e6, 0)
        far.changeGeometry(feature.id(), geometry)  # unsaved edits: the algorithm must see them
    assert "no features inside the raster extent" in _run_error(
        "cssmamba:accuracy", dict(base, REFERENCE_VECTOR=far, CLASS_FIELD="class_id"))
    far.rollBack()
    shifted = str(tmp_path / "shifted.tif")
    gdal.Translate(shifted, potsdam["labels.tif"], outputBounds=[ORIGIN_X + 1e5, ORIGIN_Y, ORIGIN_X + 1e5 + 4800,
                                                                ORIGIN_Y - 5760])
    assert "is not on the grid of the raster" in _run_error("cssmamba:accuracy",
                                                            dict(base, REFERENCE_RASTER=shifted))
    missing = str(tmp_path / "missing" / "report.html")
    message = _run_error("cssmamba:accuracy", dict(vector, INPUT=path, OUTPUT_REPORT=missing))
    assert "cannot write the HTML report" in message and "does not exist" in message
    assert "it is a folder" in _run_error("cssmamba:accuracy", dict(base, REFERENCE_RASTER=potsdam["labels.tif"],
                                                                    OUTPUT_CSV=str(tmp_path)))


def test_qgis_process_runs_the_accuracy_assessment(potsdam, class_raster, tmp_path):
    path, predicted, labels = class_raster
    report = tmp_path / "report.html"
    run = subprocess.run([QGIS_PROCESS, "--json", "run", "cssmamba:accuracy", "--", f"INPUT={path}",
                          f"REFERENCE_RASTER={potsdam['labels.tif']}", f"OUTPUT_REPORT={report}"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads(run.stdout[run.stdout.index("{"):])["results"]
    assert results["OVERALL_ACCURACY"] == pytest.approx(_expected(predicted, labels)[0])
    assert "Overall accuracy (OA)" in report.read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------------
# cssmamba:roistats

def test_roi_statistics_report_counts_and_warns_through_processing(loaded_plugin, potsdam, tmp_path):
    import processing
    from qgis.core import QgsProcessingFeedback

    class Recorder(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.warnings = []

        def pushWarning(self, text):  # noqa: N802 (QGIS API)
            self.warnings.append(text)

    feedback = Recorder()
    report, data = str(tmp_path / "rois.html"), str(tmp_path / "rois.json")
    result = processing.run("cssmamba:roistats", {
        "INPUT": potsdam["mosaic.tif"], "ROIS": potsdam["rois.gpkg"], "CLASS_FIELD": "class_id",
        "NAME_FIELD": "class_name", "OUTPUT_REPORT": report, "OUTPUT_JSON": data}, feedback=feedback)
    stats = json.loads(open(data, encoding="utf-8").read())
    assert [c["pixels"] for c in stats["classes"]] == [505, 953, 1694, 2070, 91, 359]
    assert result["POORLY_SEPARABLE_PAIRS"] == len([w for w in stats["warnings"] if "JM" in w]) > 0
    assert any("roof" in w and "pavement" in w for w in feedback.warnings)
    page = open(report, encoding="utf-8").read()
    assert "<svg" in page and "Jeffries" in page


def test_qgis_process_runs_the_roi_statistics(potsdam, tmp_path):
    report = tmp_path / "rois.html"
    run = subprocess.run([QGIS_PROCESS, "--json", "run", "cssmamba:roistats", "--", f"INPUT={potsdam['mosaic.tif']}",
                          f"ROIS={potsdam['rois.gpkg']}", "CLASS_FIELD=class_id", f"OUTPUT_REPORT={report}"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout[run.stdout.index("{"):])["results"]["POORLY_SEPARABLE_PAIRS"] > 0
    assert report.is_file()


def test_roi_statistics_and_the_accuracy_assessment_need_no_torch():
    """NEEDS_TORCH = False holds while their engine modules stay torch-free (area-adjusted accuracy too)."""
    code = "import sys, engine.roistats, engine.evaluation, engine.report; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
