"""The plugin in a real QGIS (offscreen): loading, the provider, algorithms, unloading."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QGIS_PROCESS = os.path.join(ROOT, "scripts", "qgis_process.sh")

pytestmark = pytest.mark.qgis


@pytest.fixture
def loaded_plugin(qgis_app, plugin_module):
    plugin = plugin_module.classFactory(None)
    plugin.initProcessing()
    yield plugin
    plugin.unload()


def test_class_factory_registers_provider_and_unload_removes_it(qgis_app, plugin_module):
    from qgis.core import QgsApplication

    registry = QgsApplication.processingRegistry()
    plugin = plugin_module.classFactory(None)
    plugin.initGui()
    provider = registry.providerById("cssmamba")
    assert provider is not None and provider.name() == "CSSMamba"
    assert os.path.isfile(provider.svgIconPath()) and not provider.icon().isNull()
    assert {a.id() for a in provider.algorithms()} >= {"cssmamba:createsample", "cssmamba:checkinstallation"}
    plugin.unload()
    assert registry.providerById("cssmamba") is None


def test_algorithms_follow_processing_conventions(loaded_plugin):
    for algorithm in loaded_plugin.provider.algorithms():
        assert algorithm.name() == algorithm.name().lower()
        assert algorithm.shortHelpString(), algorithm.id()
        for parameter in algorithm.parameterDefinitions():
            assert parameter.name() == parameter.name().upper(), (algorithm.id(), parameter.name())


def test_help_texts_name_parameters_by_the_labels_the_dialog_shows(loaded_plugin):
    """The Processing dialog shows each parameter's description ("Raster", "Sample split without validation
    ROIs"), never its id (INPUT, SPLIT), so the help texts use the descriptions. Ids are upper case and the
    help texts never shout, so an id found as a whole word, case-sensitively, is an id and not a word."""
    import re

    for algorithm in loaded_plugin.provider.algorithms():
        help_text = algorithm.shortHelpString()
        ids = [p.name() for p in algorithm.parameterDefinitions()] + [o.name() for o in algorithm.outputDefinitions()]
        named = [name for name in ids if re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", help_text)]
        assert not named, (algorithm.id(), named)


def test_processing_run_create_sample_writes_the_sample(loaded_plugin, tmp_path):
    import processing
    from osgeo import gdal

    result = processing.run("cssmamba:createsample", {
        "ROWS": 24, "COLUMNS": 30, "BANDS": 16, "SEED": 3, "OUTPUT_FOLDER": str(tmp_path)})
    ds = gdal.Open(result["OUTPUT_RASTER"])
    assert (ds.RasterCount, ds.RasterYSize, ds.RasterXSize) == (16, 24, 30)
    assert os.path.isfile(result["OUTPUT_ROIS"]) and os.path.isfile(result["OUTPUT_LABELS"])
    # the ROIs open coloured by class (the style saved in the GeoPackage), not in a random single colour
    from qgis.core import QgsVectorLayer

    rois = QgsVectorLayer(result["OUTPUT_ROIS"], "rois", "ogr")
    renderer = rois.renderer()
    assert renderer.type() == "categorizedSymbol" and renderer.classAttribute() == "class_id"
    water = next(c for c in renderer.categories() if c.label() == "water")
    assert water.symbol().color().name() == "#0064ff"


def test_the_sample_raster_opens_in_true_colour(loaded_plugin, tmp_path):
    import processing
    from qgis.core import QgsRasterLayer

    result = processing.run("cssmamba:createsample", {"ROWS": 24, "COLUMNS": 24, "BANDS": 128,
                                                      "OUTPUT_FOLDER": str(tmp_path)})
    assert (tmp_path / "sample.qml").exists()
    layer = QgsRasterLayer(result["OUTPUT_RASTER"], "sample", "gdal")   # picks up sample.qml by itself
    renderer = layer.renderer()
    assert renderer.type() == "multibandcolor"
    from osgeo import gdal

    dataset = gdal.Open(result["OUTPUT_RASTER"])
    centres = [float(dataset.GetRasterBand(b).GetMetadataItem("wavelength"))
               for b in (renderer.redBand(), renderer.greenBand(), renderer.blueBand())]
    assert [abs(c - nm) < 20 for c, nm in zip(centres, (640, 550, 470))] == [True] * 3


def test_the_engine_sample_opens_styled_in_qgis_without_the_toolbox(qgis_app, tmp_path):
    """`python -m engine sample` / `make demo-cli` make the sample without QGIS: the .qml files it writes beside
    the ROI layer and the raster give QGIS the class colours and a true-colour view (not random colours, not
    grey bands 1-2-3)."""
    from osgeo import gdal
    from qgis.core import QgsRasterLayer, QgsVectorLayer

    from engine.data.sample import CLASSES, generate_sample

    paths = generate_sample(str(tmp_path), rows=24, cols=24, bands=128)
    rois = QgsVectorLayer(paths.rois, "rois", "ogr")
    renderer = rois.renderer()
    assert renderer.type() == "categorizedSymbol" and renderer.classAttribute() == "class_id"
    assert {int(c.value()): (c.label(), c.symbol().color().getRgb()[:3]) for c in renderer.categories()} == {
        klass.id: (klass.name, klass.rgb) for klass in CLASSES}
    raster = QgsRasterLayer(paths.raster, "sample", "gdal")
    renderer = raster.renderer()
    assert renderer.type() == "multibandcolor"
    dataset = gdal.Open(paths.raster)
    centres = [float(dataset.GetRasterBand(b).GetMetadataItem("wavelength"))
               for b in (renderer.redBand(), renderer.greenBand(), renderer.blueBand())]
    assert [abs(c - nm) < 20 for c, nm in zip(centres, (640, 550, 470))] == [True] * 3
    low, high = renderer.redContrastEnhancement().minimumValue(), renderer.redContrastEnhancement().maximumValue()
    assert 0 < low < high < 0.5      # reflectance, as QGIS reads the band with its scale


def test_class_and_cluster_maps_have_a_legend_and_are_not_smoothed(loaded_plugin, tmp_path):
    """Class and cluster maps get a paletted style, one labelled legend entry per id, and nearest-neighbour
    resampling, also where the user's default (Settings ▸ Options ▸ Rendering) is bilinear: in the .qml written
    beside them and on the layers Processing loads."""
    from functools import partial

    import numpy as np
    from osgeo import gdal
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsRasterLayer, QgsSettings

    from cssmamba.provider.styling import StyleOnLoad, class_renderer, cluster_renderer, write_qml_sidecar

    def ids_raster(name):
        path = str(tmp_path / f"{name}.tif")
        dataset = gdal.GetDriverByName("GTiff").Create(path, 8, 8, 1, gdal.GDT_Byte)
        dataset.SetGeoTransform((0, 30, 0, 240, 0, -30))
        dataset.GetRasterBand(1).WriteArray(np.arange(64, dtype=np.uint8).reshape(8, 8) % 6 + 1)
        dataset = None
        return path

    def nearest(layer):
        return layer.resampleFilter().zoomedInResampler() is None and layer.resampleFilter().zoomedOutResampler() is None

    styles = {"classes": partial(class_renderer, ids=[1, 2], names=["roof", "water"], colors=[[230, 0, 0], [0, 100, 255]]),
              "clusters": partial(cluster_renderer, n=6, class_names=["roof", "water"])}
    settings = QgsSettings()
    keys = ("/Raster/defaultZoomedInResampling", "/Raster/defaultZoomedOutResampling")
    previous = [settings.value(key) for key in keys]
    for key in keys:
        settings.setValue(key, "bilinear")
    try:
        for name, renderer_fn in styles.items():
            with open(write_qml_sidecar(ids_raster(name), renderer_fn), encoding="utf-8") as handle:
                qml = handle.read()
            assert 'type="paletted"' in qml, name
            assert "zoomedInResampler" not in qml and "zoomedOutResampler" not in qml, name  # none = nearest
            reopened = QgsRasterLayer(str(tmp_path / f"{name}.tif"), name, "gdal")           # with its .qml
            assert reopened.renderer().type() == "paletted" and nearest(reopened), name
        assert 'label="roof · cluster 1"' in qml and 'label="water · cluster 3"' in qml      # the cluster legend

        loaded = QgsRasterLayer(ids_raster("loaded"), "loaded", "gdal")                      # no .qml
        assert not nearest(loaded)                                                          # the user's bilinear
        StyleOnLoad(styles["clusters"]).postProcessLayer(loaded, QgsProcessingContext(), QgsProcessingFeedback())
        assert [entry.label for entry in loaded.renderer().classes()][:4] == [
            "roof · cluster 1", "roof · cluster 2", "roof · cluster 3", "water · cluster 1"]
        assert nearest(loaded)
    finally:
        for key, value in zip(keys, previous):
            if value is None:
                settings.remove(key)
            else:
                settings.setValue(key, value)


def test_processing_run_check_installation_passes(loaded_plugin, tmp_path):
    import processing

    from cssmamba.engine.data.sample import generate_sample

    raster = generate_sample(str(tmp_path), rows=32, cols=32, bands=16).raster
    result = processing.run("cssmamba:checkinstallation", {"INPUT": raster, "DEVICE": 1})
    assert result["PASSED"] is True
    assert "self-check [PASS]" in result["REPORT"]


def test_provider_explains_missing_torch_instead_of_failing(loaded_plugin, monkeypatch):
    from cssmamba.provider import algorithm, dependencies, provider

    monkeypatch.setattr(provider, "torch_is_installed", lambda: False)
    monkeypatch.setattr(algorithm, "torch_import_error", lambda: dependencies.INSTALL_HINT)
    warning = loaded_plugin.provider.warningMessage()
    # Both are shown as rich text: "numpy<2" must arrive escaped, or the rest of the hint disappears.
    assert "PyTorch (torch) is not installed" in warning and '"numpy&lt;2"' in warning and "<2" not in warning
    assert warning.endswith("See the plugin's README for CUDA builds of torch.")
    check = loaded_plugin.provider.algorithm("checkinstallation").create()
    ok, message = check.canExecute()
    assert not ok and '"numpy&lt;2"' in message and message.endswith("CUDA builds of torch.")
    sample = loaded_plugin.provider.algorithm("createsample").create()
    assert sample.canExecute() == (True, "")
    assessment = loaded_plugin.provider.algorithm("accuracy").create()
    assert assessment.canExecute() == (True, "")
    assert dependencies.torch_import_error() is None  # the real environment has torch


def run_qgis_process(*args, env=None):
    return subprocess.run([QGIS_PROCESS, *args], capture_output=True, text=True, env=env, timeout=300)


def test_qgis_process_lists_the_provider():
    result = run_qgis_process("list")
    assert result.returncode == 0, result.stderr
    assert "CSSMamba" in result.stdout
    assert "cssmamba:createsample" in result.stdout and "cssmamba:checkinstallation" in result.stdout


def test_qgis_process_runs_an_algorithm(tmp_path):
    result = run_qgis_process("run", "cssmamba:createsample", "--", "ROWS=20", "COLUMNS=20", "BANDS=12",
                              f"OUTPUT_FOLDER={tmp_path}")
    assert result.returncode == 0, result.stdout + result.stderr
    # no sample.qml: 12 bands leave no band within 50 nm of green, so QGIS's default rendering stays
    assert sorted(os.listdir(tmp_path)) == ["classes.csv", "sample.tif", "sample_labels.tif", "sample_rois.gpkg",
                                            "sample_rois.qml"]


def test_qgis_starts_and_explains_when_torch_is_missing(tmp_path):
    """Without the venv on PYTHONPATH torch is absent: QGIS must still load the provider."""
    script = tmp_path / "qgis_process_without_torch.sh"
    script.write_text(
        f'. "{ROOT}/scripts/qgis_env.sh"\n'
        'export PYTHONPATH=""\nexport QT_QPA_PLATFORM=offscreen\n'
        'exec qgis_process.bin "$@"\n')
    env = dict(os.environ, root=ROOT)
    listed = run_script(script, env, "list")
    assert listed.returncode == 0 and "cssmamba:checkinstallation" in listed.stdout, listed.stderr
    sample = run_script(script, env, "run", "cssmamba:createsample", "--", "ROWS=16", "COLUMNS=16", "BANDS=12",
                        f"OUTPUT_FOLDER={tmp_path / 'sample'}")
    assert sample.returncode == 0, "creating the sample needs no torch: " + sample.stderr
    check = run_script(script, env, "run", "cssmamba:checkinstallation", "--", f"INPUT={tmp_path / 'sample' / 'sample.tif'}")
    assert check.returncode != 0
    assert "PyTorch (torch) is not installed" in check.stdout + check.stderr
    sample_labels = tmp_path / "sample" / "sample_labels.tif"
    assessment = run_script(script, env, "run", "cssmamba:accuracy", "--", f"INPUT={sample_labels}",
                            f"REFERENCE_VECTOR={tmp_path / 'sample' / 'sample_rois.gpkg'}", "CLASS_FIELD=class_id",
                            f"OUTPUT_REPORT={tmp_path / 'accuracy.html'}")
    assert assessment.returncode == 0, "the accuracy assessment needs no torch: " + assessment.stdout + assessment.stderr
    assert (tmp_path / "accuracy.html").exists() and "OVERALL_ACCURACY" in assessment.stdout


def run_script(script, env, *args):
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, env=env, timeout=300)


def test_the_plugin_makes_openmp_wait_passively_unless_the_user_chose(tmp_path):
    """Spinning OpenMP workers halved training speed inside qgis_process; the plugin's import sets
    OMP_WAIT_POLICY before torch can load, and keeps a value the user set."""
    from conftest import PLUGIN_PARENT

    code = "import os, cssmamba; print(os.environ['OMP_WAIT_POLICY'])"
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = PLUGIN_PARENT
    default = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    chosen = subprocess.run([sys.executable, "-c", code], env=dict(env, OMP_WAIT_POLICY="ACTIVE"),
                            capture_output=True, text=True, timeout=60)
    assert default.stdout.strip() == "PASSIVE" and chosen.stdout.strip() == "ACTIVE", default.stderr


def test_true_colour_takes_the_visible_bands_and_needs_wavelengths(loaded_plugin, shared_data, tmp_path):
    """What the screenshot's mosaic and the sample use; a raster without wavelengths keeps QGIS's default."""
    from osgeo import gdal
    from qgis.core import QgsRasterLayer

    from cssmamba.provider.styling import true_colour_renderer

    mosaic = os.path.join(shared_data, "enmap_potsdam", "enmap_potsdam_mosaic.tif")
    renderer = true_colour_renderer(QgsRasterLayer(mosaic, "mosaic", "gdal"))
    dataset = gdal.Open(mosaic)
    centres = [float(dataset.GetRasterBand(b).GetMetadataItem("wavelength"))
               for b in (renderer.redBand(), renderer.greenBand(), renderer.blueBand())]
    assert all(abs(c - nm) < 10 for c, nm in zip(centres, (640, 550, 470)))
    plain = str(tmp_path / "plain.tif")
    gdal.GetDriverByName("GTiff").Create(plain, 4, 4, 3, gdal.GDT_Byte)
    assert true_colour_renderer(QgsRasterLayer(plain, "plain", "gdal")) is None
