"""engine.inference.postprocess: the minimum mapping unit (sieve) and the majority filter of a class map."""

import os

import numpy as np
import pytest
from osgeo import gdal

from engine.inference import postprocess
from engine.inference.postprocess import majority, sieve

gdal.UseExceptions()


def class_map(path, values):
    ds = gdal.GetDriverByName("GTiff").Create(str(path), values.shape[1], values.shape[0], 1, gdal.GDT_Byte)
    ds.SetGeoTransform((500000, 30, 0, 5800000, 0, -30))
    band = ds.GetRasterBand(1)
    band.SetNoDataValue(0)
    table = gdal.ColorTable()
    table.SetColorEntry(1, (255, 0, 0, 255))
    table.SetColorEntry(2, (0, 255, 0, 255))
    band.SetRasterColorTable(table)
    band.SetCategoryNames(["", "roof", "tree"])
    band.WriteArray(values)
    ds = None
    return str(path)


def read(path):
    return gdal.Open(path).ReadAsArray()


def test_sieve_merges_patches_below_the_mapping_unit_and_keeps_colours_names_and_nodata(tmp_path):
    values = np.ones((20, 20), np.uint8)
    values[5:7, 5:7] = 2          # 4 px speck
    values[10:15, 10:15] = 2      # 25 px field
    values[0, :] = 0              # unclassified row
    src = class_map(tmp_path / "classes.tif", values)
    out = sieve(src, str(tmp_path / "mmu.tif"), min_pixels=5, connectedness=8)
    result = read(out)
    assert (result[5:7, 5:7] == 1).all() and (result[10:15, 10:15] == 2).all() and (result[0] == 0).all()
    dataset = gdal.Open(out)          # kept: a band outlives its dataset only in C
    band = dataset.GetRasterBand(1)
    assert gdal.Info(out, format="json")["bands"][0]["categories"] == ["", "roof", "tree"]
    assert band.GetColorTable().GetColorEntry(2)[:3] == (0, 255, 0)
    assert band.GetNoDataValue() == 0 and dataset.GetGeoTransform()[1] == 30
    assert sorted(os.listdir(tmp_path)) == ["classes.tif", "classes.tif.aux.xml", "mmu.tif", "mmu.tif.aux.xml"]


def test_four_connected_sieve_splits_a_diagonal_line_that_eight_connected_keeps(tmp_path):
    values = np.ones((12, 12), np.uint8)
    for k in range(2, 8):
        values[k, k] = 2          # a 6 px diagonal: one patch 8-connected, six single pixels 4-connected
    src = class_map(tmp_path / "classes.tif", values)
    assert (read(sieve(src, str(tmp_path / "eight.tif"), 4, 8)) == 2).sum() == 6
    assert (read(sieve(src, str(tmp_path / "four.tif"), 4, 4)) == 2).sum() == 0


def test_majority_removes_single_pixels_keeps_nodata_and_ties_and_works_across_strips(tmp_path, monkeypatch):
    monkeypatch.setattr(postprocess, "_STRIP_ROWS", 7)      # several strips on a small map
    rng = np.random.default_rng(0)
    values = np.where(np.arange(30)[:, None] < 15, 1, 2).astype(np.uint8).repeat(1, 1) * np.ones((30, 30), np.uint8)
    specks = rng.choice(900, 40, replace=False)
    noisy = values.copy().ravel()
    noisy[specks] = 3 - noisy[specks]
    noisy = noisy.reshape(30, 30)
    noisy[20:23, 0:3] = 0
    src = class_map(tmp_path / "classes.tif", noisy)
    result = read(majority(src, str(tmp_path / "majority.tif"), size=3))
    assert (result[20:23, 0:3] == 0).all()
    inner = np.ones(values.shape, bool)
    inner[13:17] = False              # the border between the halves may move by a pixel
    inner[19:24, 0:4] = False         # around the unclassified block
    assert (result[inner] == values[inner]).mean() > 0.99
    whole = postprocess._majority(noisy.astype(np.int64), 1)
    assert np.array_equal(result, whole)                     # strips give the one-pass result
    tie = np.array([[1, 2], [2, 1]])
    assert np.array_equal(postprocess._majority(tie, 1), tie)   # 2 against 2: every pixel keeps its class


def test_bad_settings_and_inputs_are_refused_with_the_fix(tmp_path):
    src = class_map(tmp_path / "classes.tif", np.ones((5, 5), np.uint8))
    with pytest.raises(ValueError, match="at least 2 pixels"):
        sieve(src, str(tmp_path / "a.tif"), 1)
    with pytest.raises(ValueError, match="connectedness"):
        sieve(src, str(tmp_path / "a.tif"), 4, 6)
    with pytest.raises(ValueError, match="odd number"):
        majority(src, str(tmp_path / "a.tif"), 4)
    with pytest.raises(ValueError, match="destroy the input"):
        majority(src, src, 3)
    floats = tmp_path / "float.tif"
    gdal.GetDriverByName("GTiff").Create(str(floats), 5, 5, 1, gdal.GDT_Float32).FlushCache()
    with pytest.raises(ValueError, match="whole class ids"):
        sieve(str(floats), str(tmp_path / "a.tif"), 4)


def test_the_cli_cleans_a_real_class_map(shared_data, tmp_path, capsys):
    from engine.cli import main

    labels = os.path.join(shared_data, "enmap_potsdam", "enmap_potsdam_labels.tif")
    out = str(tmp_path / "mmu.tif")
    assert main(["postprocess", "--classes", labels, "--out", out, "--sieve", "10", "--connectedness", "4"]) == 0
    before, after = read(labels), read(out)
    assert (after[before == 0] == 0).all() and (after != before).sum() > 0
    assert main(["postprocess", "--classes", labels, "--out", str(tmp_path / "maj.tif"), "--majority", "3"]) == 0
    assert main(["postprocess", "--classes", labels, "--out", out]) == 2
    assert "either --sieve" in capsys.readouterr().err
