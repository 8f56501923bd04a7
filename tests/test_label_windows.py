"""Training on label windows through engine.pipeline: what is read, what is trained, what is recorded.

A 600 x 600 px generated scene (larger than one classification tile) whose ROIs cover 0.3 % of it (their tiles 56 %):
'auto' trains on the classification tiles that hold them and never reads the raster whole; the split,
the stretch and the classes are those of whole-scene training with the same seed, and classification
repeats the tiles. A narrow MambaHSI (dim 8), 2 epochs and one thread keep each run short.
"""

import pytest

from engine import pipeline
from engine.data import raster as raster_module
from engine.data.sample import generate_sample
from engine.pipeline import classify_file, train_from_files
from engine.training.sampler import LABEL_OVERLAP, LABEL_TILE

SMALL = {"dim": 8}


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return generate_sample(str(tmp_path_factory.mktemp("scene")), rows=600, cols=600, bands=16, seed=1)


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
    assert sum((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in windows) < 600 * 600
    assert all(0 <= r0 < r1 <= 600 and 0 <= c0 < c1 <= 600 for r0, r1, c0, c1 in windows)
    assert metadata["tiling"] == {"tile": LABEL_TILE, "overlap": LABEL_OVERLAP}
    assert result.windows == [pipeline.Window(*w) for w in windows]
    assert "training reads" in caplog.text and "label windows" in caplog.text
    assert metadata["provenance"]["evaluated_on"] == "test"
    assert metadata["provenance"]["metrics"]["pixels"] == sum(metadata["provenance"]["split"]["counts"]["test"])


def test_windows_and_the_whole_scene_share_the_split_the_stretch_and_the_classes(scene, tmp_path):
    windows, _ = train(scene, tmp_path / "w", sampling="windows")
    whole, _ = train(scene, tmp_path / "s", sampling="whole")
    assert whole["provenance"]["sampling"]["mode"] == "whole scene"
    assert whole["provenance"]["sampling"]["windows"] == [[0, 600, 0, 600]] and "tiling" not in whole
    assert windows["provenance"]["split"] == whole["provenance"]["split"]
    assert windows["classes"] == whole["classes"] and windows["bands"] == whole["bands"]
    # the stretch sample is the same rows of the same file in both modes
    assert windows["normalisation"] == whole["normalisation"]


def test_the_stretch_sample_is_a_bounded_lattice_over_the_raster(scene, monkeypatch):
    info = raster_module.open_raster(scene.raster)
    assert raster_module.sample_lattice(600, 600, 40_000) == 3
    assert raster_module.sample_lattice(50, 40, 4000) == 1                  # a small raster is read whole
    rows_read = []
    read_marked = raster_module._read_marked
    monkeypatch.setattr(raster_module, "_read_marked",
                        lambda ds, info, row0, *a: rows_read.append(row0) or read_marked(ds, info, row0, *a))
    _, data, valid = raster_module.read_sample(info, pixels=40_000)
    assert rows_read == list(range(1, 600, 3))                              # every third row, from the first
    assert data.shape[1] == 1 and valid.all() and 20_000 <= data.shape[2] <= 200 * 200


def test_windows_that_do_not_fit_in_memory_are_refused_before_reading(scene, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "available_memory_bytes", lambda: 1000)
    monkeypatch.setattr(pipeline, "_check_label_grid_fits", lambda info: None)   # as if the labels fitted
    monkeypatch.setattr(pipeline, "read_window", lambda *a, **k: pytest.fail("a window was read"))
    with pytest.raises(ValueError, match="windows around them .* need .* in memory"):
        train(scene, tmp_path, sampling="windows")


def test_a_chosen_training_window_size_sets_the_windows_and_the_tiles_classification_repeats(scene, tmp_path):
    metadata, _ = train(scene, tmp_path, label_tile=128)
    assert metadata["tiling"] == {"tile": 128, "overlap": 16}
    windows = metadata["provenance"]["sampling"]["windows"]
    assert windows and all(r1 - r0 <= 128 and c1 - c0 <= 128 for r0, r1, c0, c1 in windows)
    assert max(r1 - r0 for r0, r1, _, _ in windows) > LABEL_TILE      # larger than the default tiles


def test_the_cli_trains_on_the_training_window_size_it_is_given(scene, tmp_path):
    from engine.cli import main
    from engine.modelfile import load_model

    model = str(tmp_path / "model.pt")
    assert main(["-q", "train", "--raster", scene.raster, "--rois", scene.rois, "--class-field", "class_id",
                 "--model", "mambahsi", "--set", "dim=8", "--epochs", "1", "--device", "cpu", "--threads", "1",
                 "--label-tile", "96", "--out", model]) == 0
    assert load_model(model)[1]["tiling"] == {"tile": 96, "overlap": 12}


def test_label_windows_cut_by_the_memory_budget_are_a_warning_that_names_the_fix(scene, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="engine"):
        train(scene, tmp_path, sampling="windows", memory_budget_mb=4)
    assert "do not fit the memory budget of 4 MB, so they are cut" in caplog.text
    assert "smaller training window size (CLI: --label-tile" in caplog.text


def test_a_training_window_size_is_refused_with_whole_scene_sampling_and_out_of_range(scene, tmp_path):
    with pytest.raises(ValueError, match=r"window size \(--label-tile\) was given with whole-scene sampling "
                                         r"\(--sampling whole\)"):
        train(scene, tmp_path, sampling="whole", label_tile=128)
    with pytest.raises(ValueError, match="from 32 to 512"):
        train(scene, tmp_path, label_tile=16)
    with pytest.raises(ValueError, match=r"window size \(CLI: --label-tile; toolbox: Training window size\) is for "
                                         r"the whole-window models .* follow its crop size"):
        train_from_files(scene.raster, str(tmp_path / "m3.pt"), rois=scene.rois, class_field="class_id",
                         model="m3amba", aux=[scene.raster], use_clip=False, device="cpu", label_tile=128)


def test_a_training_window_size_on_a_scene_trained_whole_is_said_not_to_apply(tmp_path, caplog):
    small = generate_sample(str(tmp_path / "small"), rows=40, cols=40, bands=16, seed=2)
    with caplog.at_level("INFO", logger="engine"):
        metadata, _ = train(small, tmp_path / "m", label_tile=128)
    assert metadata["provenance"]["sampling"]["mode"] == "whole scene" and "tiling" not in metadata
    assert "training window size (128 px) does not apply" in caplog.text


def test_an_unknown_sampling_is_refused(scene, tmp_path):
    with pytest.raises(ValueError, match="sampling must be one of auto, windows, whole"):
        train(scene, tmp_path, sampling="tiles")


def test_classification_repeats_the_tiles_of_training_unless_told_otherwise(scene, tmp_path, monkeypatch):
    train(scene, tmp_path)
    used = []
    monkeypatch.setattr(pipeline, "predict_raster", lambda *a, **k: used.append((k.get("tile"), k.get("overlap"))))
    classify_file(str(tmp_path / "model.pt"), scene.raster, str(tmp_path / "classes.tif"), device="cpu")
    classify_file(str(tmp_path / "model.pt"), scene.raster, str(tmp_path / "classes.tif"), tile=128, device="cpu")
    assert used == [(LABEL_TILE, LABEL_OVERLAP), (128, LABEL_OVERLAP)]


def test_rois_on_a_scene_larger_than_memory_still_train(scene, tmp_path, monkeypatch):
    """A 6,000 x 6,000 px x 204-band VRT (58 GB as float32, twice the free memory of a CI machine) with the
    ROIs in its top-left corner trains on the tiles around them; the cube is never read."""
    from osgeo import gdal

    source = gdal.Open(scene.raster)
    origin = ",".join(str(v) for v in source.GetGeoTransform())
    bands = "".join(f'<VRTRasterBand dataType="Int16" band="{b}"><NoDataValue>-32768</NoDataValue><SimpleSource>'
                    f'<SourceFilename relativeToVRT="0">{scene.raster}</SourceFilename><SourceBand>{1 + b % 12}'
                    f'</SourceBand><SrcRect xOff="0" yOff="0" xSize="600" ySize="600"/>'
                    f'<DstRect xOff="0" yOff="0" xSize="600" ySize="600"/></SimpleSource></VRTRasterBand>'
                    for b in range(1, 205))
    vrt = tmp_path / "large.vrt"
    vrt.write_text(f'<VRTDataset rasterXSize="6000" rasterYSize="6000"><SRS>{source.GetProjection()}</SRS>'
                   f'<GeoTransform>{origin}</GeoTransform>{bands}</VRTDataset>')
    monkeypatch.setattr(pipeline, "load_training_raster", lambda *a, **k: pytest.fail("the raster was read whole"))
    (tmp_path / "m").mkdir()
    metadata, _ = train_from_files(str(vrt), str(tmp_path / "m" / "model.pt"), rois=scene.rois,
                                   class_field="class_id", model="mambahsi", epochs=1, device="cpu", seed=4,
                                   overrides=SMALL, threads=1)
    windows = metadata["provenance"]["sampling"]["windows"]
    assert metadata["provenance"]["sampling"]["mode"] == "label windows"
    assert all(r1 <= 600 + LABEL_TILE and c1 <= 600 + LABEL_TILE for _, r1, _, c1 in windows)


def test_a_grid_whose_label_maps_do_not_fit_is_refused_before_reading(scene, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "available_memory_bytes", lambda: 1000)
    monkeypatch.setattr(pipeline, "read_reference", lambda *a, **k: pytest.fail("the labels were read"))
    with pytest.raises(ValueError, match="too large to train on here: the label maps of its 600 x 600 px grid"):
        train(scene, tmp_path)


def test_cssmamba_prototypes_take_one_ema_step_per_optimizer_step_on_label_windows(scene, tmp_path, monkeypatch):
    """Several windows in one optimizer step: each stage's prototypes are updated once, at the end of the step,
    from every window's pixels (LearnableClustering.deferring), not once per window."""
    from engine.models.cssmamba import LearnableClustering

    updates = []
    flush = LearnableClustering.flush

    def counted(self):
        updates.append(self._pending is not None)
        flush(self)

    monkeypatch.setattr(LearnableClustering, "flush", counted)
    monkeypatch.setattr("engine.training.train.CPU_UNIT_PIXELS", 1)             # one window per forward
    folder = tmp_path / "c"
    folder.mkdir()
    metadata, result = train_from_files(scene.raster, str(folder / "model.pt"), rois=scene.rois,
                                        class_field="class_id", model="cssmamba", epochs=2, device="cpu", seed=4,
                                        overrides={"dim": 8, "stages": 1}, threads=1)
    assert len(metadata["provenance"]["sampling"]["windows"]) > 1
    assert updates == [True, True]                   # one deferred EMA step per epoch (one optimizer step each)
