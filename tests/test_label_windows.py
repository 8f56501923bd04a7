"""Training on label windows through engine.pipeline: what is read, what is trained, what is recorded.

A 400 x 400 px generated scene whose ROIs cover 0.7 % of it: 'auto' trains on the windows around them
and never reads the raster whole; the split, the stretch and the classes are those of whole-scene
training with the same seed. A narrow MambaHSI (dim 8), 2 epochs and one thread keep each run short.
"""

import numpy as np
import pytest

from engine import pipeline
from engine.data import raster as raster_module
from engine.data.sample import generate_sample
from engine.pipeline import train_from_files

SMALL = {"dim": 8}


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return generate_sample(str(tmp_path_factory.mktemp("scene")), rows=400, cols=400, bands=16, seed=1)


def train(scene, folder, **options):
    folder.mkdir(exist_ok=True)
    return train_from_files(scene.raster, str(folder / "model.pt"), rois=scene.rois, class_field="class_id",
                            model="mambahsi", epochs=2, device="cpu", seed=4, overrides=SMALL, threads=1, **options)


def test_auto_trains_on_label_windows_without_reading_the_raster_whole(scene, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(pipeline, "load_training_raster", lambda *a, **k: pytest.fail("the raster was read whole"))
    with caplog.at_level("INFO", logger="engine"):
        metadata, result = train(scene, tmp_path)
    sampling = metadata["provenance"]["sampling"]
    assert sampling["mode"] == "label windows"
    windows = [tuple(w) for w in sampling["windows"]]
    assert sum((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in windows) < 0.5 * 400 * 400
    assert all(0 <= r0 < r1 <= 400 and 0 <= c0 < c1 <= 400 for r0, r1, c0, c1 in windows)
    assert result.windows == [pipeline.Window(*w) for w in windows]
    assert "training reads" in caplog.text and "label windows" in caplog.text
    assert metadata["provenance"]["evaluated_on"] == "test"
    assert metadata["provenance"]["metrics"]["pixels"] == sum(metadata["provenance"]["split"]["counts"]["test"])


def test_windows_and_the_whole_scene_share_the_split_the_stretch_and_the_classes(scene, tmp_path):
    windows, _ = train(scene, tmp_path / "w", sampling="windows")
    whole, _ = train(scene, tmp_path / "s", sampling="whole")
    assert whole["provenance"]["sampling"]["mode"] == "whole scene"
    assert whole["provenance"]["sampling"]["windows"] == [[0, 400, 0, 400]]
    assert windows["provenance"]["split"] == whole["provenance"]["split"]
    assert windows["classes"] == whole["classes"] and windows["bands"] == whole["bands"]
    # the stretch sample is the same rows of the same file in both modes
    assert windows["normalisation"] == whole["normalisation"]


def test_the_stretch_sample_is_bounded_and_spread_over_the_raster(scene):
    info = raster_module.open_raster(scene.raster)
    ranges = raster_module.sample_row_blocks(info.rows, info.cols, 4000)
    assert ranges[0][0] == 0 and ranges[-1][1] == info.rows                  # first and last rows
    assert sum(stop - start for start, stop in ranges) * info.cols < 4000 + 32 * info.cols
    _, data, valid = raster_module.read_sample(info, pixels=4000)
    assert data.shape[1] == 1 and valid.all() and 2000 <= data.shape[2] <= 4000 + 32 * info.cols
    assert raster_module.sample_row_blocks(50, 40, 4000) == [(0, 50)]       # a small raster is read whole


def test_windows_that_do_not_fit_in_memory_are_refused_before_reading(scene, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "available_memory_bytes", lambda: 1000)
    monkeypatch.setattr(pipeline, "read_window", lambda *a, **k: pytest.fail("a window was read"))
    with pytest.raises(ValueError, match="windows around them .* need .* in memory"):
        train(scene, tmp_path, sampling="windows")


def test_an_unknown_sampling_is_refused(scene, tmp_path):
    with pytest.raises(ValueError, match="sampling must be one of auto, windows, whole"):
        train(scene, tmp_path, sampling="tiles")
