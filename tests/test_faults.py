"""Bad input and faults: every case ends in a clear ``error:`` (exit 2) or a correct result, never in a
traceback, a destroyed input or a wrong map with exit status 0.

The numbered cases are those found when the plugin was tried as a new user would (issue 11); the fuzz
tests at the end generate more of the same kinds (truncated files, flipped bits, odd band and nodata
layouts). The QGIS side of the same rules is in test_toolbox_train_classify.py and test_plugin_qgis.py.
"""

import hashlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from osgeo import gdal, ogr, osr

from engine import paths as paths_module
from engine.cli import main
from engine.data.sample import generate_sample
from engine.modelfile import load_model
from engine.pipeline import classify_file, train_from_files

gdal.UseExceptions()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NODATA = -32768


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def run_cli(capsys, *args):
    """(exit status, stderr) of ``python -m engine ARGS`` run in this process."""
    status = main([str(a) for a in args])
    return status, capsys.readouterr().err


def run_engine(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "engine", *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """The built-in sample at 40 x 40 px, 12 bands (10 in use, with wavelengths), and a MambaHSI model."""
    folder = tmp_path_factory.mktemp("scene")
    paths = generate_sample(str(folder), rows=40, cols=40, bands=12)
    model = str(folder / "model.pt")
    train_from_files(paths.raster, model, labels=paths.labels, model="mambahsi", epochs=2, overrides={"dim": 8})
    return paths, model


def read(path) -> np.ndarray:
    return gdal.Open(str(path)).ReadAsArray()


def write_like(source, target, array, nodata=None, wavelengths=None, dtype=gdal.GDT_Float32):
    """A GeoTIFF on ``source``'s grid holding ``array`` (bands, rows, cols)."""
    src = gdal.Open(str(source))
    ds = gdal.GetDriverByName("GTiff").Create(str(target), src.RasterXSize, src.RasterYSize, array.shape[0], dtype)
    ds.SetGeoTransform(src.GetGeoTransform())
    ds.SetProjection(src.GetProjection())
    for b in range(array.shape[0]):
        band = ds.GetRasterBand(b + 1)
        band.WriteArray(array[b])
        if nodata is not None:
            band.SetNoDataValue(nodata)
        if wavelengths is not None:
            band.SetMetadataItem("wavelength", str(wavelengths[b]))
            band.SetMetadataItem("wavelength_units", "nm")
    ds = None
    return str(target)


def physical(raster):
    """(float32 cube in physical units with NaN at nodata, wavelengths in nm) of the sample raster."""
    src = gdal.Open(str(raster))
    raw = src.ReadAsArray()
    data = raw.astype(np.float32) * np.float32(src.GetRasterBand(1).GetScale())
    data[raw == NODATA] = np.nan
    return data, [float(src.GetRasterBand(b + 1).GetMetadataItem("wavelength")) for b in range(src.RasterCount)]


def leftovers(folder):
    return sorted(name for name in os.listdir(folder) if name.startswith("."))


# ------------------------------------------------------------------------------------------------
# 1-3: an output never overwrites an input


def test_1_classify_out_equal_to_the_model_is_refused(scene, capsys):
    paths, model = scene
    before = digest(model)
    status, err = run_cli(capsys, "classify", "--model", model, "--raster", paths.raster, "--out", model)
    assert status == 2 and "error: the classes raster" in err and "is the input model file" in err and "would destroy the input" in err
    assert model in err and digest(model) == before


def test_2_train_out_equal_to_the_raster_is_refused(scene, capsys):
    paths, _ = scene
    before = digest(paths.raster)
    status, err = run_cli(capsys, "train", "--raster", paths.raster, "--labels", paths.labels, "--out", paths.raster,
                          "--epochs", 1)
    assert status == 2 and "the model file" in err and "is the input raster" in err
    assert digest(paths.raster) == before


def test_3_train_report_equal_to_the_labels_is_refused(scene, capsys, tmp_path):
    paths, _ = scene
    before = digest(paths.labels)
    status, err = run_cli(capsys, "train", "--raster", paths.raster, "--labels", paths.labels, "--out",
                          tmp_path / "m.pt", "--report", paths.labels, "--epochs", 1)
    assert status == 2 and "the training report" in err and "input label raster" in err
    assert digest(paths.labels) == before and not (tmp_path / "m.pt").exists()


def test_an_output_reached_through_a_symlink_is_refused(scene, capsys, tmp_path):
    paths, model = scene
    link = tmp_path / "looks_new.tif"
    os.symlink(paths.raster, link)
    before = digest(paths.raster)
    status, err = run_cli(capsys, "classify", "--model", model, "--raster", paths.raster, "--out", link)
    assert status == 2 and "resolves to the input raster" in err and digest(paths.raster) == before


def test_a_file_that_is_part_of_a_multi_file_input_is_refused(scene, capsys, tmp_path):
    """A shapefile's .dbf and an ENVI raster's .hdr are inputs too (GDAL lists them)."""
    paths, model = scene
    gdal.VectorTranslate(str(tmp_path / "rois.shp"), paths.rois)
    before = digest(tmp_path / "rois.dbf")
    status, err = run_cli(capsys, "evaluate", "--pred", paths.labels, "--rois", tmp_path / "rois.shp",
                          "--class-field", "class_id", "--json", tmp_path / "rois.dbf")
    assert status == 2 and "is part of the input reference ROI file" in err
    assert digest(tmp_path / "rois.dbf") == before
    gdal.Translate(str(tmp_path / "scene.img"), paths.raster, format="ENVI")
    before = digest(tmp_path / "scene.hdr")
    status, err = run_cli(capsys, "classify", "--model", model, "--raster", tmp_path / "scene.img", "--out",
                          tmp_path / "scene.hdr")
    assert status == 2 and "is part of the input raster" in err and digest(tmp_path / "scene.hdr") == before


def test_a_hard_link_to_an_input_is_refused(scene, capsys, tmp_path):
    paths, model = scene
    os.link(paths.labels, tmp_path / "linked.tif")
    status, err = run_cli(capsys, "evaluate", "--pred", paths.labels, "--labels", paths.labels, "--json",
                          tmp_path / "linked.tif")
    assert status == 2 and "is the same file as the input" in err


def test_evaluate_json_equal_to_the_class_raster_is_refused(scene, capsys):
    paths, _ = scene
    before = digest(paths.labels)
    status, err = run_cli(capsys, "evaluate", "--pred", paths.labels, "--labels", paths.labels, "--json", paths.labels)
    assert status == 2 and "JSON report" in err and digest(paths.labels) == before


def test_two_outputs_of_one_run_may_not_share_a_file(scene, capsys, tmp_path):
    paths, model = scene
    status, err = run_cli(capsys, "classify", "--model", model, "--raster", paths.raster, "--out", tmp_path / "c.tif",
                          "--confidence", tmp_path / "c.tif")
    assert status == 2 and "are the same file" in err and os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------------------
# 4: empty partitions (all-nodata corners, windows, tiles) are a normal case


@pytest.fixture(scope="module")
def nodata_corner(tmp_path_factory):
    """A 64 x 64 sample whose top-left 48 x 48 px (the memory probe's old crop) is nodata."""
    folder = tmp_path_factory.mktemp("corner")
    paths = generate_sample(str(folder), rows=64, cols=64, bands=12)
    ds = gdal.Open(paths.raster, gdal.GA_Update)
    for b in range(1, ds.RasterCount + 1):
        ds.GetRasterBand(b).WriteArray(np.full((48, 48), NODATA, np.int16), 0, 0)
    ds = None
    labels = read(paths.labels)
    labels[:48, :48] = 0
    write_like(paths.labels, folder / "labels.tif", labels[None].astype(np.uint8), dtype=gdal.GDT_Byte)
    return paths.raster, str(folder / "labels.tif")


def test_4_cssmamba_trains_and_classifies_a_scene_with_a_nodata_corner(nodata_corner, tmp_path):
    raster, labels = nodata_corner
    model = str(tmp_path / "cssmamba.pt")
    train_from_files(raster, model, labels=labels, model="cssmamba", epochs=1, overrides={"dim": 8})
    written = classify_file(model, raster, str(tmp_path / "classes.tif"), clusters=str(tmp_path / "clusters.tif"),
                            tile=16, overlap=4)     # several tiles lie entirely in the corner
    classes = read(written["classes"])
    assert (classes[:48, :48] == 0).all() and (classes[48:, 48:] > 0).all()
    assert (read(written["clusters"])[48:, 48:] > 0).all()


@pytest.mark.parametrize("options", [{}, {"local_weights": "shared"}, {"partition": "topk"},
                                     {"token_selection": False}, {"cluster_loss": "lb"}])
def test_4_cssmamba_trains_on_batches_with_an_all_nodata_image(options):
    """A batch whose images are all nodata (every token routed nowhere) trains and predicts like any other."""
    import torch

    from engine.models.registry import build_model

    torch.manual_seed(0)
    net = build_model("cssmamba", 8, 3, dim=8, **options).train()
    x = torch.zeros(2, 8, 12, 12)
    guide = torch.full((2, 2, 12, 12), -1, dtype=torch.long)
    for images in (x[:1], x):
        out = net(images, guide[:len(images)])
        loss = out.logits.square().mean() + (0 if out.aux_loss is None else out.aux_loss)
        loss.backward()
        assert torch.isfinite(loss)
    x[1] = torch.rand(8, 12, 12)                        # one image with data beside an empty one
    out = net(x, guide)
    (out.logits.square().mean() + (0 if out.aux_loss is None else out.aux_loss)).backward()
    with torch.no_grad():
        assert torch.isfinite(net.eval()(x).logits).all()


def test_4_the_memory_probe_measures_valid_pixels():
    from engine.training.train import probe_origin

    valid = np.zeros((100, 90), bool)
    valid[60:, 50:] = True
    assert probe_origin(valid, 40, 40) == (60, 50)
    assert probe_origin(None, 40, 40) == (0, 0)


# ------------------------------------------------------------------------------------------------
# 5, 6: damaged and oversized rasters


def truncated_copy(source, target, fraction):
    data = open(source, "rb").read()
    with open(target, "wb") as handle:
        handle.write(data[:int(len(data) * fraction)])
    return str(target)


@pytest.fixture(scope="module")
def uncompressed(scene, tmp_path_factory):
    """The sample raster as an uncompressed striped GeoTIFF, whose truncation GDAL notices only on reading."""
    paths, _ = scene
    out = str(tmp_path_factory.mktemp("plain") / "plain.tif")
    gdal.Translate(out, paths.raster, creationOptions=["COMPRESS=NONE", "INTERLEAVE=BAND"])
    return out


def test_5_a_truncated_geotiff_names_the_file_and_the_band(scene, uncompressed, capsys, tmp_path):
    paths, model = scene
    broken = truncated_copy(uncompressed, tmp_path / "cut.tif", 0.6)
    status, err = run_cli(capsys, "classify", "--model", model, "--raster", broken, "--out", tmp_path / "c.tif")
    assert status == 2 and f"of the raster {broken}" in err and "damaged or truncated" in err
    assert "cannot read band" in err and "Traceback" not in err
    assert os.listdir(tmp_path) == ["cut.tif"]
    status, err = run_cli(capsys, "train", "--raster", broken, "--labels", paths.labels, "--out", tmp_path / "m.pt",
                          "--epochs", 1)
    assert status == 2 and "damaged or truncated" in err and not (tmp_path / "m.pt").exists()


def test_6_a_raster_far_larger_than_memory_is_refused_before_reading(scene, capsys, tmp_path):
    """A 100,000 x 100,000 px x 204-band VRT would need 7.42 TiB as float32; training reads only the tiles
    around the ROIs, but the label maps of such a grid (0.58 TiB) do not fit either."""
    paths, _ = scene
    vrt = tmp_path / "huge.vrt"
    bands = "".join(f'<VRTRasterBand dataType="Int16" band="{b}"><NoDataValue>-32768</NoDataValue>'
                    f'<SimpleSource><SourceFilename relativeToVRT="0">{paths.raster}</SourceFilename>'
                    f'<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand>' for b in range(1, 205))
    vrt.write_text(f'<VRTDataset rasterXSize="100000" rasterYSize="100000"><GeoTransform>0, 1, 0, 0, 0, -1'
                   f'</GeoTransform>{bands}</VRTDataset>')
    status, err = run_cli(capsys, "train", "--raster", vrt, "--rois", paths.rois, "--class-field", "class_id",
                          "--out", tmp_path / "m.pt", "--epochs", 1)
    assert status == 2 and "too large to train on here" in err and "TiB" in err
    assert "never read whole" in err and "Clip the raster to the ROIs' extent" in err


# ------------------------------------------------------------------------------------------------
# 7: a full disk


@pytest.fixture
def full_disk(tmp_path):
    """A 1 MiB tmpfs filled to the last byte (CI runs as root, who may mount one)."""
    mount = tmp_path / "full"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True,
                            text=True)
    if result.returncode:
        message = f"cannot mount a small tmpfs to simulate a full disk ({result.stderr.strip()}); needs root"
        if os.environ.get("CI"):
            pytest.fail(message + ", as CI has")
        pytest.skip(message)
    try:
        with open(mount / "filler", "wb", buffering=0) as handle:
            try:
                while True:
                    handle.write(b"\0" * 4096)
            except OSError:
                pass
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_7_a_full_disk_while_classifying_is_a_clear_error_and_leaves_nothing(scene, full_disk):
    paths, model = scene
    process = run_engine("classify", "--model", model, "--raster", paths.raster, "--out", full_disk / "c.tif",
                         "--confidence", full_disk / "conf.tif")
    _, err = process.communicate(timeout=300)
    assert process.returncode == 2, err
    assert "error: cannot write the" in err and "is full" in err and "Traceback" not in err
    assert sorted(os.listdir(full_disk)) == ["filler"]


def test_7_a_full_disk_while_saving_the_model_keeps_the_trained_weights(scene, full_disk, tmp_path):
    paths, _ = scene
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    process = run_engine("train", "--raster", paths.raster, "--labels", paths.labels, "--model", "mambahsi",
                         "--set", "dim=8", "--epochs", 1, "--out", full_disk / "m.pt",
                         env=dict(os.environ, TMPDIR=str(recovery)))
    _, err = process.communicate(timeout=300)
    assert process.returncode == 2, err
    assert "cannot write the model file" in err and "is full" in err and "saved instead to" in err
    copies = os.listdir(recovery)
    assert len(copies) == 1 and copies[0].startswith("m.recovered-") and str(recovery / copies[0]) in err
    load_model(str(recovery / copies[0]))           # a complete, valid model file
    assert sorted(os.listdir(full_disk)) == ["filler"]


# ------------------------------------------------------------------------------------------------
# 8: signals and the temporaries they leave


@pytest.fixture(scope="module")
def slow_raster(scene, tmp_path_factory):
    """The sample tiled up to 400 x 400 px: classification in 16 px tiles takes a few seconds."""
    paths, _ = scene
    data = gdal.Open(paths.raster).ReadAsArray()
    big = np.tile(data, (1, 10, 10))
    src = gdal.Open(paths.raster)
    folder = tmp_path_factory.mktemp("slow")
    out = str(folder / "big.tif")
    ds = gdal.GetDriverByName("GTiff").Create(out, big.shape[2], big.shape[1], big.shape[0], gdal.GDT_Int16)
    ds.SetGeoTransform(src.GetGeoTransform())
    ds.SetProjection(src.GetProjection())
    for b in range(big.shape[0]):
        band, original = ds.GetRasterBand(b + 1), src.GetRasterBand(b + 1)
        band.WriteArray(big[b])
        band.SetNoDataValue(NODATA)
        band.SetScale(original.GetScale() or 1.0)
        band.SetMetadata(original.GetMetadata())
    ds = None
    return out


def start_classify(model, raster, out):
    process = run_engine("classify", "--model", model, "--raster", raster, "--out", out, "--tile", 16,
                         "--overlap", 2, "--threads", 1)
    for line in process.stderr:                      # wait until tiles are being written (a row of tiles each)
        if "classified tile " in line:
            return process
    raise AssertionError(f"classification never started: {process.communicate()}")


def test_8_sigterm_cancels_classification_and_removes_its_temporaries(scene, slow_raster, tmp_path):
    _, model = scene
    process = start_classify(model, slow_raster, tmp_path / "c.tif")
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "SIGTERM: cancelling" in err and "no output raster written" in err
    assert os.listdir(tmp_path) == []


def test_8_the_next_run_removes_what_a_killed_run_left(scene, slow_raster, tmp_path):
    _, model = scene
    process = start_classify(model, slow_raster, tmp_path / "c.tif")
    process.kill()
    process.communicate(timeout=60)
    stale = leftovers(tmp_path)
    host = paths_module._host()
    assert stale and all(name.startswith(f".c.tif.{host}-{process.pid}-") for name in stale)
    alive = tmp_path / f".c.tif.{host}-{os.getpid()}-running.part.tif"   # a run still going on: never touched
    elsewhere = tmp_path / f".c.tif.othermachine-{process.pid}-abc.part.tif"  # a run on another machine
    legacy = tmp_path / ".c.abcd1234.part.tif"        # an older plugin version's name, two days old
    for name in (alive, elsewhere, legacy):
        name.write_bytes(b"")
    os.utime(legacy, (time.time() - 2 * 86400,) * 2)
    paths, _ = scene
    finished = run_engine("classify", "--model", model, "--raster", paths.raster, "--out", tmp_path / "c.tif")
    _, err = finished.communicate(timeout=300)
    assert finished.returncode == 0, err
    assert "interrupted earlier run" in err
    assert leftovers(tmp_path) == sorted([alive.name, elsewhere.name]) and (tmp_path / "c.tif").exists()


def test_8_stale_model_temporaries_are_removed_when_the_model_is_saved(scene, tmp_path):
    paths, _ = scene
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".m.pt.{paths_module._host()}-{dead.pid}-abc123.tmp"
    stale.write_bytes(b"half a model")
    train_from_files(paths.raster, str(tmp_path / "m.pt"), labels=paths.labels, model="mambahsi", epochs=1,
                     overrides={"dim": 8})
    assert not stale.exists() and leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------------------
# 9-11: silent wrong results


@pytest.fixture(scope="module")
def more_bands(scene, tmp_path_factory):
    """The sample's 12 bands followed by 52 more: a 64-band raster without wavelengths."""
    paths, _ = scene
    data, _ = physical(paths.raster)
    folder = tmp_path_factory.mktemp("bands")
    return write_like(paths.raster, folder / "more.tif", np.concatenate([data, np.repeat(data[:1], 52, axis=0)]))


def test_9_another_band_count_is_refused_unless_the_bands_are_named(scene, more_bands, capsys, tmp_path):
    paths, model = scene
    status, err = run_cli(capsys, "classify", "--model", model, "--raster", more_bands, "--out", tmp_path / "c.tif")
    assert status == 2 and "has 64 bands but the training raster had 12" in err
    assert "--bands 1-5,7-8,10-12 when" in err            # the stored bands, not 1-10 (bad bands 6 and 9 left out)
    assert os.listdir(tmp_path) == []
    reference = classify_file(model, paths.raster, str(tmp_path / "reference.tif"))["classes"]
    used = ",".join(map(str, load_model(model)[1]["bands"]["indices"]))
    assert used == "1,2,3,4,5,7,8,10,11,12"
    status, err = run_cli(capsys, "classify", "--model", model, "--raster", more_bands, "--bands", used, "--out",
                          tmp_path / "named.tif")
    assert status == 0, err
    np.testing.assert_array_equal(read(tmp_path / "named.tif"), read(reference))


def test_9_another_band_count_with_wavelengths_finds_the_model_bands(scene, capsys, tmp_path):
    """A sensor's full cube with the training bands among others (in another order) is matched by wavelength."""
    paths, model = scene
    data, wavelengths = physical(paths.raster)
    order = list(range(len(data)))[::-1]
    extra = np.concatenate([data[order], np.zeros_like(data[:2])])
    raster = write_like(paths.raster, tmp_path / "reordered.tif", extra,
                        wavelengths=[wavelengths[k] for k in order] + [100.0, 101.0])
    reference = classify_file(model, paths.raster, str(tmp_path / "reference.tif"))["classes"]
    status, err = run_cli(capsys, "classify", "--model", model, "--raster", raster, "--out", tmp_path / "c.tif")
    assert status == 0, err
    np.testing.assert_array_equal(read(tmp_path / "c.tif"), read(reference))


def test_10_an_all_nan_band_is_named_instead_of_an_all_nodata_map(scene, capsys, tmp_path):
    paths, model = scene
    data, wavelengths = physical(paths.raster)
    data[2] = np.nan
    raster = write_like(paths.raster, tmp_path / "nan.tif", data, wavelengths=wavelengths)
    status, err = run_cli(capsys, "classify", "--model", model, "--raster", raster, "--out", tmp_path / "c.tif")
    assert status == 2 and "band(s) 3 (" in err and "hold no valid value" in err and "--bands" in err
    assert sorted(os.listdir(tmp_path)) == ["nan.tif"]


# ------------------------------------------------------------------------------------------------
# 12-13: messages that name the problem


def test_12_an_empty_roi_layer_says_so(scene, capsys, tmp_path):
    paths, _ = scene
    driver = ogr.GetDriverByName("GPKG")
    source = driver.CreateDataSource(str(tmp_path / "empty.gpkg"))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    layer = source.CreateLayer("rois", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("class_id", ogr.OFTInteger))
    source = None
    status, err = run_cli(capsys, "train", "--raster", paths.raster, "--rois", tmp_path / "empty.gpkg",
                          "--class-field", "class_id", "--out", tmp_path / "m.pt", "--epochs", 1)
    assert status == 2 and "has no features" in err and "inf" not in err


def test_12_rois_without_class_ids_say_so(scene, capsys, tmp_path):
    """A freshly drawn layer: features with geometry, class ids not filled in yet."""
    paths, _ = scene
    gdal.VectorTranslate(str(tmp_path / "drawn.gpkg"), paths.rois, SQLStatement="SELECT geom, NULL AS class_id "
                         "FROM rois", SQLDialect="SQLite", layerName="rois")
    status, err = run_cli(capsys, "train", "--raster", paths.raster, "--rois", tmp_path / "drawn.gpkg",
                          "--class-field", "class_id", "--out", tmp_path / "m.pt", "--epochs", 1)
    assert status == 2 and "has both a class id" in err and "without a class id" in err and "inf" not in err


def test_a_full_disk_while_writing_a_report_is_an_error_line_not_a_traceback(scene, full_disk, capsys):
    paths, _ = scene
    status, err = run_cli(capsys, "evaluate", "--pred", paths.labels, "--labels", paths.labels, "--json",
                          full_disk / "accuracy.json")
    assert status == 2 and err.startswith("error: cannot write the JSON report") and "is full" in err
    assert sorted(os.listdir(full_disk)) == ["filler"]


@pytest.mark.parametrize("option, value, name", [("--train-per-class", 0, "train_per_class"),
                                                  ("--val-per-class", -1, "val_per_class"),
                                                  ("--train-ratio", 1.5, "train_ratio")])
def test_13_a_bad_split_setting_is_named(scene, capsys, tmp_path, option, value, name):
    paths, _ = scene
    mode = ["--split", "ratio"] if "ratio" in option else []
    status, err = run_cli(capsys, "train", "--raster", paths.raster, "--labels", paths.labels, "--out",
                          tmp_path / "m.pt", "--epochs", 1, option, value, *mode)
    assert status == 2 and f"{name} ({option}; toolbox:" in err and "overlap" not in err


# ------------------------------------------------------------------------------------------------
# Fuzz: more of the same kinds, generated


def test_fuzz_truncated_model_files_are_refused(scene, tmp_path):
    _, model = scene
    data = open(model, "rb").read()
    rng = np.random.default_rng(11)
    for i, length in enumerate(sorted(set(rng.integers(0, len(data), 12).tolist()))):
        cut = tmp_path / f"cut{i}.pt"
        cut.write_bytes(data[:length])
        with pytest.raises(ValueError, match="not a valid CSSMamba model file"):
            load_model(str(cut))


def test_fuzz_bit_flips_in_the_model_metadata_never_load(scene, tmp_path):
    """Any flipped bit in the JSON metadata is refused (parse error, layout error or checksum), never a
    model that would classify with altered classes, bands or stretch."""
    _, model = scene
    data = bytearray(open(model, "rb").read())
    start = data.find(b'{"bands"')
    end = data.find(b'"provenance"', start)
    assert 0 < start < end
    rng = np.random.default_rng(12)
    for i in range(40):
        flipped = bytearray(data)
        position = int(rng.integers(start, end))
        flipped[position] ^= 1 << int(rng.integers(0, 8))
        (tmp_path / "flip.pt").write_bytes(bytes(flipped))
        with pytest.raises(ValueError, match="not a valid CSSMamba model file"):
            load_model(str(tmp_path / "flip.pt"))


def test_fuzz_truncated_geotiffs_end_in_an_error_or_the_right_map(scene, uncompressed, tmp_path):
    paths, model = scene
    reference = read(classify_file(model, uncompressed, str(tmp_path / "reference.tif"))["classes"])
    size = os.path.getsize(uncompressed)
    rng = np.random.default_rng(13)
    for i, fraction in enumerate(sorted(rng.uniform(0.0, 1.0, 10).tolist())):
        broken = truncated_copy(uncompressed, tmp_path / f"cut{i}.tif", fraction)
        out = tmp_path / f"out{i}.tif"
        try:
            classify_file(model, broken, str(out))
        except ValueError as error:
            assert broken in str(error) and not out.exists(), (fraction, str(error))
        else:
            np.testing.assert_array_equal(read(out), reference, err_msg=f"cut at {fraction:.2f} of {size} bytes")
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]


def test_fuzz_band_and_nodata_layouts_end_in_an_error_or_the_right_map(scene, tmp_path):
    """Random band counts, nodata values, invalid regions, an empty band, with or without wavelengths:
    either refused with a message naming the raster, or the map of the same pixels in the training
    raster's own layout (nodata wherever the input is invalid)."""
    paths, model = scene
    clean, wavelengths = physical(paths.raster)
    rng = np.random.default_rng(14)
    outcomes = {"refused": 0, "classified": 0}
    for i in range(12):
        invalid = ~np.isfinite(clean).all(0) | (rng.random(clean.shape[1:]) < rng.uniform(0, 0.3))
        canonical = clean.copy()
        canonical[:, invalid] = np.nan
        nodata = float(rng.choice([-9999.0, np.nan, 65535.0]))  # values the data never takes
        data = np.where(np.isfinite(canonical), canonical, np.float32(nodata))
        n_bands = int(rng.choice([12, 12, 11, 13]))
        data = data[:n_bands] if n_bands <= 12 else np.concatenate([data, data[:1]])
        if rng.random() < 0.3:
            data[int(rng.integers(0, n_bands))] = nodata
        with_wavelengths = rng.random() < 0.5
        raster = write_like(paths.raster, tmp_path / f"layout{i}.tif", data,
                            nodata=None if np.isnan(nodata) else nodata,
                            wavelengths=(wavelengths + [3000.0])[:n_bands] if with_wavelengths else None)
        out = tmp_path / f"out{i}.tif"
        try:
            classify_file(model, raster, str(out))
        except ValueError as error:
            outcomes["refused"] += 1
            assert raster in str(error) and not out.exists()
            continue
        outcomes["classified"] += 1
        reference = write_like(paths.raster, tmp_path / f"canonical{i}.tif", canonical, wavelengths=wavelengths)
        expected = read(classify_file(model, reference, str(tmp_path / f"expected{i}.tif"))["classes"])
        np.testing.assert_array_equal(read(out), expected, err_msg=f"layout {i}: {n_bands} bands, nodata {nodata}")
        assert (read(out)[invalid] == 0).all()
    assert outcomes["refused"] and outcomes["classified"], outcomes


def test_the_fault_tests_leave_no_temporaries_in_the_sample(scene):
    paths, _ = scene
    assert leftovers(os.path.dirname(paths.raster)) == []
