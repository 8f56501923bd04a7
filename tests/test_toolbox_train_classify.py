"""``cssmamba:train`` and ``cssmamba:classify`` in a real QGIS (offscreen) on the EnMAP Potsdam scene.

The scene is a 96 x 64 px window of the mosaic holding all six classes, so that the several short
trainings stay fast; one model is trained per module and reused by the classification tests.
"""

import json
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QGIS_PROCESS = os.path.join(ROOT, "scripts", "qgis_process.sh")
CLASS_NAMES = ["roof", "pavement", "low vegetation", "tree", "soil", "water"]
# The colours of enmap_potsdam_rois.qml, the categorised style beside the ROI GeoPackage
ROI_STYLE_COLORS = [[230, 0, 0], [156, 156, 156], [152, 230, 0], [38, 115, 0], [168, 112, 0], [0, 100, 255]]
WINDOW = [64, 96, 96, 64]  # xoff, yoff, cols, rows in the mosaic: all six classes, 263 water pixels
SMALL = {"EPOCHS": 1, "WIDTH": 8, "BANDS": list(range(20, 40)), "DEVICE": 1}  # quick trainings

pytestmark = pytest.mark.qgis


class Feedback:
    """Factory of a QgsProcessingFeedback that records the log (built lazily: QGIS must be running)."""

    @staticmethod
    def make(cancel_when=None):
        from qgis.core import QgsProcessingFeedback

        class Recording(QgsProcessingFeedback):
            def __init__(self):
                super().__init__()
                self.infos, self.warnings, self.progress = [], [], []

            def pushInfo(self, text):  # noqa: N802 (QGIS API)
                self.infos.append(text)
                if cancel_when and cancel_when in text:
                    self.cancel()

            def pushWarning(self, text):  # noqa: N802 (QGIS API)
                self.warnings.append(text)

            def setProgress(self, value):  # noqa: N802 (QGIS API)
                self.progress.append(value)
                super().setProgress(value)

            @property
            def log(self):
                return "\n".join(self.infos + self.warnings)

        return Recording()


@pytest.fixture(scope="module")
def plugin(qgis_app, plugin_module):
    loaded = plugin_module.classFactory(None)
    loaded.initProcessing()
    yield loaded
    loaded.unload()


@pytest.fixture(autouse=True)
def project_layers_removed(qgis_app):
    """Layers a test adds to the project are removed after it."""
    from qgis.core import QgsProject

    before = set(QgsProject.instance().mapLayers())
    yield
    QgsProject.instance().removeMapLayers(list(set(QgsProject.instance().mapLayers()) - before))


@pytest.fixture(scope="module")
def scene(shared_data, tmp_path_factory):
    """The EnMAP window (GeoTIFF, band metadata kept) and the scene's ROI GeoPackage."""
    from osgeo import gdal

    folder = tmp_path_factory.mktemp("scene")
    raster = str(folder / "potsdam.tif")
    gdal.Translate(raster, os.path.join(shared_data, "enmap_potsdam", "enmap_potsdam_mosaic.tif"), srcWin=WINDOW)
    return {"raster": raster, "rois": os.path.join(shared_data, "enmap_potsdam", "enmap_potsdam_rois.gpkg"),
            "folder": folder}


def train(scene, folder, feedback=None, **parameters):
    import processing

    values = {"INPUT": scene["raster"], "ROIS": scene["rois"], "CLASS_FIELD": "class_id", "NAME_FIELD": "class_name",
              "OUTPUT_MODEL": str(folder / "model.pt"), **parameters}
    return processing.run("cssmamba:train", values, feedback=feedback or Feedback.make())


def metadata_of(path):
    from cssmamba.engine.modelfile import load_model

    return load_model(path)[1]


@pytest.fixture(scope="module")
def trained(plugin, scene, tmp_path_factory):
    """One CSSMamba model trained through processing.run with every output, and its log."""
    folder = tmp_path_factory.mktemp("trained")
    feedback = Feedback.make()
    result = train(scene, folder, feedback, EPOCHS=2, DEVICE=1, OUTPUT_REPORT=str(folder / "report.html"),
                   OUTPUT_CLASSIFICATION=str(folder / "classes.tif"))
    return {"result": result, "feedback": feedback, "metadata": metadata_of(result["OUTPUT_MODEL"]),
            "folder": folder}


def grid(path):
    from osgeo import gdal, osr

    ds = gdal.Open(path)
    srs = osr.SpatialReference(wkt=ds.GetProjection())
    return ds.RasterXSize, ds.RasterYSize, ds.GetGeoTransform(), srs.GetAuthorityCode(None)


def qml(path):
    with open(os.path.splitext(path)[0] + ".qml", encoding="utf-8") as handle:
        return handle.read()


def classify(model, raster, folder, feedback=None, **parameters):
    import processing

    values = {"INPUT": raster, "MODEL": model, "DEVICE": 1, "OUTPUT": str(folder / "classes.tif"), **parameters}
    return processing.run("cssmamba:classify", values, feedback=feedback or Feedback.make())


def memory_copy(scene, keep=lambda feature: True, edit=None):
    """The scene's ROIs copied into a memory layer (in the project); ``edit`` runs in an open edit session,
    which is left uncommitted."""
    from qgis.core import QgsFeature, QgsProject, QgsVectorLayer

    source = QgsVectorLayer(scene["rois"], "rois", "ogr")
    layer = QgsVectorLayer(f"Polygon?crs={source.crs().authid()}&field=class_id:integer&field=class_name:string",
                           "memory rois", "memory")
    copies = []
    for feature in filter(keep, source.getFeatures()):
        copy = QgsFeature(layer.fields())
        copy.setGeometry(feature.geometry())
        copy.setAttributes([feature["class_id"], feature["class_name"]])
        copies.append(copy)
    layer.dataProvider().addFeatures(copies)
    QgsProject.instance().addMapLayer(layer)
    if edit is not None:
        layer.startEditing()
        edit(layer)
    return layer


# ------------------------------------------------------------------------------------------------
# Training


def test_train_writes_model_report_and_classification_on_the_input_grid(trained, scene):
    result, metadata = trained["result"], trained["metadata"]
    assert metadata["classes"]["names"] == CLASS_NAMES
    assert metadata["model"]["name"] == "cssmamba" and metadata["provenance"]["epochs_run"] == 2
    assert grid(result["OUTPUT_CLASSIFICATION"]) == grid(scene["raster"])
    style = qml(result["OUTPUT_CLASSIFICATION"])
    assert 'type="paletted"' in style and all(f'label="{name}"' in style for name in CLASS_NAMES)
    assert metadata["classes"]["colors"] == ROI_STYLE_COLORS  # the analyst's colours, read from the ROI style

    with open(result["OUTPUT_REPORT"], encoding="utf-8") as handle:
        report = handle.read()
    metrics = metadata["provenance"]["metrics"]
    assert f"{100 * metrics['overall_accuracy']:.2f} %" in report
    assert f"{100 * metadata['provenance']['best_validation_oa']:.2f} %" in report
    assert all(name in report for name in CLASS_NAMES)
    assert "Parameters of the run" in report and "class_id" in report


def test_train_log_shows_device_backend_pixels_per_class_and_epochs(trained):
    feedback = trained["feedback"]
    log = feedback.log
    assert "Training device: cpu" in log and "training on cpu" in log
    assert "selective scan backend:" in log and "selective-scan backend" in log
    assert all(f"class {cid} {name}" in log for cid, name in enumerate(CLASS_NAMES, start=1))
    assert "epoch 1/2: loss" in log and "epoch 2/2: loss" in log and "val OA" in log
    assert feedback.progress[-1] == pytest.approx(100.0)


def test_class_names_and_colours_come_from_a_categorised_roi_style(plugin, scene, tmp_path):
    """Without a name field, the category labels ("3 low vegetation") name the classes; the
    colours follow the style, also for a memory layer styled in the project."""
    from qgis.core import QgsCategorizedSymbolRenderer, QgsRendererCategory, QgsSymbol
    from qgis.PyQt.QtGui import QColor

    layer = memory_copy(scene)
    categories = []
    for cid in range(1, 7):
        symbol = QgsSymbol.defaultSymbol(layer.geometryType())
        symbol.setColor(QColor(10 * cid, 20 * cid, 30 * cid))
        categories.append(QgsRendererCategory(cid, symbol, f"{cid}: Klasse {cid}"))
    layer.setRenderer(QgsCategorizedSymbolRenderer("class_id", categories))
    result = train(scene, tmp_path, ROIS=layer.id(), NAME_FIELD=None, **SMALL)
    classes = metadata_of(result["OUTPUT_MODEL"])["classes"]
    assert classes["names"] == [f"Klasse {cid}" for cid in range(1, 7)]
    assert classes["colors"] == [[10 * cid, 20 * cid, 30 * cid] for cid in range(1, 7)]


def test_switch_defaults_are_the_model_defaults(plugin):
    from qgis.core import QgsApplication

    from cssmamba.engine.models.registry import default_config
    from cssmamba.engine.training.sampler import LABEL_TILE, LABEL_TILE_RANGE
    from cssmamba.provider.algorithms.train import CLUSTER_LOSSES, GATES, HEAD_KERNELS, TRAINING_WINDOW_MAX

    algorithm = QgsApplication.processingRegistry().algorithmById("cssmamba:train")
    default = {p.name(): p.defaultValue() for p in algorithm.parameterDefinitions()}
    config = default_config("cssmamba")
    assert default["CLUSTERS_PER_CLASS"] == config["clusters_per_class"]
    assert default["TOKEN_SELECTION"] == config["token_selection"]
    assert default["POOLING"] == config["pooling"]
    assert CLUSTER_LOSSES[default["CLUSTER_LOSS"]] == config["cluster_loss"]
    assert GATES[default["GATE"]] == config["gate"]
    assert HEAD_KERNELS[default["HEAD"]] == config["head_kernel"]
    assert TRAINING_WINDOW_MAX == LABEL_TILE_RANGE[1]
    assert f"(0 = {LABEL_TILE})" in algorithm.parameterDefinition("TRAINING_WINDOW").description()


def test_rois_in_another_crs_give_the_same_labels(trained, scene, tmp_path):
    import processing

    reprojected = processing.run("native:reprojectlayer", {
        "INPUT": scene["rois"], "TARGET_CRS": "EPSG:4326", "OUTPUT": str(tmp_path / "rois_4326.gpkg")})["OUTPUT"]
    feedback = Feedback.make()
    result = train(scene, tmp_path, feedback, ROIS=reprojected, **SMALL)
    assert "reprojected from EPSG:4326" in feedback.log
    counts = metadata_of(result["OUTPUT_MODEL"])["provenance"]["split"]["counts"]
    assert counts == trained["metadata"]["provenance"]["split"]["counts"]


def test_memory_layer_with_unsaved_edits_is_used_and_null_class_ids_are_skipped(plugin, scene, tmp_path):
    def edit(layer):
        index = layer.fields().lookupField("class_id")
        features = list(layer.getFeatures())
        layer.deleteFeatures([f.id() for f in features if f["class_id"] == 6])
        for feature in features:
            if feature["class_id"] == 1:
                layer.changeAttributeValue(feature.id(), index, None)

    layer = memory_copy(scene, edit=edit)
    assert layer.isModified()
    feedback = Feedback.make()
    result = train(scene, tmp_path, feedback, ROIS=layer.id(), **SMALL)
    assert metadata_of(result["OUTPUT_MODEL"])["classes"]["names"] == CLASS_NAMES[1:5]
    assert any("have no value in 'class_id'" in text for text in feedback.warnings), feedback.warnings


def test_unsaved_edits_of_a_geopackage_layer_are_used(plugin, scene, tmp_path):
    import shutil

    from qgis.core import QgsProject, QgsVectorLayer

    copy = str(tmp_path / "rois.gpkg")
    shutil.copy(scene["rois"], copy)
    layer = QgsVectorLayer(copy, "rois on disk", "ogr")
    QgsProject.instance().addMapLayer(layer)
    layer.startEditing()
    layer.deleteFeatures([f.id() for f in layer.getFeatures() if f["class_id"] == 5])
    feedback = Feedback.make()
    result = train(scene, tmp_path, feedback, ROIS=layer.id(), **SMALL)
    assert "has unsaved edits; they are used" in feedback.log
    assert metadata_of(result["OUTPUT_MODEL"])["classes"]["ids"] == [1, 2, 3, 4, 6]


def test_selected_features_only(plugin, scene, tmp_path):
    from qgis.core import QgsProcessingFeatureSourceDefinition, QgsProject, QgsVectorLayer

    layer = QgsVectorLayer(scene["rois"], "rois", "ogr")
    QgsProject.instance().addMapLayer(layer)
    layer.selectByExpression('"class_id" IN (2, 4, 6)')
    result = train(scene, tmp_path, ROIS=QgsProcessingFeatureSourceDefinition(layer.id(), True), **SMALL)
    assert metadata_of(result["OUTPUT_MODEL"])["classes"]["ids"] == [2, 4, 6]


def test_validation_rois_replace_the_split(plugin, scene, tmp_path):
    from qgis.core import QgsProcessingFeatureSourceDefinition, QgsProject, QgsVectorLayer

    layer = QgsVectorLayer(scene["rois"], "rois", "ogr")
    QgsProject.instance().addMapLayer(layer)
    layer.selectByExpression('"fid" % 2 = 0')
    validation = memory_copy(scene, keep=lambda feature: feature.id() % 2 == 1)
    feedback = Feedback.make()
    result = train(scene, tmp_path, feedback, ROIS=QgsProcessingFeatureSourceDefinition(layer.id(), True),
                   VALIDATION_ROIS=validation.id(), **SMALL)
    assert "SPLIT is not used" in feedback.log
    split = metadata_of(result["OUTPUT_MODEL"])["provenance"]["split"]
    assert split["mode"] == "validation-set" and sum(split["counts"]["validation"]) > 0


def test_cancel_after_the_first_epoch_leaves_no_model_file(plugin, scene, tmp_path):
    feedback = Feedback.make(cancel_when="epoch 1/3")
    result = train(scene, tmp_path, feedback, OUTPUT_REPORT=str(tmp_path / "report.html"),
                   **dict(SMALL, EPOCHS=3))
    assert result == {}
    assert "Training cancelled; no model file was written." in feedback.warnings
    assert not any("epoch 2/3" in text for text in feedback.infos)
    assert os.listdir(tmp_path) == []


def test_cancel_while_classifying_the_scene_keeps_the_trained_model(plugin, scene, tmp_path):
    feedback = Feedback.make(cancel_when="model written to")
    result = train(scene, tmp_path, feedback, OUTPUT_REPORT=str(tmp_path / "report.html"),
                   OUTPUT_CLASSIFICATION=str(tmp_path / "classes.tif"), **SMALL)
    assert sorted(result) == ["OUTPUT_MODEL", "OUTPUT_REPORT"]
    assert any("Classification of the training scene cancelled" in text for text in feedback.warnings)
    assert sorted(os.listdir(tmp_path)) == ["model.pt", "report.html"]


def test_the_head_neighbourhood_reaches_the_cssmamba_model(plugin, scene, tmp_path):
    result = train(scene, tmp_path, HEAD=1, **SMALL)
    assert metadata_of(result["OUTPUT_MODEL"])["model"]["config"]["head_kernel"] == 5


def test_the_training_window_size_reaches_the_engine(plugin, scene, tmp_path):
    feedback = Feedback.make()
    train(scene, tmp_path, feedback, TRAINING_WINDOW=128, **SMALL)
    assert "training window size (128 px) does not apply" in feedback.log     # the scene is within one tile


def test_mambahsi_ignores_the_cssmamba_switches_and_has_no_cluster_map(plugin, scene, tmp_path):
    feedback = Feedback.make()
    result = train(scene, tmp_path, feedback, MODEL=1, CLUSTERS_PER_CLASS=2, POOLING=True, HEAD=1, **SMALL)
    assert any("CLUSTERS_PER_CLASS, POOLING, HEAD apply to CSSMamba only" in text for text in feedback.warnings)
    assert metadata_of(result["OUTPUT_MODEL"])["model"]["name"] == "mambahsi"

    feedback = Feedback.make()
    outputs = classify(result["OUTPUT_MODEL"], scene["raster"], tmp_path, feedback,
                       OUTPUT_CLUSTERS=str(tmp_path / "clusters.tif"))
    assert "there is no cluster map" in feedback.log
    assert "OUTPUT_CLUSTERS" not in outputs and not os.path.exists(tmp_path / "clusters.tif")
    assert os.path.isfile(outputs["OUTPUT"])


# ------------------------------------------------------------------------------------------------
# Classification


def test_classify_writes_styled_outputs_on_the_input_grid(trained, scene, tmp_path):
    outputs = classify(trained["result"]["OUTPUT_MODEL"], scene["raster"], tmp_path,
                       OUTPUT_CONFIDENCE=str(tmp_path / "confidence.tif"),
                       OUTPUT_CLUSTERS=str(tmp_path / "clusters.tif"),
                       OUTPUT_PROBABILITIES=str(tmp_path / "probabilities.tif"))
    for name in ("OUTPUT", "OUTPUT_CONFIDENCE", "OUTPUT_CLUSTERS", "OUTPUT_PROBABILITIES"):
        assert grid(outputs[name]) == grid(scene["raster"]), name
    assert all(f'label="{name}"' in qml(outputs["OUTPUT"]) for name in CLASS_NAMES)
    confidence = qml(outputs["OUTPUT_CONFIDENCE"])
    assert 'type="singlebandpseudocolor"' in confidence
    assert 'classificationMin="0"' in confidence and 'classificationMax="1"' in confidence
    clusters = qml(outputs["OUTPUT_CLUSTERS"])
    assert 'label="roof · cluster 1"' in clusters and 'label="water · cluster 3"' in clusters
    probabilities = qml(outputs["OUTPUT_PROBABILITIES"])      # the first class's band, on the 0-1 ramp
    assert 'type="singlebandpseudocolor"' in probabilities and 'band="1"' in probabilities
    assert 'classificationMin="0"' in probabilities and 'classificationMax="1"' in probabilities


def test_classify_writes_the_cleaned_class_maps_styled_like_the_class_map(trained, scene, tmp_path):
    import numpy as np
    from osgeo import gdal

    from engine.inference.postprocess import majority, sieve

    outputs = classify(trained["result"]["OUTPUT_MODEL"], scene["raster"], tmp_path,
                       OUTPUT_SIEVED=str(tmp_path / "mmu.tif"), OUTPUT_MAJORITY=str(tmp_path / "majority.tif"),
                       MIN_MAPPING_UNIT=6, CONNECTEDNESS=1, MAJORITY_WINDOW=5)
    read = lambda path: gdal.Open(path).ReadAsArray()   # noqa: E731
    expected_sieve = sieve(outputs["OUTPUT"], str(tmp_path / "sieve_check.tif"), 6, 4)
    expected_majority = majority(outputs["OUTPUT"], str(tmp_path / "majority_check.tif"), 5)
    assert np.array_equal(read(outputs["OUTPUT_SIEVED"]), read(expected_sieve))
    assert np.array_equal(read(outputs["OUTPUT_MAJORITY"]), read(expected_majority))
    assert not np.array_equal(read(outputs["OUTPUT_MAJORITY"]), read(outputs["OUTPUT"]))
    for name in ("OUTPUT_SIEVED", "OUTPUT_MAJORITY"):
        assert all(f'label="{label}"' in qml(outputs[name]) for label in CLASS_NAMES), name
    message = refused(classify, trained["result"]["OUTPUT_MODEL"], scene["raster"], tmp_path,
                      OUTPUT_MAJORITY=str(tmp_path / "even.tif"), MAJORITY_WINDOW=4)
    assert "odd number" in message


def test_a_random_forest_trains_and_classifies_through_the_same_tools(plugin, scene, tmp_path):
    """The classical baseline is a model choice of 'Train CSSMamba': same ROIs, split, report and model
    file, classified by 'Classify raster'; the deep-model settings the user changed are named as ignored."""
    feedback = Feedback.make()
    result = train(scene, tmp_path, feedback, MODEL=2, EPOCHS=7, OUTPUT_REPORT=str(tmp_path / "report.html"))
    metadata = metadata_of(result["OUTPUT_MODEL"])
    assert metadata["model"]["name"] == "rf" and metadata["model"]["config"]["trees"] == 500
    assert metadata["provenance"]["epochs"] == 1 and "Epochs" in feedback.log and "ignored" in feedback.log
    assert metadata["provenance"]["metrics"]["overall_accuracy"] > 0.3
    outputs = classify(result["OUTPUT_MODEL"], scene["raster"], tmp_path, OUTPUT_CONFIDENCE=str(tmp_path / "p.tif"))
    assert grid(outputs["OUTPUT"]) == grid(scene["raster"])
    assert all(f'label="{name}"' in qml(outputs["OUTPUT"]) for name in CLASS_NAMES)


def test_compare_models_writes_the_report_and_loads_the_styled_class_maps(plugin, scene, tmp_path):
    import processing
    from qgis.core import QgsPalettedRasterRenderer, QgsProject

    feedback = Feedback.make()
    result = processing.runAndLoadResults("cssmamba:compare", {
        "INPUT": scene["raster"], "ROIS": scene["rois"], "CLASS_FIELD": "class_id", "NAME_FIELD": "class_name",
        "MODELS": [0, 1], "SPLIT": 0, "DEVICE": 1, "OUTPUT_FOLDER": str(tmp_path / "compare")}, feedback=feedback)
    with open(result["OUTPUT_REPORT"], encoding="utf-8") as handle:
        page = handle.read()
    assert page.count("data:image/png;base64,") == 2 and "fixed, seed 0" in page
    assert 0 < result["BEST_OVERALL_ACCURACY"] <= 1 and "svm: OA" in feedback.log
    layers = {layer.name(): layer for layer in QgsProject.instance().mapLayers().values()
              if layer.source().startswith(str(tmp_path))}
    assert sorted(layers) == ["potsdam rf classes", "potsdam svm classes"]
    assert all(isinstance(layer.renderer(), QgsPalettedRasterRenderer) for layer in layers.values())
    assert "at least two different models" in refused(processing.run, "cssmamba:compare", {
        "INPUT": scene["raster"], "ROIS": scene["rois"], "CLASS_FIELD": "class_id", "MODELS": [1],
        "OUTPUT_FOLDER": str(tmp_path / "one")})


def test_suggested_training_areas_are_loaded_as_stars_in_the_class_colours(trained, scene, tmp_path):
    import processing
    from qgis.core import QgsCategorizedSymbolRenderer, QgsProject

    result = processing.runAndLoadResults("cssmamba:suggest", {
        "INPUT": scene["raster"], "MODEL": trained["result"]["OUTPUT_MODEL"], "ROIS": scene["rois"],
        "CLASS_FIELD": "class_id", "COUNT": 5, "MIN_DISTANCE": 3, "DEVICE": 1,
        "OUTPUT": str(tmp_path / "suggestions.gpkg")}, feedback=Feedback.make())
    layer = [layer for layer in QgsProject.instance().mapLayers().values()
             if layer.source().startswith(result["OUTPUT"])][0]
    assert layer.name() == "potsdam suggested training areas" and layer.featureCount() == 5
    renderer = layer.renderer()
    assert isinstance(renderer, QgsCategorizedSymbolRenderer) and renderer.classAttribute() == "predicted_id"
    assert [c.label() for c in renderer.categories()] == [f"suggested: {name}" for name in CLASS_NAMES]
    assert all("undecided between" in feature["reason"] for feature in layer.getFeatures())


def test_outputs_loaded_on_completion_are_styled_and_named(trained, scene, tmp_path):
    import processing
    from qgis.core import QgsPalettedRasterRenderer, QgsProject, QgsSingleBandPseudoColorRenderer

    processing.runAndLoadResults("cssmamba:classify", {
        "INPUT": scene["raster"], "MODEL": trained["result"]["OUTPUT_MODEL"], "DEVICE": 1,
        "OUTPUT": str(tmp_path / "c.tif"), "OUTPUT_CONFIDENCE": str(tmp_path / "p.tif"),
        "OUTPUT_CLUSTERS": str(tmp_path / "k.tif")})
    project = QgsProject.instance()
    layers = {layer.name(): layer for layer in project.mapLayers().values()
              if layer.source().startswith(str(tmp_path))}
    assert sorted(layers) == ["potsdam classes", "potsdam clusters", "potsdam confidence"]
    classes = layers["potsdam classes"].renderer()
    assert isinstance(classes, QgsPalettedRasterRenderer)
    assert [c.label for c in classes.classes()] == CLASS_NAMES
    assert [c.color.getRgb()[:3] for c in classes.classes()] == [
        tuple(rgb) for rgb in trained["metadata"]["classes"]["colors"]]
    confidence = layers["potsdam confidence"].renderer()
    assert isinstance(confidence, QgsSingleBandPseudoColorRenderer)
    assert (confidence.classificationMin(), confidence.classificationMax()) == (0.0, 1.0)
    clusters = layers["potsdam clusters"].renderer()
    assert len(clusters.classes()) == 3 * len(CLASS_NAMES) and clusters.classes()[3].label == "pavement · cluster 1"


def test_cancelled_classification_leaves_no_output(trained, scene, tmp_path):
    feedback = Feedback.make(cancel_when="Model cssmamba")
    outputs = classify(trained["result"]["OUTPUT_MODEL"], scene["raster"], tmp_path, feedback,
                       OUTPUT_CONFIDENCE=str(tmp_path / "confidence.tif"))
    assert outputs == {} and "Classification cancelled; no output was written." in feedback.warnings
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------------------
# qgis_process, end to end


def run_qgis_process(*args):
    return subprocess.run([QGIS_PROCESS, "run", *args], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_qgis_process_trains_and_classifies(scene, tmp_path):
    model = tmp_path / "model.pt"
    trained = run_qgis_process("cssmamba:train", "--", f"INPUT={scene['raster']}", f"ROIS={scene['rois']}",
                               "CLASS_FIELD=class_id", "NAME_FIELD=class_name", "EPOCHS=1", "WIDTH=8", "DEVICE=1",
                               f"OUTPUT_MODEL={model}", f"OUTPUT_REPORT={tmp_path / 'report.html'}")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert model.is_file() and (tmp_path / "report.html").is_file()
    classified = run_qgis_process("cssmamba:classify", "--", f"INPUT={scene['raster']}", f"MODEL={model}",
                                  "DEVICE=1", f"OUTPUT={tmp_path / 'classes.tif'}",
                                  f"OUTPUT_CONFIDENCE={tmp_path / 'confidence.tif'}")
    assert classified.returncode == 0, classified.stdout + classified.stderr
    assert grid(str(tmp_path / "classes.tif")) == grid(scene["raster"])
    assert all(f'label="{name}"' in qml(str(tmp_path / "classes.tif")) for name in CLASS_NAMES)
    assert (tmp_path / "confidence.qml").is_file()


def test_qgis_process_compares_models_suggests_and_cleans_the_map(scene, tmp_path):
    compared = run_qgis_process("cssmamba:compare", "--", f"INPUT={scene['raster']}", f"ROIS={scene['rois']}",
                                "CLASS_FIELD=class_id", "MODELS=0,1", "SPLIT=0", "DEVICE=1",
                                f"OUTPUT_FOLDER={tmp_path / 'compare'}")
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert (tmp_path / "compare" / "compare.html").is_file() and (tmp_path / "compare" / "svm.pt").is_file()
    suggested = run_qgis_process("cssmamba:suggest", "--", f"INPUT={scene['raster']}",
                                 f"MODEL={tmp_path / 'compare' / 'svm.pt'}", "COUNT=4", "DEVICE=1",
                                 f"OUTPUT={tmp_path / 'suggestions.gpkg'}")
    assert suggested.returncode == 0, suggested.stdout + suggested.stderr
    assert "undecided between" in suggested.stdout
    cleaned = run_qgis_process("cssmamba:classify", "--", f"INPUT={scene['raster']}",
                               f"MODEL={tmp_path / 'compare' / 'rf.pt'}", "DEVICE=1",
                               f"OUTPUT={tmp_path / 'classes.tif'}", f"OUTPUT_SIEVED={tmp_path / 'mmu.tif'}",
                               "MIN_MAPPING_UNIT=4")
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert all(f'label="{name}"' in qml(str(tmp_path / "mmu.tif")) for name in CLASS_NAMES)


# ------------------------------------------------------------------------------------------------
# Bad input: each refused with a QgsProcessingException that names the problem


def refused(run, *args, **kwargs) -> str:
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException) as error:
        run(*args, **kwargs)
    return str(error.value)


def test_train_refuses_an_empty_roi_layer(plugin, scene, tmp_path):
    layer = memory_copy(scene, keep=lambda feature: False)
    assert "has no features" in refused(train, scene, tmp_path, ROIS=layer.id(), **SMALL)


def test_train_refuses_rois_outside_the_raster(plugin, scene, tmp_path):
    from qgis.core import QgsGeometry

    def move_away(layer):
        for feature in list(layer.getFeatures()):
            geometry = QgsGeometry(feature.geometry())
            geometry.translate(0, -500000)
            layer.changeGeometry(feature.id(), geometry)

    layer = memory_copy(scene, edit=move_away)
    message = refused(train, scene, tmp_path, ROIS=layer.id(), **SMALL)
    assert "no features inside the raster extent" in message


def test_train_refuses_a_missing_class_field(plugin, scene, tmp_path):
    message = refused(train, scene, tmp_path, CLASS_FIELD="klasse", **SMALL)
    assert "has no field 'klasse'" in message and "class_id, class_name" in message


def test_train_refuses_a_text_class_field(plugin, scene, tmp_path):
    message = refused(train, scene, tmp_path, CLASS_FIELD="class_name", **SMALL)
    assert "'class_name' holds" in message and "not numbers" in message


def test_train_refuses_a_single_class(plugin, scene, tmp_path):
    layer = memory_copy(scene, keep=lambda feature: feature["class_id"] == 4)
    message = refused(train, scene, tmp_path, ROIS=layer.id(), **SMALL)
    assert "only one class (id 4" in message


def test_train_refuses_an_output_it_cannot_write(plugin, scene, tmp_path):
    missing = tmp_path / "no such folder"
    message = refused(train, scene, tmp_path, OUTPUT_MODEL=str(missing / "model.pt"), **SMALL)
    assert "model file" in message and "does not exist" in message
    message = refused(train, scene, tmp_path, OUTPUT_REPORT=str(missing / "report.html"), **SMALL)
    assert "report" in message and "does not exist" in message
    assert os.listdir(tmp_path) == []


def test_train_refuses_to_write_the_model_over_its_input_raster(plugin, scene, tmp_path):
    import hashlib

    before = hashlib.sha256(open(scene["raster"], "rb").read()).hexdigest()
    message = refused(train, scene, tmp_path, OUTPUT_MODEL=scene["raster"], **SMALL)
    assert "is the input raster" in message and "would destroy the input" in message
    assert hashlib.sha256(open(scene["raster"], "rb").read()).hexdigest() == before


def test_train_refuses_to_write_a_report_over_the_roi_file(plugin, scene, tmp_path):
    """The ROI layer reaches the engine as a temporary export when it has edits or a selection, so the
    provider checks the layer's own file too."""
    import hashlib
    import shutil

    rois = str(tmp_path / "rois.gpkg")
    shutil.copy(scene["rois"], rois)
    before = hashlib.sha256(open(rois, "rb").read()).hexdigest()
    message = refused(train, scene, tmp_path, ROIS=rois, OUTPUT_REPORT=rois, **SMALL)
    assert "would destroy the input" in message
    assert hashlib.sha256(open(rois, "rb").read()).hexdigest() == before


def test_a_model_file_without_the_pt_extension_gets_it_so_classify_accepts_it(plugin, scene, tmp_path):
    feedback = Feedback.make()
    result = train(scene, tmp_path, feedback, OUTPUT_MODEL=str(tmp_path / "m.model"), **SMALL)
    assert result["OUTPUT_MODEL"] == str(tmp_path / "m.model.pt") and os.path.isfile(result["OUTPUT_MODEL"])
    assert "gets the extension .pt" in feedback.log and not (tmp_path / "m.model").exists()
    classify(result["OUTPUT_MODEL"], scene["raster"], tmp_path)


def test_classify_reads_the_bands_named_in_bands(trained, scene, tmp_path):
    """A raster with more bands than the training raster (no wavelengths in this copy) is classified from the
    bands that BANDS names, and gives the same map as the training raster."""
    from osgeo import gdal

    model = trained["result"]["OUTPUT_MODEL"]
    indices = trained["metadata"]["bands"]["indices"]
    wider = str(tmp_path / "wider.vrt")
    gdal.BuildVRT(wider, [scene["raster"]], bandList=list(range(1, 225)) + [1, 2])
    ds = gdal.Open(wider, gdal.GA_Update)
    for b in range(1, ds.RasterCount + 1):
        ds.GetRasterBand(b).SetMetadata({})
    ds = None
    assert "has 226 bands" in refused(classify, model, wider, tmp_path)
    named = classify(model, wider, tmp_path, BANDS=indices, OUTPUT=str(tmp_path / "named.tif"))
    same = classify(model, scene["raster"], tmp_path, OUTPUT=str(tmp_path / "same.tif"))
    assert (gdal.Open(named["OUTPUT"]).ReadAsArray() == gdal.Open(same["OUTPUT"]).ReadAsArray()).all()


def test_cuda_without_a_gpu_is_refused_and_auto_falls_back_to_the_cpu(trained, scene, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "PyTorch sees no CUDA GPU" in refused(train, scene, tmp_path, **dict(SMALL, DEVICE=2))
    model = trained["result"]["OUTPUT_MODEL"]
    assert "PyTorch sees no CUDA GPU" in refused(classify, model, scene["raster"], tmp_path, DEVICE=2)
    feedback = Feedback.make()
    classify(model, scene["raster"], tmp_path, feedback, DEVICE=0)
    assert " on cpu in " in feedback.log
    feedback = Feedback.make(cancel_when="Training device")  # the device is all this run is for
    assert train(scene, tmp_path, feedback, **dict(SMALL, DEVICE=0)) == {}
    assert "Training device: cpu (Auto: PyTorch sees no CUDA GPU)" in feedback.infos


def test_classify_refuses_a_raster_with_other_bands(trained, tmp_path):
    from osgeo import gdal

    raster = str(tmp_path / "ten_bands.tif")
    gdal.GetDriverByName("GTiff").Create(raster, 8, 8, 10, gdal.GDT_Int16)
    message = refused(classify, trained["result"]["OUTPUT_MODEL"], raster, tmp_path)
    assert "has 10 bands but the training raster had 224 (218 in use" in message and "Bands" in message


def test_classify_refuses_a_file_that_is_not_a_model(trained, scene, tmp_path):
    model = tmp_path / "notes.pt"
    model.write_bytes(b"not a model")
    assert "is not a valid CSSMamba model file" in refused(classify, str(model), scene["raster"], tmp_path)


def test_classify_refuses_a_model_from_a_newer_plugin(trained, scene, tmp_path):
    import torch

    model = str(tmp_path / "future.pt")
    torch.save({"format": "cssmamba-model", "metadata_json": json.dumps({"format_version": 99}), "state_dict": {}},
               model)
    message = refused(classify, model, scene["raster"], tmp_path)
    assert "newer version of the plugin" in message and "update the plugin" in message


def test_classify_refuses_outputs_it_cannot_write(trained, scene, tmp_path):
    model = trained["result"]["OUTPUT_MODEL"]
    message = refused(classify, model, scene["raster"], tmp_path, OUTPUT=str(tmp_path / "missing" / "c.tif"))
    assert "does not exist" in message
    assert ".tif" in refused(classify, model, scene["raster"], tmp_path, OUTPUT=str(tmp_path / "classes.img"))
