"""The built-in synthetic sample: georeferenced, spectrally plausible, ROIs on the right pixels."""

import os

import numpy as np
import pytest
from osgeo import gdal, ogr

from engine.data import sample as sample_module
from engine.data.sample import CLASSES, NODATA, SampleCancelled, generate_sample

gdal.UseExceptions()


@pytest.fixture(scope="module")
def small_sample(tmp_path_factory):
    return generate_sample(str(tmp_path_factory.mktemp("sample")), rows=60, cols=70, bands=100, seed=5)


def test_sample_raster_is_georeferenced_hyperspectral_with_metadata(small_sample):
    ds = gdal.Open(small_sample.raster)
    assert (ds.RasterCount, ds.RasterYSize, ds.RasterXSize) == (100, 60, 70)
    assert ds.GetSpatialRef().GetAuthorityCode(None) == "32633"
    assert ds.GetGeoTransform() == (364095.0, 30.0, 0.0, 5809965.0, 0.0, -30.0)
    band = ds.GetRasterBand(50)
    assert band.DataType == gdal.GDT_Int16 and band.GetNoDataValue() == NODATA and band.GetScale() == 1e-4
    wavelengths = [float(ds.GetRasterBand(i + 1).GetMetadataItem("wavelength")) for i in range(100)]
    assert wavelengths[0] == pytest.approx(418, abs=1) and wavelengths[-1] == pytest.approx(2446, abs=1)
    assert np.all(np.diff(wavelengths) > 0)
    bbl = [int(ds.GetRasterBand(i + 1).GetMetadataItem("bbl")) for i in range(100)]
    assert 0 < bbl.count(0) < 20, "the water-vapour bands are flagged as bad bands"
    assert ds.GetMetadata("ENVI")["wavelength_units"] == "Nanometers"


def test_sample_spectra_look_like_their_classes(small_sample):
    cube = gdal.Open(small_sample.raster).ReadAsArray().astype(float) * 1e-4
    labels = gdal.Open(small_sample.labels).ReadAsArray()
    wl = sample_module.wavelengths(100)
    red, nir = np.argmin(abs(wl - 670)), np.argmin(abs(wl - 860))
    mean = {c.name: cube[:, labels == c.id].mean(axis=1) for c in CLASSES if (labels == c.id).any()}
    ndvi = {name: (m[nir] - m[red]) / (m[nir] + m[red]) for name, m in mean.items()}
    assert ndvi["tree"] > 0.6 and ndvi["low vegetation"] > 0.6
    assert ndvi["roof"] < 0.3 and ndvi["pavement"] < 0.3 and ndvi["soil"] < 0.4
    assert mean["water"][nir] < 0.03 and mean["water"][nir] < mean["pavement"][nir] / 3


def test_sample_nodata_corner_is_unlabelled(small_sample):
    cube = gdal.Open(small_sample.raster).ReadAsArray()
    labels = gdal.Open(small_sample.labels).ReadAsArray()
    nodata = (cube == NODATA).all(axis=0)
    assert nodata[0, 0] and nodata.sum() > 0
    assert np.array_equal(labels == 0, nodata)


def test_sample_rois_cover_only_pixels_of_their_class(small_sample):
    source = ogr.Open(small_sample.rois)  # keep a reference: the layer dies with its data source
    layer = source.GetLayer()
    assert [layer.GetLayerDefn().GetFieldDefn(i).GetName() for i in range(2)] == ["class_id", "class_name"]
    truth = gdal.Open(small_sample.labels)
    target = gdal.GetDriverByName("MEM").Create("", truth.RasterXSize, truth.RasterYSize, 1, gdal.GDT_Byte)
    target.SetGeoTransform(truth.GetGeoTransform())
    target.SetProjection(truth.GetProjection())
    gdal.RasterizeLayer(target, [1], layer, options=["ATTRIBUTE=class_id"])
    rois = target.ReadAsArray()
    labels = truth.ReadAsArray()
    assert rois.any()
    assert np.array_equal(rois[rois > 0], labels[rois > 0])
    assert set(np.unique(rois[rois > 0])) == {c.id for c in CLASSES}
    names = {f.GetField("class_id"): f.GetField("class_name") for f in layer}
    assert names == {c.id: c.name for c in CLASSES}


def test_same_seed_gives_the_same_sample_and_another_seed_differs(tmp_path):
    a = generate_sample(str(tmp_path / "a"), rows=20, cols=20, bands=12, seed=1)
    b = generate_sample(str(tmp_path / "b"), rows=20, cols=20, bands=12, seed=1)
    c = generate_sample(str(tmp_path / "c"), rows=20, cols=20, bands=12, seed=2)
    read = lambda p: gdal.Open(p.raster).ReadAsArray()  # noqa: E731
    assert np.array_equal(read(a), read(b))
    assert not np.array_equal(read(a), read(c))


def test_large_sample_is_written_in_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(sample_module, "BLOCK_ROWS", 7)
    paths = generate_sample(str(tmp_path), rows=30, cols=17, bands=11, seed=0)
    cube = gdal.Open(paths.raster).ReadAsArray()
    assert cube.shape == (11, 30, 17) and (cube[:, -1] != 0).all()


def test_cancelled_sample_leaves_no_files(tmp_path):
    calls = []

    def cancel_on_second_block():
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(SampleCancelled):
        generate_sample(str(tmp_path), rows=200, cols=20, bands=11, cancelled=cancel_on_second_block)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kwargs, words", [
    ({"rows": 8}, "too small"), ({"bands": 3}, "at least 10"),
])
def test_sample_rejects_unusable_sizes(tmp_path, kwargs, words):
    with pytest.raises(ValueError, match=words):
        generate_sample(str(tmp_path), **kwargs)
