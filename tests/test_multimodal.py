"""Multi-modal data and jobs (issue 5 items 3-4): auxiliary rasters resampled onto the HSI grid, crop
planning, averaged-logit prediction, the M3amba model file, bad inputs, and train → classify → evaluate
on the MUUFL crop through the CLI.

Exact checks use generated rasters and a dummy model whose logits are known in closed form; the
realistic ones use ../shared/data/muufl_crop (64-band HSI + 2 LiDAR bands, and the LiDAR of the full scene).
"""

import json
import logging
import os

import numpy as np
import pytest
import torch
from osgeo import gdal, osr
from torch import nn

from engine import multimodal, pipeline
from engine.cli import AUX_RESAMPLING, MULTIMODAL_EPOCHS, MULTIMODAL_NAMES, main
from engine.training.crops import average_logits, crop_starts, crops_covering, plan_crops, predict_at
from engine.data.auxiliary import RESAMPLING, open_aux, read_aux
from engine.data.normalize import Stretch, apply_stretch
from engine.data.raster import open_raster, read_raster
from engine.modelfile import load_model, save_model
from engine.models.clip import ClipVisionConfig, ClipVisionEncoder
from engine.models.m3amba import M3amba
from engine.multimodal import CLIP_MISSING, predict_multimodal_raster
from engine.pipeline import classify_file, train_from_files
from engine.inference.predict import PredictionCancelled
from engine.training.train import TrainingCancelled

gdal.UseExceptions()

UTM = 32633
ORIGIN = (364000.0, 5810000.0)    # top-left of the generated HSI, UTM 33N
PIXEL = 10.0
ROWS, COLS = 36, 40
TINY = dict(dim=8, depth=1, d_state=4)
TINY_CLIP = dict(width=64, layers=2, heads=1, patch_size=32, image_size=64, output_dim=32)


def srs_wkt(epsg):
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    return srs.ExportToWkt()


def write_tif(path, data, geotransform, epsg=UTM, nodata=None):
    """Float32 GeoTIFF of data (bands, rows, cols)."""
    data = np.asarray(data, np.float32).reshape((-1,) + np.shape(data)[-2:])
    ds = gdal.GetDriverByName("GTiff").Create(str(path), data.shape[2], data.shape[1], data.shape[0], gdal.GDT_Float32)
    ds.SetGeoTransform(geotransform)
    if epsg:
        ds.SetProjection(srs_wkt(epsg))
    for k, band in enumerate(data):
        ds.GetRasterBand(k + 1).WriteArray(band)
        if nodata is not None:
            ds.GetRasterBand(k + 1).SetNoDataValue(nodata)
    ds = None
    return str(path)


def hsi_grid(tmp_path, bands=3, epsg=UTM):
    """A generated HSI on ROWS x COLS pixels of 10 m; returns its RasterInfo."""
    rng = np.random.default_rng(0)
    path = write_tif(tmp_path / "hsi.tif", rng.random((bands, ROWS, COLS)),
                     (ORIGIN[0], PIXEL, 0, ORIGIN[1], 0, -PIXEL), epsg)
    return open_raster(path)


def ramp(x, y):
    """A plane in map coordinates: bilinear resampling reproduces it exactly."""
    return 0.01 * (x - ORIGIN[0]) + 0.02 * (ORIGIN[1] - y)


def centres(info):
    cols, rows = np.meshgrid(np.arange(info.cols) + 0.5, np.arange(info.rows) + 0.5)
    gt = info.geotransform
    return gt[0] + cols * gt[1], gt[3] + rows * gt[5]


# ---- auxiliary rasters on the HSI grid ---------------------------------------------------------------

def test_aux_of_the_whole_scene_is_cut_to_the_hsi_crop_exactly(shared_data):
    folder = os.path.join(shared_data, "muufl_crop")
    info = open_raster(os.path.join(folder, "muufl_hsi.tif"))
    data, valid = read_aux(open_aux(os.path.join(folder, "muufl_full_lidar.tif"), info), info)
    expected = gdal.Open(os.path.join(folder, "muufl_lidar.tif")).ReadAsArray()
    assert valid.all()
    np.testing.assert_array_equal(data, expected)


def test_coarser_aux_is_resampled_bilinearly_and_the_method_is_logged(tmp_path, caplog):
    info = hsi_grid(tmp_path)
    # 25 m pixels over a larger area than the HSI: another resolution and another extent
    gt = (ORIGIN[0] - 100, 25.0, 0, ORIGIN[1] + 100, 0, -25.0)
    cols, rows = np.meshgrid(np.arange(30) + 0.5, np.arange(30) + 0.5)
    path = write_tif(tmp_path / "dsm.tif", ramp(gt[0] + 25 * cols, gt[3] - 25 * rows), gt)
    with caplog.at_level(logging.INFO, logger="engine.data.auxiliary"):
        aux = open_aux(path, info)
    assert "resampled onto the hyperspectral grid (40 x 36 px of 10 units) with bilinear" in caplog.text
    data, valid = read_aux(aux, info)
    assert valid.all() and data.shape == (1, ROWS, COLS)
    np.testing.assert_allclose(data[0], ramp(*centres(info)), rtol=0, atol=1e-4)


def test_finer_aux_with_average_resampling_is_the_block_mean_and_bilinear_warns(tmp_path, caplog):
    info = hsi_grid(tmp_path)
    fine = np.random.default_rng(1).random((ROWS * 5, COLS * 5))
    path = write_tif(tmp_path / "fine.tif", fine, (ORIGIN[0], 2.0, 0, ORIGIN[1], 0, -2.0))
    data, valid = read_aux(open_aux(path, info, "average"), info)
    expected = fine.reshape(ROWS, 5, COLS, 5).mean(axis=(1, 3))
    assert valid.all()
    np.testing.assert_allclose(data[0], expected, atol=1e-6)
    with caplog.at_level(logging.WARNING, logger="engine.data.auxiliary"):
        open_aux(path, info)
    assert "5 times finer" in caplog.text and "'average'" in caplog.text


def test_aux_in_another_crs_is_reprojected(tmp_path, caplog):
    info = hsi_grid(tmp_path)
    # the same plane, sampled on a WGS84 grid that covers the HSI with a margin
    utm = osr.SpatialReference(srs_wkt(UTM))
    geo = osr.SpatialReference(srs_wkt(4326))
    for s in (utm, geo):
        s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    to_geo, to_utm = osr.CoordinateTransformation(utm, geo), osr.CoordinateTransformation(geo, utm)
    (lon0, lat0, _), (lon1, lat1, _) = (to_geo.TransformPoint(ORIGIN[0] - 200, ORIGIN[1] + 200),
                                        to_geo.TransformPoint(ORIGIN[0] + 600, ORIGIN[1] - 560))
    n = 120
    step_x, step_y = (lon1 - lon0) / n, (lat0 - lat1) / n
    lons, lats = np.meshgrid(lon0 + (np.arange(n) + 0.5) * step_x, lat0 - (np.arange(n) + 0.5) * step_y)
    xy = np.array(to_utm.TransformPoints(np.c_[lons.ravel(), lats.ravel()].tolist()))
    values = ramp(xy[:, 0], xy[:, 1]).reshape(n, n)
    path = write_tif(tmp_path / "geo.tif", values, (lon0, step_x, 0, lat0, 0, -step_y), epsg=4326)
    with caplog.at_level(logging.INFO, logger="engine.data.auxiliary"):
        aux = open_aux(path, info)
    assert aux.reprojected and aux.crs == "EPSG:4326"
    assert "reprojected from EPSG:4326 to the hyperspectral raster's EPSG:32633" in caplog.text
    data, valid = read_aux(aux, info)
    assert valid.all()
    # the plane is not a plane in lon/lat, but over 7 m source pixels the difference is far below 0.05
    np.testing.assert_allclose(data[0], ramp(*centres(info)), atol=0.05)


def test_aux_nodata_is_masked_and_never_blended_into_its_neighbours(tmp_path):
    info = hsi_grid(tmp_path)
    values = np.full((ROWS // 2, COLS // 2), 7.0)
    values[4:8, 5:9] = -9999
    path = write_tif(tmp_path / "holes.tif", values, (ORIGIN[0], 20.0, 0, ORIGIN[1], 0, -20.0), nodata=-9999)
    data, valid = read_aux(open_aux(path, info), info)
    hole = np.zeros((ROWS, COLS), bool)
    hole[8:16, 10:18] = True                               # the nodata source pixels on the 10 m grid
    assert not valid[hole].any()
    assert np.all(data[0][valid] == 7.0) and np.all(data[0][~valid] == 0)


def test_partial_overlap_masks_the_rest_and_warns(tmp_path, caplog):
    info = hsi_grid(tmp_path)
    path = write_tif(tmp_path / "half.tif", np.ones((ROWS, COLS // 2)), (ORIGIN[0], PIXEL, 0, ORIGIN[1], 0, -PIXEL))
    with caplog.at_level(logging.WARNING, logger="engine.data.auxiliary"):
        aux = open_aux(path, info)
    assert "covers 50.0 % of the hyperspectral raster's extent" in caplog.text
    _, valid = read_aux(aux, info)
    assert valid[:, :COLS // 2].all() and not valid[:, COLS // 2:].any()


def test_aux_that_does_not_overlap_names_both_extents_and_the_fix(tmp_path):
    info = hsi_grid(tmp_path)
    path = write_tif(tmp_path / "far.tif", np.ones((10, 10)), (ORIGIN[0] + 5000, PIXEL, 0, ORIGIN[1], 0, -PIXEL))
    with pytest.raises(ValueError) as error:
        open_aux(path, info)
    text = str(error.value)
    assert "does not overlap the hyperspectral raster" in text
    assert "auxiliary:     x 369000 … 369100, y 5.8099e+06 … 5.81e+06 (EPSG:32633)" in text
    assert "hyperspectral: x 364000 … 364400" in text and "Give an auxiliary raster of the same area" in text


def test_aux_without_crs_beside_an_hsi_with_one_is_used_as_is_with_a_warning(tmp_path, caplog):
    info = hsi_grid(tmp_path)
    path = write_tif(tmp_path / "nocrs.tif", np.ones((ROWS, COLS)), info.geotransform, epsg=None)
    with caplog.at_level(logging.WARNING, logger="engine.data.auxiliary"):
        aux = open_aux(path, info)
    assert "has no CRS and the hyperspectral raster EPSG:32633" in caplog.text and not aux.reprojected
    assert read_aux(aux, info)[1].all()


def test_a_window_reads_exactly_that_part_of_the_whole_grid(tmp_path):
    info = hsi_grid(tmp_path)
    path = write_tif(tmp_path / "noise.tif", np.random.default_rng(2).random((2, 11, 13)),
                     (ORIGIN[0] + 3, 33.0, 0, ORIGIN[1] - 4, 0, -33.0))
    aux = open_aux(path, info, "cubic")
    whole, whole_valid = read_aux(aux, info)
    part, part_valid = read_aux(aux, info, 5, 7, 20, 21)
    np.testing.assert_array_equal(part, whole[:, 5:25, 7:28])
    np.testing.assert_array_equal(part_valid, whole_valid[5:25, 7:28])


def test_unknown_resampling_method_lists_the_valid_ones(tmp_path):
    info = hsi_grid(tmp_path)
    with pytest.raises(ValueError, match="unknown resampling method 'lanczos'.*bilinear, cubic, nearest, average"):
        open_aux(info.path, info, "lanczos")


def test_cli_constants_match_the_engine():
    from engine.models.registry import MULTIMODAL_NAMES as registry_names

    assert tuple(AUX_RESAMPLING) == tuple(RESAMPLING) and tuple(MULTIMODAL_NAMES) == tuple(registry_names)
    assert MULTIMODAL_EPOCHS == multimodal.EPOCHS


# ---- crops --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("length", [1, 5, 31, 32, 33, 90, 100])
@pytest.mark.parametrize("stride", [8, 16, 32])
def test_crop_grid_covers_every_pixel_with_centres_on_the_stride(length, stride):
    starts = crop_starts(length, 32, stride)
    covered = np.zeros(length, int)
    for s in starts:
        covered[max(s, 0):max(min(s + 32, length), 0)] += 1
    assert covered.min() >= 1
    assert [s + 16 for s in starts[: len(range(0, length, stride))]] == list(range(0, length, stride))
    if stride == 8:                                      # §5.5: only centres inside the raster
        assert starts[-1] + 16 < length


def test_crop_stride_beyond_the_crop_would_leave_gaps_and_is_refused():
    with pytest.raises(ValueError, match="stride must lie in 1..32"):
        crop_starts(100, 32, 33)


def test_only_crops_holding_a_labelled_pixel_are_kept():
    rng = np.random.default_rng(3)
    mask = np.zeros((70, 50), bool)
    mask[rng.integers(0, 70, 6), rng.integers(0, 50, 6)] = True
    grid = plan_crops(70, 50, 32, 8)
    kept = crops_covering(grid, mask, 32)
    brute = [(r, c) for r, c in grid if mask[max(r, 0):r + 32, max(c, 0):c + 32].any()]
    assert kept == brute and 0 < len(kept) < len(grid)
    # a window elsewhere in the raster: the same crops, found from the window's own mask
    assert crops_covering(grid, mask[20:, 10:], 32, origin=(20, 10)) == [
        (r, c) for r, c in grid if mask[max(r, 20):r + 32, max(c, 10):c + 32].any()]


class PositionDummy(nn.Module):
    """Logits known in closed form that depend on the position inside the crop, so averaging matters:
    M_f[k, i, j] = x_hsi[k, i, j]·(1 + i) + x_aux[0, i, j]·j; M₁ and M₂ are not used by prediction."""

    crop = 8

    def forward(self, x_hsi, x_aux):
        i = torch.arange(self.crop, dtype=x_hsi.dtype).view(1, 1, -1, 1)
        j = torch.arange(self.crop, dtype=x_hsi.dtype).view(1, 1, 1, -1)
        fused = x_hsi * (1 + i) + x_aux[:, :1] * j
        return torch.zeros_like(fused), fused, torch.zeros_like(fused)


def direct_average(hsi, aux, crop, stride):
    """For every pixel, the mean over every crop of the grid that covers it of the dummy's logit there,
    and the number of those crops."""
    rows, cols = hsi.shape[1:]
    total = np.zeros(hsi.shape, np.float64)
    count = np.zeros((rows, cols))
    for r0 in crop_starts(rows, crop, stride):
        for c0 in crop_starts(cols, crop, stride):
            for r in range(max(r0, 0), min(r0 + crop, rows)):
                for c in range(max(c0, 0), min(c0 + crop, cols)):
                    total[:, r, c] += hsi[:, r, c] * (1 + r - r0) + aux[0, r, c] * (c - c0)
                    count[r, c] += 1
    return total / count, count


def test_averaged_logits_equal_the_direct_mean_over_covering_crops():
    rng = np.random.default_rng(4)
    hsi, aux = rng.random((3, 21, 19)).astype(np.float32), rng.random((1, 21, 19)).astype(np.float32)
    with torch.no_grad():
        logits, count = average_logits(PositionDummy(), hsi, aux, plan_crops(21, 19, 8, 4), 8, batch_size=5)
    expected, expected_count = direct_average(hsi, aux, 8, 4)
    np.testing.assert_allclose(logits, expected, rtol=1e-5)
    np.testing.assert_array_equal(count, expected_count)
    assert count[:16, :15].min() == 4                      # stride = crop/2: 2 x 2 crops (fewer at the far edges)


def dummy_metadata(aux_bands=1, crop=8):
    return {
        "format_version": 1,
        "model": {"name": "m3amba", "config": {"hsi_bands": 3, "aux_bands": aux_bands, "n_classes": 3}},
        "bands": {"indices": [1, 2, 3], "names": ["b1", "b2", "b3"], "wavelengths": None, "nodata": [None] * 3},
        "normalisation": Stretch(np.zeros(3), np.ones(3)).to_dict(),
        "classes": {"ids": [1, 2, 5], "names": ["a", "b", "c"], "colors": [[255, 0, 0], [0, 255, 0], [0, 0, 255]]},
        "modalities": [{"name": "hsi.tif", "role": "hsi", "bands": 3,
                        "normalisation": Stretch(np.zeros(3), np.ones(3)).to_dict()},
                       {"name": "dsm.tif", "role": "aux", "bands": aux_bands, "resampling": "bilinear",
                        "normalisation": Stretch(np.zeros(aux_bands), np.ones(aux_bands)).to_dict()}],
        "provenance": {},
    }


def test_raster_prediction_in_blocks_equals_the_whole_scene_average(tmp_path):
    """Blocks of 16 px with their crop context give exactly the one-pass average (stretch quantisation
    included), softmaxed; nodata in the aux raster is nodata in the outputs."""
    rng = np.random.default_rng(5)
    hsi, aux = rng.random((3, 37, 29)), rng.random((1, 37, 29))
    aux[0, :3, :4] = -1
    gt = (ORIGIN[0], PIXEL, 0, ORIGIN[1], 0, -PIXEL)
    raster = write_tif(tmp_path / "hsi.tif", hsi, gt)
    dsm = write_tif(tmp_path / "dsm.tif", aux, gt, nodata=-1)
    written = predict_multimodal_raster(PositionDummy(), dummy_metadata(), raster, [dsm], str(tmp_path / "c.tif"),
                                        out_probabilities=str(tmp_path / "p.tif"), stride=4, block=16)
    assert set(written) == {"classes", "probabilities"}
    # the inputs as the predictor sees them: read, masked where either modality is nodata, stretched
    info = open_raster(raster)
    hsi, hsi_valid = read_raster(info)
    aux, aux_valid = read_aux(open_aux(dsm, info), info)
    valid = hsi_valid & aux_valid
    assert valid.sum() == 37 * 29 - 12 and not valid[:3, :4].any()
    unit = Stretch(np.zeros(1), np.ones(1))
    hsi = apply_stretch(hsi, valid, Stretch(np.zeros(3), np.ones(3)))
    aux = apply_stretch(aux, valid, unit)
    expected = torch.softmax(torch.from_numpy(direct_average(hsi, aux, 8, 4)[0]), dim=0).numpy()
    probabilities = gdal.Open(str(tmp_path / "p.tif")).ReadAsArray()
    np.testing.assert_allclose(probabilities[:, valid], expected[:, valid], atol=2e-6)
    assert np.all(probabilities[:, ~valid] == -1)
    classes = gdal.Open(str(tmp_path / "c.tif")).ReadAsArray()
    np.testing.assert_array_equal(classes[valid], np.array([1, 2, 5])[expected.argmax(0)][valid])
    assert np.all(classes[~valid] == 0)


def test_raster_prediction_cancelled_between_batches_leaves_no_file(tmp_path):
    gt = (ORIGIN[0], PIXEL, 0, ORIGIN[1], 0, -PIXEL)
    raster = write_tif(tmp_path / "hsi.tif", np.ones((3, 20, 20)), gt)
    dsm = write_tif(tmp_path / "dsm.tif", np.ones((1, 20, 20)), gt)
    polls = []
    (tmp_path / "out").mkdir()
    with pytest.raises(PredictionCancelled):
        predict_multimodal_raster(PositionDummy(), dummy_metadata(), raster, [dsm], str(tmp_path / "out" / "c.tif"),
                                  stride=4, batch_size=2, cancelled=lambda: polls.append(1) or len(polls) > 3)
    assert len(polls) == 4 and os.listdir(tmp_path / "out") == []


# ---- model file -----------------------------------------------------------------------------------

def tiny_m3amba(use_clip=False, seed=0):
    torch.manual_seed(seed)
    return M3amba(3, 1, 3, **TINY, use_clip=use_clip, clip=TINY_CLIP if use_clip else None).eval()


def write_clip(path, seed=0):
    torch.manual_seed(seed)
    encoder = ClipVisionEncoder(ClipVisionConfig(**TINY_CLIP))
    torch.save({f"visual.{k}": v for k, v in encoder.state_dict().items()}, str(path))
    return str(path)


@pytest.mark.parametrize("use_clip", [False, True])
def test_m3amba_model_file_round_trips_weights_clip_hash_and_modalities(tmp_path, use_clip):
    model = tiny_m3amba(use_clip)
    if use_clip:
        model.load_clip_weights(write_clip(tmp_path / "clip.pt"))
    path = str(tmp_path / "m.pt")
    metadata = dummy_metadata()
    save_model(path, model, metadata)
    loaded, stored = load_model(path)
    assert isinstance(loaded, M3amba) and stored["modalities"] == json.loads(json.dumps(metadata["modalities"]))
    assert loaded.config == model.config and loaded.clip_sha256 == model.clip_sha256
    assert (model.clip_sha256 is not None) == use_clip
    x, a = torch.rand(2, 3, 32, 32), torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        for got, want in zip(loaded(x, a), model(x, a)):
            torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("change, message", [
    (lambda m: m.pop("modalities"), "must list the hyperspectral raster and at least one auxiliary"),
    (lambda m: m["modalities"][1].update(bands=2, normalisation=Stretch(np.zeros(2), np.ones(2)).to_dict()),
     "auxiliary bands add up to 2 but the model has 1"),
    (lambda m: m["modalities"].reverse(), "one 'hsi' entry followed by 'aux' entries"),
    (lambda m: m["modalities"][1]["normalisation"].update(low=[0.0, 1.0]), "has 2 entries but the model has 1"),
])
def test_model_file_with_inconsistent_modalities_is_refused(tmp_path, change, message):
    metadata = dummy_metadata()
    change(metadata)
    with pytest.raises(ValueError, match=message):
        save_model(str(tmp_path / "m.pt"), tiny_m3amba(), metadata)


def test_m3amba_file_in_the_single_modal_classify_path_asks_for_the_aux_rasters(tmp_path):
    path = str(tmp_path / "m.pt")
    save_model(path, tiny_m3amba(), dummy_metadata())
    raster = write_tif(tmp_path / "hsi.tif", np.ones((3, 8, 8)), (0, 1, 0, 0, 0, -1))
    with pytest.raises(ValueError, match=r"multi-modal \(m3amba: the hyperspectral raster plus 1 auxiliary raster\(s\), "
                                         r"trained with dsm.tif\); give its auxiliary rasters .*--aux"):
        classify_file(path, raster, str(tmp_path / "c.tif"))


# ---- the file jobs on a small generated scene --------------------------------------------------------

@pytest.fixture
def scene(tmp_path):
    """3-band HSI (10 m) whose first band separates two classes, a DSM (20 m, larger extent) that separates
    a third, and a label raster on the HSI grid."""
    rng = np.random.default_rng(6)
    rows, cols = np.mgrid[:ROWS, :COLS]
    truth = np.where(cols < COLS // 2, 1, 2) + 2 * ((rows // 6) % 2 == 1) * (cols >= COLS // 2)
    hsi = rng.random((3, ROWS, COLS)) * 0.2
    hsi[0] += (truth == 2) * 0.8 + (truth == 4) * 0.8
    gt = (ORIGIN[0], PIXEL, 0, ORIGIN[1], 0, -PIXEL)
    dsm = 10.0 * ((np.arange(ROWS // 2 + 4) - 2) // 3 % 2 == 1)[:, None] * np.ones(COLS // 2 + 4)  # the stripes
    labels = np.where(rng.random((ROWS, COLS)) < 0.5, truth, 0)
    folder = tmp_path / "scene"
    folder.mkdir()
    paths = {"hsi": write_tif(folder / "hsi.tif", hsi, gt),
             "dsm": write_tif(folder / "dsm.tif", dsm, (ORIGIN[0] - 40, 20.0, 0, ORIGIN[1] + 40, 0, -20.0)),
             "labels": str(folder / "labels.tif"), "out": tmp_path}
    ds = gdal.GetDriverByName("GTiff").Create(paths["labels"], COLS, ROWS, 1, gdal.GDT_Byte)
    ds.SetGeoTransform(gt)
    ds.SetProjection(srs_wkt(UTM))
    ds.GetRasterBand(1).WriteArray(labels.astype(np.uint8))
    ds = None
    return paths


def train_tiny(scene, **options):
    options = {"use_clip": False, "epochs": 1, "device": "cpu", "threads": 1, "overrides": TINY, **options}
    return train_from_files(scene["hsi"], str(scene["out"] / "m.pt"), labels=scene["labels"], model="m3amba",
                            aux=[scene["dsm"]], **options)


def test_training_with_clip_weights_records_the_clip_file_and_classifies(scene):
    clip = write_clip(scene["out"] / "clip.pt")
    _, result = train_tiny(scene, use_clip=True, clip_weights=clip)
    net, stored = load_model(str(scene["out"] / "m.pt"))
    assert stored["clip"]["sha256"] == net.clip_sha256 and stored["clip"]["path"] == os.path.abspath(clip)
    assert stored["model"]["config"]["clip"] == TINY_CLIP and stored["model"]["config"]["use_clip"] is True
    roles = [(m["role"], m["bands"], m["resampling"]) for m in stored["modalities"]]
    assert roles == [("hsi", 3, None), ("aux", 1, "bilinear")] and stored["modalities"][1]["crs"] == "EPSG:32633"
    assert len(result.history) == 1 and result.history[0]["steps"] >= 1
    written = classify_file(str(scene["out"] / "m.pt"), scene["hsi"], str(scene["out"] / "c.tif"),
                            confidence=str(scene["out"] / "p.tif"), aux=[scene["dsm"]], device="cpu", threads=1)
    classes = gdal.Open(written["classes"]).ReadAsArray()
    assert classes.shape == (ROWS, COLS) and set(np.unique(classes)) <= {1, 2, 3, 4}


def test_training_without_clip_weights_says_where_to_get_them_before_reading_data(scene, monkeypatch):
    monkeypatch.setattr(pipeline, "open_raster", lambda *a, **k: pytest.fail("data read"))
    with pytest.raises(ValueError) as error:
        train_tiny(scene, use_clip=True)
    assert str(error.value) == CLIP_MISSING
    for part in ("ViT-B-32.pt", "openaipublic", "--clip-weights FILE", "--no-clip", "cannot download"):
        assert part in CLIP_MISSING
    assert not os.path.exists(scene["out"] / "m.pt")


def test_a_clip_file_that_is_not_a_vit_image_encoder_is_refused(scene):
    other = str(scene["out"] / "resnet.pt")
    torch.save({"visual.layer1.0.conv1.weight": torch.zeros(4, 3, 3, 3)}, other)
    with pytest.raises(ValueError, match="resnet.pt is not a CLIP ViT image encoder: missing visual.conv1.weight"):
        train_tiny(scene, use_clip=True, clip_weights=other)
    with pytest.raises(ValueError, match="CLIP weights were given together with the ablation without CLIP"):
        train_tiny(scene, use_clip=False, clip_weights=other)


def test_classify_with_the_wrong_aux_rasters_names_what_the_model_needs(scene):
    train_tiny(scene)
    model = str(scene["out"] / "m.pt")
    with pytest.raises(ValueError, match=r"trained with 1 auxiliary raster\(s\): dsm.tif \(1 band\); 2 given"):
        classify_file(model, scene["hsi"], str(scene["out"] / "c.tif"), aux=[scene["dsm"], scene["dsm"]])
    two_bands = write_tif(scene["out"] / "two.tif", np.ones((2, 5, 5)), (ORIGIN[0], 100.0, 0, ORIGIN[1], 0, -100.0))
    with pytest.raises(ValueError, match="has 2 band\\(s\\) but the model's auxiliary raster 1 \\(dsm.tif\\) had 1"):
        classify_file(model, scene["hsi"], str(scene["out"] / "c.tif"), aux=[two_bands])
    assert not os.path.exists(scene["out"] / "c.tif")


@pytest.mark.parametrize("options, message", [
    (dict(aux_resampling=["bilinear", "nearest"]), "2 resampling methods for 1 auxiliary rasters"),
    (dict(overrides={"use_clip": True}), "use_clip cannot be set as model options; use --clip-weights FILE or --no-clip"),
])
def test_training_options_that_contradict_the_inputs_are_refused(scene, options, message):
    with pytest.raises(ValueError, match=message):
        train_tiny(scene, **options)


def test_a_single_modal_model_refuses_auxiliary_rasters(tmp_path):
    metadata = dummy_metadata()
    del metadata["modalities"]
    with pytest.raises(ValueError, match="reads the hyperspectral raster only; classify without auxiliary rasters"):
        predict_multimodal_raster(PositionDummy(), metadata, "hsi.tif", ["dsm.tif"], str(tmp_path / "c.tif"))


def test_training_cancelled_between_batches_writes_no_model(scene):
    polls = []
    with pytest.raises(TrainingCancelled):
        train_tiny(scene, cancelled=lambda: polls.append(1) or len(polls) > 2)
    assert len(polls) == 3 and not os.path.exists(scene["out"] / "m.pt")


# ---- end to end through the CLI on the MUUFL crop ----------------------------------------------------

def test_cli_train_classify_evaluate_on_muufl_without_clip(shared_data, tmp_path, capsys):
    folder = os.path.join(shared_data, "muufl_crop")
    hsi, labels = os.path.join(folder, "muufl_hsi.tif"), os.path.join(folder, "muufl_labels.tif")
    model, report = str(tmp_path / "m3amba.pt"), str(tmp_path / "report.json")
    assert main(["-q", "train", "--model", "m3amba", "--raster", hsi, "--aux", os.path.join(folder, "muufl_lidar.tif"),
                 "--no-clip", "--labels", labels, "--epochs", "1", "--set", "dim=8", "--set", "depth=1",
                 "--set", "d_state=4", "--device", "cpu", "--threads", "1", "--out", model, "--report", report]) == 0
    metadata = json.load(open(report))["metadata"]
    assert [m["bands"] for m in metadata["modalities"]] == [64, 2] and metadata["clip"] is None
    assert metadata["provenance"]["epochs"] == 1 and metadata["model"]["config"]["use_clip"] is False
    # the LiDAR of the whole scene, cut to the crop on the fly, classifies exactly like the crop's own
    outputs = {}
    for name, lidar in (("crop", "muufl_lidar.tif"), ("full", "muufl_full_lidar.tif")):
        outputs[name] = str(tmp_path / f"classes_{name}.tif")
        assert main(["-q", "classify", "--model", model, "--raster", hsi, "--aux", os.path.join(folder, lidar),
                     "--out", outputs[name], "--device", "cpu", "--threads", "1"]) == 0
    np.testing.assert_array_equal(gdal.Open(outputs["crop"]).ReadAsArray(), gdal.Open(outputs["full"]).ReadAsArray())
    assert main(["-q", "evaluate", "--pred", outputs["crop"], "--labels", labels, "--json",
                 str(tmp_path / "acc.json")]) == 0
    accuracy = json.load(open(tmp_path / "acc.json"))
    assert accuracy["pixels"] == 6970                      # every labelled pixel counted exactly once
    capsys.readouterr()
    assert main(["-q", "classify", "--model", model, "--raster", hsi, "--out", str(tmp_path / "x.tif")]) == 2
    assert "give its auxiliary rasters in the training order (CLI: classify --aux FILE" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--model", "m3amba", "--no-clip"], "--model m3amba needs at least one --aux raster"),
    (["--model", "cssmamba", "--aux", "x.tif"], "--aux, --aux-resampling, --clip-weights and --no-clip are for"),
    (["--model", "mambahsi", "--no-clip"], "mambahsi reads the hyperspectral raster only"),
    (["--model", "m3amba", "--aux", "a.tif", "--label-tile", "128"], "the label windows of m3amba follow its crop"),
])
def test_cli_refuses_multimodal_options_with_the_wrong_model(tmp_path, capsys, argv, message):
    assert main(["train", "--raster", "r.tif", "--labels", "l.tif", "--out", str(tmp_path / "m.pt"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_cli_classify_refuses_clusters_and_tiles_for_multimodal_models(tmp_path, capsys):
    assert main(["classify", "--model", "m.pt", "--raster", "r.tif", "--aux", "a.tif", "--out", "c.tif",
                 "--clusters", "k.tif", "--tile", "64"]) == 2
    assert "--clusters, --tile do not apply to multi-modal models" in capsys.readouterr().err


def test_the_one_training_and_classification_job_takes_the_auxiliary_rasters(scene):
    """pipeline.train_from_files / classify_file serve M3amba when given aux, with its own defaults (100
    epochs at lr 1e-3 unless set), and refuse combinations that cannot work, before any work."""
    metadata, _ = train_from_files(scene["hsi"], str(scene["out"] / "one.pt"), labels=scene["labels"],
                                   model="m3amba", aux=[scene["dsm"]], use_clip=False, epochs=1, device="cpu",
                                   threads=1, overrides=TINY)
    assert metadata["model"]["name"] == "m3amba" and [m["role"] for m in metadata["modalities"]] == ["hsi", "aux"]
    assert metadata["provenance"]["learning_rate"] == pytest.approx(1e-3)
    written = classify_file(str(scene["out"] / "one.pt"), scene["hsi"], str(scene["out"] / "one.tif"),
                            aux=[scene["dsm"]], device="cpu", threads=1)
    assert gdal.Open(written["classes"]).ReadAsArray().shape == (ROWS, COLS)
    out = str(scene["out"] / "no.pt")
    for kwargs, message in (({"model": "m3amba"}, "give at least one"),
                            ({"model": "cssmamba", "aux": [scene["dsm"]]}, "hyperspectral raster only"),
                            ({"model": "m3amba", "aux": [scene["dsm"]], "windows_per_step": 2},
                             "windows per step: for the whole-window models")):
        with pytest.raises(ValueError, match=message):
            train_from_files(scene["hsi"], out, labels=scene["labels"], use_clip=False, **kwargs)
    with pytest.raises(ValueError, match="no cluster map"):
        classify_file(str(scene["out"] / "one.pt"), scene["hsi"], str(scene["out"] / "c.tif"), aux=[scene["dsm"]],
                      clusters=str(scene["out"] / "k.tif"))
    assert not os.path.exists(out)


def test_the_one_trainer_runs_m3amba_s_crop_recipe_step_for_step():
    """train_patches on a crop model is MODELS.md §5.5-5.6 written out: every crop of the stride-8 grid that
    holds a training pixel, shuffled by the seed's generator into minibatches of 16 each epoch, AdamW without
    decay on vectors and the SSM's A_log/D, a cosine schedule over all steps and the loss of the three heads (drop path on, so the
    global RNG must be consumed in the same order too)."""
    from engine.training.crops import BATCH_SIZE, TRAIN_STRIDE, cut, pad
    from engine.models.m3amba import WEIGHT_DECAY, m3amba_loss
    from engine.models.registry import build_multimodal_model
    from engine.training.sampler import Patch, Window
    from engine.training.train import TrainConfig, seed_everything, train_patches

    rng = np.random.default_rng(3)
    hsi, aux = rng.random((3, 40, 36)).astype(np.float32), rng.random((1, 40, 36)).astype(np.float32)
    train = np.where(rng.random((40, 36)) < 0.04, rng.integers(0, 3, (40, 36)), -1)
    none = np.full((40, 36), -1)

    def build() -> nn.Module:
        seed_everything(0)
        return build_multimodal_model("m3amba", 3, 1, 3, use_clip=False, drop_path=0.2, **TINY)

    net = build()
    result = train_patches(net, [Patch(Window(0, 40, 0, 36), hsi, hsi, np.ones((40, 36), bool), train, none, aux=aux)],
                           TrainConfig(epochs=2, lr=1e-3, device="cpu", seed=0, threads=1))

    reference = build().train()
    seed_everything(0)
    crops = crops_covering(plan_crops(40, 36, reference.crop, TRAIN_STRIDE), train >= 0, reference.crop)
    x_hsi, offset = pad(hsi, crops, reference.crop)
    x_aux, _ = pad(aux, crops, reference.crop)
    y, _ = pad(train[None], crops, reference.crop, value=-1)
    params = [p for p in reference.parameters() if p.requires_grad]
    vector = [p.ndim < 2 or getattr(p, "_no_weight_decay", False) for p in params]   # biases, norms, A_log, D
    optimizer = torch.optim.AdamW([{"params": [p for p, v in zip(params, vector) if not v], "weight_decay": WEIGHT_DECAY},
                                   {"params": [p for p, v in zip(params, vector) if v], "weight_decay": 0.0}], lr=1e-3)
    steps = -(-len(crops) // BATCH_SIZE)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=2 * steps)
    order = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():
        torch.set_num_threads(1)
        for _ in range(2):
            permutation = torch.randperm(len(crops), generator=order).tolist()
            for i in range(steps):
                batch = [crops[k] for k in permutation[i * BATCH_SIZE:(i + 1) * BATCH_SIZE]]
                loss = m3amba_loss(reference(cut(x_hsi, batch, reference.crop, offset),
                                             cut(x_aux, batch, reference.crop, offset)),
                                   cut(y, batch, reference.crop, offset)[:, 0])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
    assert result.best_epoch == 2 and [h["steps"] for h in result.history] == [steps, steps]
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(net.state_dict()[name], value, rtol=0, atol=0, msg=name)


@pytest.fixture
def wide_scene(tmp_path):
    """A 200 x 220 px scene (3 HSI bands, a DSM on the same grid) with small labelled blobs far apart, so that
    M3amba's label windows are several windows of the scene, not the scene."""
    rng = np.random.default_rng(8)
    rows, cols = 200, 220
    hsi = rng.random((3, rows, cols))
    dsm = rng.random((1, rows, cols)) * 10
    labels = np.zeros((rows, cols), np.uint8)
    for k, (r, c) in enumerate([(20, 20), (30, 180), (100, 110), (170, 40), (180, 200), (60, 60)]):
        labels[r:r + 6, c:c + 6] = k % 3 + 1
    gt = (ORIGIN[0], PIXEL, 0, ORIGIN[1], 0, -PIXEL)
    folder = tmp_path / "wide"
    folder.mkdir()
    ds = gdal.GetDriverByName("GTiff").Create(str(folder / "labels.tif"), cols, rows, 1, gdal.GDT_Byte)
    ds.SetGeoTransform(gt)
    ds.SetProjection(srs_wkt(UTM))
    ds.GetRasterBand(1).WriteArray(labels)
    ds = None
    return {"hsi": write_tif(folder / "hsi.tif", hsi, gt), "dsm": write_tif(folder / "dsm.tif", dsm, gt),
            "labels": str(folder / "labels.tif"), "out": tmp_path}


def test_m3amba_label_windows_see_the_crops_classification_sees(wide_scene):
    """M3amba on forced label windows (a band subset too): each window carries a crop of context, so the
    averaged crops predicted inside a window (validation, the model file's test metrics) equal the class map
    of the whole raster at the same pixels, and the training crops are the whole scene's."""
    from engine.training.crops import CropBatches

    scene = wide_scene
    model = str(scene["out"] / "w.pt")
    metadata, result = train_from_files(scene["hsi"], model, labels=scene["labels"], model="m3amba",
                                        aux=[scene["dsm"]], use_clip=False, epochs=1, device="cpu", threads=1,
                                        overrides=TINY, sampling="windows", bands=[1, 3])
    windows = metadata["provenance"]["sampling"]["windows"]
    assert metadata["provenance"]["sampling"]["mode"] == "label windows" and 1 < len(windows)
    assert "tiling" not in metadata and metadata["bands"]["indices"] == [1, 3] and result.estimated_epoch_seconds > 0
    written = classify_file(model, scene["hsi"], str(scene["out"] / "w.tif"), aux=[scene["dsm"]], device="cpu",
                            threads=1)
    class_map = gdal.Open(written["classes"]).ReadAsArray()
    net, _ = load_model(model)
    ids = np.asarray(metadata["classes"]["ids"])
    windowed = pipeline._prepare(scene["hsi"], scene["labels"], None, None, None, 0, pipeline.SplitOptions(), [1, 3],
                                 "windows", None, [scene["dsm"]], ["bilinear"], crop=net.crop)
    whole = pipeline._prepare(scene["hsi"], scene["labels"], None, None, None, 0, pipeline.SplitOptions(), [1, 3],
                              "whole", None, [scene["dsm"]], ["bilinear"], crop=net.crop)
    for patch in windowed.patches:
        owned = (patch.train >= 0) | (patch.validation >= 0) | (patch.test >= 0)
        index = predict_at(net, patch.image, patch.aux, owned, origin=(patch.window.row0, patch.window.col0),
                           scene=patch.scene_shape)
        np.testing.assert_array_equal(ids[index[owned]], class_map[patch.window.slices][owned])

    def crops_of(patches):
        batches = CropBatches([p.image for p in patches], [p.aux for p in patches], [p.train for p in patches],
                              net.crop, [(p.window.row0, p.window.col0) for p in patches], patches[0].scene_shape)
        return {c: batches.batch([k]) for k, (_, c) in enumerate(batches.crops)}

    from_windows, from_whole = crops_of(windowed.patches), crops_of(whole.patches)
    assert set(from_windows) == set(from_whole)
    for c, batch in from_whole.items():
        torch.testing.assert_close(from_windows[c].hsi, batch.hsi, rtol=0, atol=0)
        # the auxiliary stretch is fitted on the pixels read (the windows here), so a limit may move by a level
        torch.testing.assert_close(from_windows[c].aux, batch.aux, rtol=0, atol=1 / 255 + 1e-6)


@pytest.mark.parametrize("setting", [{"label_smoothing": 0.1}, {"augment": True}, {"windows_per_step": 2}])
def test_the_crop_recipe_refuses_the_whole_window_models_settings(setting):
    """M3amba trains with its own loss on crop minibatches: a setting it would ignore is refused, not dropped."""
    from engine.models.registry import build_multimodal_model
    from engine.training.sampler import Patch, Window
    from engine.training.train import TrainConfig, train_patches

    hsi, aux = np.ones((3, 40, 36), np.float32), np.ones((1, 40, 36), np.float32)
    train, none = np.zeros((40, 36), np.int64), np.full((40, 36), -1)
    net = build_multimodal_model("m3amba", 3, 1, 3, use_clip=False, **TINY)
    with pytest.raises(ValueError, match="augmentation, windows per step and label smoothing are for the whole-window"):
        train_patches(net, [Patch(Window(0, 40, 0, 36), hsi, hsi, np.ones((40, 36), bool), train, none, aux=aux)],
                      TrainConfig(epochs=1, device="cpu", threads=1, **setting))
