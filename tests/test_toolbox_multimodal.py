"""``cssmamba:trainmultimodal`` and ``cssmamba:classify`` with auxiliary rasters in a real QGIS (offscreen)
on the MUUFL crop: 64-band HSI, the LiDAR's elevation and intensity as two single-band auxiliary rasters,
and training ROIs polygonised from the crop's labels, styled by category like an analyst's layer.

M3amba is trained once per module (1 epoch, tiny width and depth, without the CLIP branch: no CLIP
weights exist on the test machines) and reused by the classification tests.
"""

import csv
import os

import pytest

from test_toolbox_train_classify import Feedback, grid, qml, refused, run_qgis_process

TINY = {"NO_CLIP": True, "EPOCHS": 1, "WIDTH": 8, "DEPTH": 1, "DEVICE": 1}
# Colours of the ROI layer's categorised style, unlike those the engine would generate
ROI_COLORS = {cid: [10 * cid, 250 - 20 * cid, 30 + 15 * cid] for cid in range(1, 12)}
PRESENT = [1, 2, 3, 5, 7, 8, 9, 10]  # the classes of the crop

pytestmark = pytest.mark.qgis


@pytest.fixture(scope="module")
def plugin(qgis_app, plugin_module):
    loaded = plugin_module.classFactory(None)
    loaded.initProcessing()
    yield loaded
    loaded.unload()


@pytest.fixture(scope="module")
def muufl(shared_data, tmp_path_factory, qgis_app):
    """HSI, DSM and intensity rasters, and the ROI GeoPackage with its categorised style (.qml beside it)."""
    from osgeo import gdal, ogr
    from qgis.core import QgsCategorizedSymbolRenderer, QgsRendererCategory, QgsSymbol, QgsVectorLayer
    from qgis.PyQt.QtGui import QColor

    source = os.path.join(shared_data, "muufl_crop")
    folder = tmp_path_factory.mktemp("muufl")
    paths = {"hsi": os.path.join(source, "muufl_hsi.tif"), "rois": str(folder / "rois.gpkg"), "folder": folder}
    for name, band in (("dsm", 1), ("intensity", 2)):
        paths[name] = str(folder / f"{name}.tif")
        gdal.Translate(paths[name], os.path.join(source, "muufl_lidar.tif"), bandList=[band])
    with open(os.path.join(source, "classes.csv"), encoding="utf-8") as handle:
        names = {int(row["id"]): row["name"] for row in csv.DictReader(handle)}
    labels = gdal.Open(os.path.join(source, "muufl_labels.tif"))
    dataset = ogr.GetDriverByName("GPKG").CreateDataSource(paths["rois"])
    polygons = dataset.CreateLayer("rois", None, ogr.wkbPolygon)
    polygons.CreateField(ogr.FieldDefn("class_id", ogr.OFTInteger))
    polygons.CreateField(ogr.FieldDefn("class_name", ogr.OFTString))
    band = labels.GetRasterBand(1)
    gdal.Polygonize(band, band.GetMaskBand(), polygons, 0)
    for feature in polygons:
        feature.SetField("class_name", names[feature.GetField("class_id")])
        polygons.SetFeature(feature)
    polygons = dataset = labels = None

    layer = QgsVectorLayer(paths["rois"], "rois", "ogr")
    categories = []
    for cid, rgb in ROI_COLORS.items():
        symbol = QgsSymbol.defaultSymbol(layer.geometryType())
        symbol.setColor(QColor(*rgb))
        categories.append(QgsRendererCategory(cid, symbol, names[cid]))
    layer.setRenderer(QgsCategorizedSymbolRenderer("class_id", categories))
    assert layer.saveNamedStyle(str(folder / "rois.qml"))[1]
    paths["names"] = [names[cid] for cid in PRESENT]
    return paths


def train(muufl, folder, feedback=None, **parameters):
    import processing

    values = {"INPUT": muufl["hsi"], "AUX_RASTERS": [muufl["dsm"], muufl["intensity"]], "ROIS": muufl["rois"],
              "CLASS_FIELD": "class_id", "NAME_FIELD": "class_name", "OUTPUT_MODEL": str(folder / "model.pt"),
              **TINY, **parameters}
    return processing.run("cssmamba:trainmultimodal", values, feedback=feedback or Feedback.make())


def classify(model, muufl, folder, feedback=None, **parameters):
    import processing

    values = {"INPUT": muufl["hsi"], "MODEL": model, "DEVICE": 1, "OUTPUT": str(folder / "classes.tif"), **parameters}
    return processing.run("cssmamba:classify", values, feedback=feedback or Feedback.make())


def metadata_of(path):
    from cssmamba.engine.modelfile import load_model

    return load_model(path)[1]


@pytest.fixture(scope="module")
def trained(plugin, muufl, tmp_path_factory):
    folder = tmp_path_factory.mktemp("trained")
    feedback = Feedback.make()
    result = train(muufl, folder, feedback, OUTPUT_REPORT=str(folder / "report.html"))
    return {"result": result, "feedback": feedback, "metadata": metadata_of(result["OUTPUT_MODEL"])}


# ------------------------------------------------------------------------------------------------
# Training


def test_train_writes_the_model_with_its_modalities_in_order_and_the_report(trained, muufl):
    metadata, log = trained["metadata"], trained["feedback"].log
    assert [(m["name"], m["bands"]) for m in metadata["modalities"]] == [
        ("muufl_hsi.tif", 64), ("dsm.tif", 1), ("intensity.tif", 1)]
    assert [m["resampling"] for m in metadata["modalities"]] == [None, "bilinear", "bilinear"]
    config = metadata["model"]["config"]
    assert (metadata["model"]["name"], config["dim"], config["depth"], config["use_clip"]) == ("m3amba", 8, 1, False)
    assert metadata["clip"] is None and metadata["provenance"]["epochs_run"] == 1
    assert metadata["classes"]["ids"] == PRESENT and metadata["classes"]["names"] == muufl["names"]
    assert metadata["classes"]["colors"] == [ROI_COLORS[cid] for cid in PRESENT]  # from the ROI layer's style
    assert "Class colours taken from the categorised style of the ROI layer." in log
    assert "Training device: cpu" in log and "epoch 1/1: loss" in log and "selective-scan backend" in log
    assert "auxiliary rasters in this order: " + muufl["dsm"] + ", " + muufl["intensity"] in log
    assert trained["feedback"].progress[-1] == pytest.approx(100.0)

    with open(trained["result"]["OUTPUT_REPORT"], encoding="utf-8") as handle:
        report = handle.read()
    assert f"{100 * metadata['provenance']['metrics']['overall_accuracy']:.2f} %" in report
    assert all(name in report for name in muufl["names"])
    assert "auxiliary rasters, in order" in report and "dsm.tif (1 band(s), bilinear); " in report
    assert "not used (the ablation without the CLIP branch)" in report and "AUX_RASTERS" in report


def test_defaults_and_help_follow_the_engine(plugin):
    from qgis.core import QgsApplication

    from cssmamba.engine import multimodal
    from cssmamba.engine.data.auxiliary import DEFAULT_RESAMPLING, RESAMPLING
    from cssmamba.provider.algorithms import train_multimodal

    algorithm = QgsApplication.processingRegistry().algorithmById("cssmamba:trainmultimodal")
    default = {p.name(): p.defaultValue() for p in algorithm.parameterDefinitions()}
    assert (default["EPOCHS"], default["LEARNING_RATE"]) == (multimodal.EPOCHS, multimodal.LEARNING_RATE)
    assert train_multimodal.RESAMPLING == tuple(RESAMPLING)
    assert train_multimodal.RESAMPLING[default["AUX_RESAMPLING"]] == DEFAULT_RESAMPLING
    url = multimodal._CLIP_URL.format(sha=multimodal.KNOWN_CHECKPOINTS[multimodal.VIT_B_32][1])
    assert url in algorithm.shortHelpString()


def test_cancel_after_the_first_epoch_leaves_no_model_file(plugin, muufl, tmp_path):
    feedback = Feedback.make(cancel_when="epoch 1/2")
    result = train(muufl, tmp_path, feedback, OUTPUT_REPORT=str(tmp_path / "report.html"), EPOCHS=2)
    assert result == {} and "Training cancelled; no model file was written." in feedback.warnings
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------------------
# Classification


def test_classify_with_aux_rasters_writes_styled_outputs_on_the_hsi_grid(trained, muufl, tmp_path):
    feedback = Feedback.make()
    outputs = classify(trained["result"]["OUTPUT_MODEL"], muufl, tmp_path, feedback,
                       AUX_RASTERS=[muufl["dsm"], muufl["intensity"]], TILE_SIZE=64,
                       OUTPUT_CONFIDENCE=str(tmp_path / "confidence.tif"), OUTPUT_CLUSTERS=str(tmp_path / "k.tif"))
    assert sorted(outputs) == ["OUTPUT", "OUTPUT_CONFIDENCE"]
    for name in outputs:
        assert grid(outputs[name]) == grid(muufl["hsi"]), name
    style = qml(outputs["OUTPUT"])
    assert all(f'label="{name}"' in style for name in muufl["names"])
    assert 'color="#0ae62d"' in style  # class 1's colour in the ROI style, (10, 230, 45)
    assert 'type="singlebandpseudocolor"' in qml(outputs["OUTPUT_CONFIDENCE"])
    assert "there is no cluster map" in feedback.log and not os.path.exists(tmp_path / "k.tif")
    assert any("TILE_SIZE: not used by multi-modal models" in text for text in feedback.warnings)


def test_classify_a_multimodal_model_without_or_with_the_wrong_number_of_aux_rasters(trained, muufl, tmp_path):
    model = trained["result"]["OUTPUT_MODEL"]
    message = refused(classify, model, muufl, tmp_path)
    assert "needs 2 auxiliary raster(s) in AUX_RASTERS" in message
    assert "1. dsm.tif (1 band); 2. intensity.tif (1 band)" in message
    message = refused(classify, model, muufl, tmp_path, AUX_RASTERS=[muufl["dsm"]])
    assert "AUX_RASTERS holds 1 raster(s), but the m3amba model was trained with 2" in message
    assert "same order" in message
    assert os.listdir(tmp_path) == []


def test_aux_rasters_for_a_single_modal_model_are_ignored_with_a_warning(plugin, muufl, tmp_path):
    import processing

    model = processing.run("cssmamba:train", {
        "INPUT": muufl["hsi"], "ROIS": muufl["rois"], "CLASS_FIELD": "class_id", "MODEL": 1, "EPOCHS": 1,
        "WIDTH": 8, "DEVICE": 1, "OUTPUT_MODEL": str(tmp_path / "mambahsi.pt")})["OUTPUT_MODEL"]
    feedback = Feedback.make()
    outputs = classify(model, muufl, tmp_path, feedback, AUX_RASTERS=[muufl["dsm"]])
    assert any("reads the hyperspectral raster only, so the 1 raster(s) in AUX_RASTERS are ignored" in text
               for text in feedback.warnings), feedback.warnings
    assert grid(outputs["OUTPUT"]) == grid(muufl["hsi"])


# ------------------------------------------------------------------------------------------------
# qgis_process, end to end


def test_qgis_process_trains_with_repeated_aux_rasters_and_classifies_the_scene(muufl, tmp_path):
    model, classes = tmp_path / "model.pt", tmp_path / "classes.tif"
    trained = run_qgis_process(
        "cssmamba:trainmultimodal", "--", f"INPUT={muufl['hsi']}", f"AUX_RASTERS={muufl['intensity']}",
        f"AUX_RASTERS={muufl['dsm']}", f"ROIS={muufl['rois']}", "CLASS_FIELD=class_id", "NAME_FIELD=class_name",
        "NO_CLIP=true", "EPOCHS=1", "WIDTH=8", "DEPTH=1", "DEVICE=1", "AUX_RESAMPLING=2", f"OUTPUT_MODEL={model}",
        f"OUTPUT_CLASSIFICATION={classes}")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    modalities = metadata_of(str(model))["modalities"]
    assert [(m["name"], m["resampling"]) for m in modalities[1:]] == [("intensity.tif", "nearest"),
                                                                        ("dsm.tif", "nearest")]
    assert grid(str(classes)) == grid(muufl["hsi"])
    assert all(f'label="{name}"' in qml(str(classes)) for name in muufl["names"])


# ------------------------------------------------------------------------------------------------
# Bad input: each refused with a QgsProcessingException that names the problem and the fix


def test_train_without_clip_weights_says_where_to_get_them(plugin, muufl, tmp_path):
    message = refused(train, muufl, tmp_path, NO_CLIP=False)
    for part in ("ViT-B-32.pt", "openaipublic", "cannot download", "CLIP_WEIGHTS", "NO_CLIP"):
        assert part in message
    assert os.listdir(tmp_path) == []


def test_train_refuses_a_clip_file_that_is_not_a_vit(plugin, muufl, tmp_path):
    import torch

    other = str(tmp_path / "resnet.pt")
    torch.save({"visual.layer1.0.conv1.weight": torch.zeros(4, 3, 3, 3)}, other)
    message = refused(train, muufl, tmp_path, NO_CLIP=False, CLIP_WEIGHTS=other)
    assert "resnet.pt is not a CLIP ViT image encoder: missing visual.conv1.weight" in message
    assert not os.path.exists(tmp_path / "model.pt")


def test_train_refuses_an_aux_raster_that_does_not_overlap(plugin, muufl, tmp_path):
    from osgeo import gdal

    elsewhere = str(tmp_path / "elsewhere.tif")
    gdal.Translate(elsewhere, muufl["dsm"], outputBounds=[5000, -5000, 5090, -5090])
    message = refused(train, muufl, tmp_path, AUX_RASTERS=[muufl["dsm"], elsewhere])
    assert "elsewhere.tif does not overlap the hyperspectral raster" in message
    assert "fix the georeferencing" in message
    assert not os.path.exists(tmp_path / "model.pt")
