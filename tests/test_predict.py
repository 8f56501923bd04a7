"""predict_raster end to end on small generated GeoTIFFs, with a per-pixel dummy model known in closed form.

The dummy's logits are 10 x the stretched value of each band (one band per class), so the expected
classes, probabilities and clusters follow from the input pixel by pixel.
"""

import json
import os
import tracemalloc

import numpy as np
import pytest
import torch
from osgeo import gdal, osr

import engine.inference.predict as predict_module
from engine import paths
from engine.data.normalize import Stretch, apply_stretch
from engine.data.raster import open_raster, read_raster
from engine.models.base import HSIClassifier, ModelOutput
from engine.inference.predict import CONFIDENCE_NODATA, PROBABILITY_NODATA, PredictionCancelled, predict_raster
from engine.inference.tiling import predict_array

gdal.UseExceptions()

IDS = [3, 7, 12, 200]
NAMES = ["roof", "tree", "water, deep", "soil"]
COLORS = [[230, 0, 0], [38, 115, 0], [0, 100, 255], [168, 112, 0]]
WAVELENGTHS = [450.0, 550.0, 650.0, 850.0]
NODATA = -32768
GEOTRANSFORM = (364095.0, 30.0, 0.0, 5809965.0, 0.0, -30.0)


class BandIsClass(HSIClassifier):
    """Logits = 10 x input band (one band per class); clusters = argmax. Records every window it sees."""

    name = "band-is-class"

    def __init__(self, n: int = 4, clusters: bool = True) -> None:
        super().__init__({"in_bands": n, "n_classes": n})
        self.with_clusters = clusters
        self.calls = []

    def forward(self, x, guide=None, valid=None):
        self.calls.append(tuple(x.shape[2:]))
        logits = 10.0 * x
        return ModelOutput(logits=logits, clusters=logits.argmax(1) if self.with_clusters else None)


def write_raster(path, rows, cols, seed=0):
    """4-band Int16 GeoTIFF (EPSG:32633) whose brightest band is the class; some nodata pixels.

    Returns the class index map (rows, cols) and the valid mask."""
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[:rows, :cols]
    truth = (rr // 5 + cc // 7) % 4
    values = 50 + rng.integers(0, 40, (4, rows, cols))
    values[truth, rr, cc] += 150
    valid = np.ones((rows, cols), bool)
    valid[: rows // 3, : cols // 3] = False             # a nodata block: whole tiles have nothing to predict
    valid[rows - 1, cols - 1] = False
    values[1][~valid] = NODATA                          # one band is enough to make a pixel invalid
    ds = gdal.GetDriverByName("GTiff").Create(str(path), cols, rows, 4, gdal.GDT_Int16)
    ds.SetGeoTransform(GEOTRANSFORM)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    ds.SetProjection(srs.ExportToWkt())
    for b in range(4):
        band = ds.GetRasterBand(b + 1)
        band.WriteArray(values[b].astype(np.int16))
        band.SetNoDataValue(NODATA)
        band.SetMetadataItem("wavelength", str(WAVELENGTHS[b]))
        band.SetMetadataItem("wavelength_units", "Nanometers")
    ds = None
    return truth, valid


def make_metadata(ids=IDS, wavelengths=WAVELENGTHS, indices=(1, 2, 3, 4)):
    n = len(indices)
    return {
        "format_version": 1,
        "model": {"name": "band-is-class", "config": {"in_bands": n, "n_classes": len(ids)}},
        "bands": {"indices": list(indices), "names": [f"band {b}" for b in indices],
                  "wavelengths": list(wavelengths), "nodata": [NODATA] * n},
        "normalisation": Stretch(np.zeros(n), np.full(n, 255.0)).to_dict(),
        "classes": {"ids": list(ids), "names": NAMES[: len(ids)], "colors": COLORS[: len(ids)]},
        "provenance": {},
    }


@pytest.fixture(autouse=True)
def small_groups(monkeypatch):
    """Two 8 x 8 tiles per forward: the tests below see both batched and single-tile groups."""
    monkeypatch.setattr(predict_module, "PREDICT_BATCH_PIXELS", 128)


@pytest.fixture
def scene(tmp_path):
    raster = tmp_path / "in" / "scene.tif"
    raster.parent.mkdir()
    truth, valid = write_raster(raster, 37, 29)
    out = tmp_path / "out"
    out.mkdir()
    return str(raster), truth, valid, out


def read(path):
    ds = gdal.Open(str(path))
    return ds, ds.ReadAsArray()


def test_outputs_share_the_input_grid_and_describe_the_classes(scene):
    raster, truth, valid, out = scene
    paths = {"classes": out / "classes.tif", "confidence": out / "confidence.tif",
             "clusters": out / "clusters.tif", "probabilities": out / "probabilities.tif"}
    written = predict_raster(BandIsClass(), make_metadata(), raster, str(paths["classes"]),
                             out_confidence=str(paths["confidence"]), out_clusters=str(paths["clusters"]),
                             out_probabilities=str(paths["probabilities"]), tile=12, overlap=2, device="auto")
    assert written == {kind: str(path) for kind, path in paths.items()}
    source = gdal.Open(raster)
    expected_types = {"classes": "Byte", "confidence": "Float32", "clusters": "UInt16", "probabilities": "Float32"}
    expected_nodata = {"classes": 0, "confidence": CONFIDENCE_NODATA, "clusters": 0,
                       "probabilities": PROBABILITY_NODATA}
    for kind, path in paths.items():
        ds = gdal.Open(str(path))
        assert (ds.RasterXSize, ds.RasterYSize) == (29, 37)
        assert ds.GetGeoTransform() == source.GetGeoTransform()
        assert osr.SpatialReference(ds.GetProjection()).IsSame(osr.SpatialReference(source.GetProjection()))
        band = ds.GetRasterBand(1)
        assert gdal.GetDataTypeName(band.DataType) == expected_types[kind]
        assert band.GetNoDataValue() == expected_nodata[kind]
        assert ds.GetMetadata("IMAGE_STRUCTURE")["COMPRESSION"] == "DEFLATE"
        assert band.GetBlockSize() == [256, 256]
    # nothing but the outputs (and the class raster's sidecar with names and attribute table) is left
    assert sorted(os.listdir(out)) == ["classes.tif", "classes.tif.aux.xml", "clusters.tif", "confidence.tif",
                                       "probabilities.tif"]

    ids = np.array(IDS)
    _, classes = read(paths["classes"])
    np.testing.assert_array_equal(classes, np.where(valid, ids[truth], 0))
    _, clusters = read(paths["clusters"])
    np.testing.assert_array_equal(clusters, np.where(valid, truth + 1, 0))

    # probabilities in closed form: softmax of 10 x stretched values
    info = open_raster(raster)
    data, read_valid = read_raster(info)
    np.testing.assert_array_equal(read_valid, valid)
    x = apply_stretch(data, valid, Stretch(np.zeros(4), np.full(4, 255.0))).astype(np.float64)
    expected = np.exp(10 * x) / np.exp(10 * x).sum(0)
    _, probabilities = read(paths["probabilities"])
    np.testing.assert_allclose(probabilities[:, valid], expected[:, valid], rtol=1e-5, atol=1e-7)
    assert (probabilities[:, ~valid] == PROBABILITY_NODATA).all()
    np.testing.assert_allclose(probabilities[:, valid].sum(0), 1.0, rtol=1e-5)
    _, confidence = read(paths["confidence"])
    np.testing.assert_allclose(confidence[valid], expected.max(0)[valid], rtol=1e-5)
    assert (confidence[valid] >= 1 / 4).all() and (confidence[valid] <= 1).all()
    assert (confidence[~valid] == CONFIDENCE_NODATA).all()


def test_outputs_get_the_usual_file_mode_not_the_private_one_of_temporaries(scene):
    raster, _, _, out = scene
    predict_raster(BandIsClass(), make_metadata(), raster, str(out / "c.tif"), out_confidence=str(out / "f.tif"),
                   tile=16, overlap=2)
    (out / "plain").write_bytes(b"")                    # mode from the umask, like any new file
    usual = os.stat(out / "plain").st_mode & 0o777
    assert [os.stat(out / name).st_mode & 0o777 for name in ("c.tif", "f.tif")] == [usual, usual]


def test_class_raster_carries_colours_names_and_attribute_table(scene):
    raster, _, _, out = scene
    predict_raster(BandIsClass(), make_metadata(), raster, str(out / "classes.tif"), tile=16, overlap=4)
    ds = gdal.Open(str(out / "classes.tif"))                 # keep the dataset alive while using its band
    band = ds.GetRasterBand(1)
    table = band.GetRasterColorTable()
    for class_id, color in zip(IDS, COLORS):
        assert table.GetColorEntry(class_id) == tuple(color) + (255,)
    assert table.GetColorEntry(0)[3] == 0                # nodata is transparent
    names = band.GetCategoryNames()
    assert [names[i] for i in IDS] == NAMES and names[0] == ""
    rat = band.GetDefaultRAT()
    assert [rat.GetValueAsInt(r, 0) for r in range(rat.GetRowCount())] == IDS
    assert [rat.GetValueAsString(r, 1) for r in range(rat.GetRowCount())] == NAMES
    assert rat.GetValueAsInt(2, 4) == 255                # water's blue
    assert band.GetDescription() == "class"
    assert json.loads(band.GetMetadataItem("class_ids")) == IDS
    assert json.loads(band.GetMetadataItem("class_names")) == NAMES


def test_probability_bands_are_named_by_class_and_large_ids_use_uint16(scene):
    raster, truth, valid, out = scene
    ids = [1, 2, 300, 4]
    predict_raster(BandIsClass(), make_metadata(ids=ids), raster, str(out / "classes.tif"),
                   out_probabilities=str(out / "p.tif"), tile=64, overlap=0)
    ds, classes = read(out / "classes.tif")
    assert gdal.GetDataTypeName(ds.GetRasterBand(1).DataType) == "UInt16"
    np.testing.assert_array_equal(classes, np.where(valid, np.array(ids)[truth], 0))
    probabilities = gdal.Open(str(out / "p.tif"))
    assert [probabilities.GetRasterBand(k + 1).GetDescription() for k in range(4)] == NAMES
    assert [probabilities.GetRasterBand(k + 1).GetMetadataItem("class_id") for k in range(4)] == ["1", "2", "300", "4"]


def test_tiled_raster_prediction_matches_the_whole_image(scene):
    raster, _, valid, out = scene
    metadata = make_metadata()
    predict_raster(BandIsClass(), metadata, raster, str(out / "tiled.tif"), out_probabilities=str(out / "pt.tif"),
                   tile=7, overlap=1)
    predict_raster(BandIsClass(), metadata, raster, str(out / "whole.tif"), out_probabilities=str(out / "pw.tif"),
                   tile=100, overlap=0)
    np.testing.assert_array_equal(read(out / "tiled.tif")[1], read(out / "whole.tif")[1])
    np.testing.assert_array_max_ulp(read(out / "pt.tif")[1], read(out / "pw.tif")[1], maxulp=2)
    # and both agree with predict_array on the image in memory
    data, read_valid = read_raster(open_raster(raster))
    probabilities, _ = predict_array(BandIsClass(), apply_stretch(data, read_valid, Stretch.from_dict(
        metadata["normalisation"])), read_valid)
    np.testing.assert_array_max_ulp(read(out / "pw.tif")[1][:, valid], probabilities[:, valid], maxulp=2)


@pytest.mark.parametrize("tile", [8, 100])
def test_the_model_gets_each_window_s_valid_mask(scene, tile):
    """Issue 13, lead 5: the raster's nodata mask reaches the model with every window (stacked tiles too),
    so a model need not take all-zero values for nodata; here nodata pixels are exactly the all-zero ones."""
    class KeepsMasks(BandIsClass):
        def forward(self, x, guide=None, valid=None):
            self.masks.append((x, valid))
            return super().forward(x, guide, valid)

    raster, _, _, out = scene
    model = KeepsMasks()
    model.masks = []
    predict_raster(model, make_metadata(), raster, str(out / "c.tif"), tile=tile, overlap=1)
    assert model.masks
    for x, mask in model.masks:
        assert mask is not None and mask.dtype == torch.bool and mask.shape == (x.shape[0],) + x.shape[2:]
        assert torch.equal(mask, (x != 0).any(1))
    assert any(not bool(mask.all()) for _, mask in model.masks)


def test_tiles_without_valid_pixels_are_not_run(scene):
    raster, _, _, out = scene
    model = BandIsClass()
    predict_raster(model, make_metadata(), raster, str(out / "c.tif"), tile=8, overlap=1)
    assert len(model.calls) < len(predict_module.plan_tiles(37, 29, 8, 1))


def test_cancel_leaves_no_file_and_keeps_an_existing_output(scene):
    raster, _, _, out = scene
    (out / "classes.tif").write_bytes(b"previous result")
    groups = predict_module.group_tiles(predict_module.plan_tiles(37, 29, 8, 1), predict_module.PREDICT_BATCH_PIXELS)
    tiles = len(groups)                                 # one cancel poll per group of tiles
    for stop_after in (2, tiles + 1):                    # during the tiles; after compressing the first output
        polls = []

        def cancelled():
            polls.append(1)
            return len(polls) > stop_after

        with pytest.raises(PredictionCancelled):
            predict_raster(BandIsClass(), make_metadata(), raster, str(out / "classes.tif"),
                           out_confidence=str(out / "confidence.tif"), out_probabilities=str(out / "p.tif"),
                           tile=8, overlap=1, cancelled=cancelled)
        assert sorted(os.listdir(out)) == ["classes.tif"]
        assert (out / "classes.tif").read_bytes() == b"previous result"


def test_an_error_mid_way_leaves_no_file(scene):
    raster, _, _, out = scene

    class Fails(BandIsClass):
        def forward(self, x, guide=None, valid=None):
            if len(self.calls) == 3:
                raise RuntimeError("out of memory")
            return super().forward(x)

    with pytest.raises(RuntimeError, match="out of memory"):
        predict_raster(Fails(), make_metadata(), raster, str(out / "classes.tif"), out_clusters=str(out / "k.tif"),
                       tile=8, overlap=1)
    assert os.listdir(out) == []


def test_progress_reaches_one(scene):
    raster, _, _, out = scene
    seen = []
    predict_raster(BandIsClass(), make_metadata(), raster, str(out / "c.tif"), tile=16, overlap=2,
                   progress=lambda fraction, text="": seen.append(fraction))
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0) and len(seen) > 2


def test_device_and_tile_plan_are_logged(scene, caplog):
    raster, _, _, out = scene
    with caplog.at_level("INFO", logger="engine.inference.predict"):
        predict_raster(BandIsClass(), make_metadata(), raster, str(out / "c.tif"), tile=16, overlap=2)
    assert "on cpu in 9 tiles of up to 15 x 13 px with 2 px overlap" in caplog.text


# ---- bad input --------------------------------------------------------------------------------------

def test_output_folder_that_does_not_exist_fails_before_any_work(scene):
    raster, _, _, out = scene
    model = BandIsClass()
    target = out / "missing" / "classes.tif"
    with pytest.raises(ValueError, match=f"cannot write the confidence raster {target}: the folder .* does not exist"):
        predict_raster(model, make_metadata(), raster, str(out / "c.tif"), out_confidence=str(target))
    assert model.calls == [] and os.listdir(out) == []


def test_unwritable_output_folder_fails_before_any_work(scene, monkeypatch):
    raster, _, _, out = scene
    model = BandIsClass()

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(paths.tempfile, "mkstemp", refuse)   # chmod does not stop root, so simulate
    with pytest.raises(ValueError, match=f"cannot write the classes raster {out / 'c.tif'}: Permission denied"):
        predict_raster(model, make_metadata(), raster, str(out / "c.tif"))
    assert model.calls == []


@pytest.mark.parametrize("name", ["same", "input"])
def test_an_output_written_twice_or_over_the_input_is_refused(scene, name):
    raster, _, _, out = scene
    second = str(out / "c.tif") if name == "same" else raster
    with pytest.raises(ValueError, match="are the same file" if name == "same" else "would destroy the input"):
        predict_raster(BandIsClass(), make_metadata(), raster, str(out / "c.tif"), out_confidence=second)
    assert os.listdir(out) == []


def test_output_that_is_a_folder_is_refused(scene):
    raster, _, _, out = scene
    with pytest.raises(ValueError, match="it is a folder"):
        predict_raster(BandIsClass(), make_metadata(), raster, str(out))


def test_classify_refuses_raster_with_fewer_bands_than_the_model(scene):
    raster, _, _, out = scene
    metadata = make_metadata(wavelengths=[400.0 + 50 * k for k in range(6)], indices=range(1, 7))
    with pytest.raises(ValueError, match="has 4 bands but the model reads bands up to 6"):
        predict_raster(BandIsClass(6), metadata, raster, str(out / "c.tif"))
    assert os.listdir(out) == []


def test_classify_refuses_raster_with_other_wavelengths(scene):
    raster, _, _, out = scene
    with pytest.raises(ValueError, match="wavelengths differ"):
        predict_raster(BandIsClass(), make_metadata(wavelengths=[450.0, 550.0, 700.0, 850.0]), raster,
                       str(out / "c.tif"))
    assert os.listdir(out) == []


def test_cluster_output_from_a_model_without_clusters_is_refused(scene):
    raster, _, _, out = scene
    with pytest.raises(ValueError, match="gives no cluster map; leave out the cluster output"):
        predict_raster(BandIsClass(clusters=False), make_metadata(), raster, str(out / "c.tif"),
                       out_clusters=str(out / "k.tif"))
    assert os.listdir(out) == []


def test_cuda_without_a_gpu_is_refused(scene, monkeypatch):
    raster, _, _, out = scene
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)   # the same on GPU machines
    with pytest.raises(ValueError, match="no CUDA GPU"):
        predict_raster(BandIsClass(), make_metadata(), raster, str(out / "c.tif"), device="cuda")
    assert os.listdir(out) == []


# ---- memory -----------------------------------------------------------------------------------------

def test_reads_and_memory_do_not_grow_with_the_raster(tmp_path, monkeypatch):
    reads = []
    real_read_window = predict_module.read_window

    def counting_read_window(info, row0, col0, rows, cols):
        reads.append(rows * cols)
        return real_read_window(info, row0, col0, rows, cols)

    monkeypatch.setattr(predict_module, "read_window", counting_read_window)
    peaks = {}
    for size in (92, 356):                   # 15 x the pixels; both tile into full 48 px windows (2 x 2 and 8 x 8)
        raster = tmp_path / f"r{size}.tif"
        write_raster(raster, size, size)
        reads.clear()
        tracemalloc.start()
        predict_raster(BandIsClass(), make_metadata(), str(raster), str(tmp_path / f"c{size}.tif"),
                       out_probabilities=str(tmp_path / f"p{size}.tif"), tile=48, overlap=2)
        peaks[size] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert max(reads) == 48 * 48                      # never more than one tile window at a time
        assert sum(reads) < 1.5 * size * size            # each pixel read about once, plus the overlaps
    # numpy buffers (traced) stay those of a tile: the larger raster needs no more than a little extra
    assert peaks[356] < 1.2 * peaks[92], peaks
