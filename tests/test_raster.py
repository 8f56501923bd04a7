"""engine.data.raster: band choice, validity (nodata, NaN/Inf, mask bands), scale/offset, spectral metadata."""

import logging
import os

import numpy as np
import pytest
from osgeo import gdal, osr

from engine.data import raster as raster_module
from engine.data.raster import ReadCancelled, load_training_raster, open_raster, read_raster, read_window

gdal.UseExceptions()

GT = (500000.0, 30.0, 0.0, 5800000.0, 0.0, -30.0)


def write_raster(path, cube, dtype=gdal.GDT_Int16, nodata=None, scale=None, offset=None, band_metadata=None,
                 metadata=None, options=()):
    """A GeoTIFF (EPSG:32633) from cube (bands, rows, cols); per-band metadata dicts in band_metadata."""
    bands, rows, cols = cube.shape
    ds = gdal.GetDriverByName("GTiff").Create(str(path), cols, rows, bands, dtype, list(options))
    ds.SetGeoTransform(GT)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    ds.SetProjection(srs.ExportToWkt())
    for domain, items in (metadata or {}).items():
        ds.SetMetadata(items, domain)
    for b in range(bands):
        band = ds.GetRasterBand(b + 1)
        band.WriteArray(cube[b])
        if nodata is not None:
            band.SetNoDataValue(nodata)
        if scale is not None:
            band.SetScale(scale)
        if offset is not None:
            band.SetOffset(offset)
        for domain, items in ((band_metadata or [{}] * bands)[b]).items():
            band.SetMetadata(items, domain)
    ds = None
    return str(path)


def test_open_raster_reads_spectral_metadata_and_drops_bad_bands(tmp_path):
    cube = np.ones((4, 3, 5), np.int16)
    meta = [{"": {"wavelength": f"{0.5 + 0.1 * b}", "wavelength_units": "Micrometers", "bbl": "0" if b == 2 else "1"}}
            for b in range(4)]
    path = write_raster(tmp_path / "a.tif", cube, nodata=-9999, band_metadata=meta)
    ds = gdal.Open(path, gdal.GA_Update)
    ds.GetRasterBand(1).SetDescription("blue")
    ds = None
    info = open_raster(path)
    assert info.band_indices == [1, 2, 4] and info.bands == 3
    assert info.band_names == ["blue", "band 2", "band 4"]
    assert info.wavelengths == pytest.approx([500.0, 600.0, 800.0])
    assert info.nodata == [-9999.0] * 3 and info.dtype == "Int16"
    assert (info.rows, info.cols) == (3, 5) and info.geotransform == GT and "32633" in info.projection
    assert open_raster(path, drop_bad_bands=False).band_indices == [1, 2, 3, 4]


def test_wavelengths_come_from_the_envi_domain_or_the_imagery_domain(tmp_path):
    cube = np.ones((3, 2, 2), np.int16)
    envi = {"ENVI": {"wavelength": "{0.45, 0.55, 0.65}", "wavelength_units": "um", "bbl": "{1, 0, 1}"}}
    info = open_raster(write_raster(tmp_path / "envi.tif", cube, metadata=envi))
    assert info.band_indices == [1, 3] and info.wavelengths == pytest.approx([450.0, 650.0])
    imagery = [{"IMAGERY": {"CENTRAL_WAVELENGTH_UM": f"{1.0 + b}"}} for b in range(3)]
    info = open_raster(write_raster(tmp_path / "imagery.tif", cube, band_metadata=imagery))
    assert info.wavelengths == pytest.approx([1000.0, 2000.0, 3000.0])
    unitless = [{"": {"wavelength": w}} for w in ("0.45", "0.55", "0.65")]  # < 100 without units: micrometres
    assert open_raster(write_raster(tmp_path / "um.tif", cube, band_metadata=unitless)).wavelengths == pytest.approx(
        [450.0, 550.0, 650.0])


def test_unusable_or_partial_wavelengths_give_none(tmp_path, caplog):
    cube = np.ones((2, 2, 2), np.int16)
    partial = [{"": {"wavelength": "500"}}, {}]
    with caplog.at_level(logging.WARNING):
        assert open_raster(write_raster(tmp_path / "p.tif", cube, band_metadata=partial)).wavelengths is None
    assert "band 2 has no usable wavelength" in caplog.text
    assert open_raster(write_raster(tmp_path / "none.tif", cube)).wavelengths is None


def test_explicit_band_list_is_used_as_given_and_checked(tmp_path):
    meta = [{"": {"bbl": "0"}}, {"": {"bbl": "1"}}, {"": {"bbl": "1"}}]
    path = write_raster(tmp_path / "b.tif", np.ones((3, 2, 2), np.int16), band_metadata=meta)
    assert open_raster(path).band_indices == [2, 3]
    assert open_raster(path, bands=[3, 1]).band_indices == [3, 1], "a model's bands are read again as stored"
    for wrong in ([0], [4], [2, 2], []):
        with pytest.raises(ValueError, match="from 1 to 3"):
            open_raster(path, bands=wrong)


def test_read_window_applies_scale_offset_and_invalidates_nodata_nan_and_inf(tmp_path):
    cube = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    cube[0, 0, 1] = -1.0       # nodata in band 1 only: the pixel is invalid in every band
    cube[1, 2, 3] = np.nan
    cube[0, 1, 2] = np.inf
    path = write_raster(tmp_path / "f.tif", cube, dtype=gdal.GDT_Float32, nodata=-1.0, scale=0.5, offset=10.0)
    data, valid = read_window(open_raster(path), 0, 0, 3, 4)
    expected_valid = np.ones((3, 4), bool)
    expected_valid[0, 1] = expected_valid[2, 3] = expected_valid[1, 2] = False
    assert data.dtype == np.float32 and data.shape == (2, 3, 4)
    assert np.array_equal(valid, expected_valid)
    assert np.array_equal(data[:, valid], cube[:, valid] * 0.5 + 10.0)
    assert (data[:, ~valid] == 0).all()
    data, valid = read_window(open_raster(path), 1, 2, 2, 2)
    assert np.array_equal(valid, expected_valid[1:3, 2:4]) and data[0, 0, 1] == cube[0, 1, 3] * 0.5 + 10
    with pytest.raises(ValueError, match="outside"):
        read_window(open_raster(path), 2, 0, 2, 4)


def test_integer_nodata_is_compared_in_the_band_type(tmp_path):
    cube = np.array([[[-32768, 5], [7, 9]]], np.int16)
    info = open_raster(write_raster(tmp_path / "i.tif", cube, nodata=-32768, scale=1e-4))
    data, valid = read_window(info, 0, 0, 2, 2)
    assert np.array_equal(valid, [[False, True], [True, True]])
    assert data[0, 0, 1] == pytest.approx(5e-4)


def test_dataset_mask_band_invalidates_pixels(tmp_path):
    path = write_raster(tmp_path / "m.tif", np.ones((2, 3, 3), np.int16))
    ds = gdal.Open(path, gdal.GA_Update)
    ds.CreateMaskBand(gdal.GMF_PER_DATASET)
    mask = np.full((3, 3), 255, np.uint8)
    mask[1, 1] = 0
    ds.GetRasterBand(1).GetMaskBand().WriteArray(mask)
    ds = None
    assert gdal.Open(path).GetRasterBand(1).GetMaskFlags() == gdal.GMF_PER_DATASET
    data, valid = read_window(open_raster(path), 0, 0, 3, 3)
    assert np.array_equal(valid, mask > 0) and data[:, 1, 1].tolist() == [0, 0]


def test_alpha_band_is_a_mask_not_a_data_band(tmp_path):
    cube = np.full((4, 2, 3), 7, np.uint8)
    cube[3] = 255
    cube[3, 0, 2] = 0
    path = write_raster(tmp_path / "rgba.tif", cube, dtype=gdal.GDT_Byte, options=["ALPHA=YES"])
    assert gdal.Open(path).GetRasterBand(1).GetMaskFlags() & gdal.GMF_ALPHA
    info = open_raster(path)
    assert info.band_indices == [1, 2, 3]
    data, valid = read_raster(info)
    assert valid.sum() == 5 and not valid[0, 2] and data[:, 0, 2].tolist() == [0, 0, 0]


def test_read_raster_reads_row_blocks_reports_progress_and_can_be_cancelled(tmp_path, monkeypatch):
    cube = np.random.default_rng(0).integers(0, 1000, (3, 40, 16)).astype(np.int16)
    cube[:, 33, 5] = -1
    path = write_raster(tmp_path / "blocks.tif", cube, nodata=-1, options=["TILED=YES", "BLOCKXSIZE=16",
                                                                           "BLOCKYSIZE=16"])
    info = open_raster(path)
    monkeypatch.setattr(raster_module, "BLOCK_BYTES", 16 * 16 * 3 * 4)
    fractions = []
    data, valid = read_raster(info, progress=lambda fraction, text="": fractions.append(fraction))
    assert fractions == pytest.approx([16 / 40, 32 / 40, 1.0])
    whole, whole_valid = read_window(info, 0, 0, 40, 16)
    assert np.array_equal(data, whole) and np.array_equal(valid, whole_valid) and valid.sum() == 40 * 16 - 1
    calls = []
    with pytest.raises(ReadCancelled, match="cancelled"):
        read_raster(info, cancelled=lambda: calls.append(1) or len(calls) > 1)
    assert len(calls) == 2, "the cancel check is polled before every block"


def test_load_training_raster_drops_bands_without_any_valid_value(tmp_path, caplog):
    cube = np.arange(4 * 3 * 3, dtype=np.float32).reshape(4, 3, 3)
    cube[1] = -5          # entirely nodata
    cube[2] = np.nan      # entirely NaN
    cube[3, 0, 0] = np.inf
    path = write_raster(tmp_path / "t.tif", cube, dtype=gdal.GDT_Float32, nodata=-5)
    with caplog.at_level(logging.WARNING):
        info, data, valid = load_training_raster(path)
    assert info.band_indices == [1, 4] and info.nodata == [-5.0, -5.0] and data.shape == (2, 3, 3)
    assert "2 bands hold no valid value" in caplog.text and "2 (band 2)" in caplog.text and "3 (band 3)" in caplog.text
    assert valid.sum() == 8 and not valid[0, 0]
    assert np.array_equal(data[:, valid], cube[[0, 3]][:, valid])


def test_load_training_raster_refuses_a_raster_without_valid_pixels(tmp_path):
    everywhere = write_raster(tmp_path / "nodata.tif", np.full((2, 3, 3), -5, np.int16), nodata=-5)
    with pytest.raises(ValueError, match="no valid pixel"):
        load_training_raster(everywhere)
    cube = np.ones((2, 3, 3), np.int16)
    cube[0, :, :2] = -5
    cube[1, :, 2:] = -5   # every band has valid values, but no pixel is valid in all bands
    with pytest.raises(ValueError, match="no valid pixel"):
        load_training_raster(write_raster(tmp_path / "disjoint.tif", cube, nodata=-5))


def test_missing_or_unreadable_raster_is_a_value_error_naming_the_path(tmp_path):
    missing = str(tmp_path / "missing.tif")
    with pytest.raises(ValueError, match="not found: .*missing.tif"):
        open_raster(missing)
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"not a raster at all")
    with pytest.raises(ValueError, match="cannot read raster .*garbage.tif"):
        load_training_raster(str(garbage))


def test_enmap_mosaic_real_data(shared_data):
    path = os.path.join(shared_data, "enmap_potsdam", "enmap_potsdam_mosaic.tif")
    info = open_raster(path)
    assert info.bands == 218 and (info.rows, info.cols) == (192, 160)
    assert info.band_indices == [b for b in range(1, 225) if not 130 <= b <= 135]
    assert info.wavelengths[0] == pytest.approx(418.24) and info.wavelengths[-1] == pytest.approx(2445.53)
    assert info.dtype == "Int16" and info.nodata[0] == -32768
    info, data, valid = load_training_raster(path)
    assert data.shape == (218, 192, 160) and valid.sum() == 18 * 32 * 32
    raw = gdal.Open(path).ReadAsArray(band_list=info.band_indices)
    assert np.allclose(data[:, valid], raw[:, valid] * 1e-4, atol=1e-7)
    assert 0.9 < data.max() < 1.1 and (data[:, ~valid] == 0).all()


def test_enmap_without_bbl_loses_the_empty_bad_bands_as_all_nodata(shared_data, caplog):
    path = os.path.join(shared_data, "enmap_potsdam", "enmap_potsdam_mosaic.tif")
    with caplog.at_level(logging.WARNING):
        info, data, valid = load_training_raster(path, bands=range(1, 225))
    assert info.band_indices == [b for b in range(1, 225) if not 130 <= b <= 135]
    assert "6 bands hold no valid value" in caplog.text and valid.sum() == 18 * 32 * 32


def test_pixel_grid_scenes_real_data(shared_data):
    info, data, valid = load_training_raster(os.path.join(shared_data, "salinas_a", "salinas_a.tif"))
    assert data.shape == (204, 83, 86) and valid.all() and info.wavelengths is None and info.projection == ""
    assert info.geotransform == (0.0, 1.0, 0.0, 0.0, 0.0, -1.0) and info.dtype == "Int16"
    info, data, valid = load_training_raster(os.path.join(shared_data, "muufl_crop", "muufl_hsi.tif"))
    assert data.shape == (64, 90, 90) and valid.all() and info.dtype == "Float32"
    assert info.wavelengths[0] == pytest.approx(405.8) and info.wavelengths[-1] == pytest.approx(1005.3)
