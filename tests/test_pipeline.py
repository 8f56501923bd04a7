"""engine.pipeline: train → classify → evaluate from files, the metadata it records, and its refusals.

A tiny generated sample (40 × 40 px, 24 bands), a narrow model (dim 8) and one thread (tiny shapes
gain nothing from more, and on a busy machine an oversubscribed OpenMP pool is many times slower)
keep every training run at a few seconds; the numbers are not the point here, the bookkeeping is.
"""

import logging
import os

import numpy as np
import pytest
from osgeo import gdal

from engine.data.sample import generate_sample
from engine.modelfile import load_model
from engine.evaluation import evaluate_files
from engine.pipeline import SplitOptions, classify_file, train_from_files
from engine.training.train import TrainingCancelled

gdal.UseExceptions()
SMALL = {"dim": 8}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return generate_sample(str(tmp_path_factory.mktemp("sample")), rows=40, cols=40, bands=24, seed=1)


@pytest.fixture(scope="module")
def trained(sample, tmp_path_factory):
    """One CSSMamba model trained on the sample's ROIs for 2 epochs, shared by the tests below."""
    path = str(tmp_path_factory.mktemp("model") / "model.pt")
    calls = []
    metadata, result = train_from_files(sample.raster, path, rois=sample.rois, class_field="class_id",
                                        name_field="class_name", model="cssmamba", epochs=2, device="cpu", seed=3,
                                        overrides=SMALL, threads=1, progress=lambda f, t="": calls.append(f))
    return path, metadata, result, calls


def _read(path):
    return gdal.Open(path).ReadAsArray()


def test_training_records_what_a_model_file_must_carry(trained, sample):
    path, metadata, result, progress = trained
    raster = gdal.Open(sample.raster)  # keep a reference: bands die with their dataset
    good_bands = [b for b in range(1, 25) if raster.GetRasterBand(b).GetMetadataItem("bbl") == "1"]
    assert metadata["format_version"] == 1
    assert metadata["model"]["name"] == "cssmamba" and metadata["model"]["config"]["dim"] == 8
    assert metadata["model"]["config"]["in_bands"] == len(good_bands) == len(metadata["bands"]["indices"])
    assert metadata["bands"]["indices"] == good_bands and len(metadata["bands"]["wavelengths"]) == len(good_bands)
    assert len(metadata["normalisation"]["low"]) == len(good_bands)
    classes = metadata["classes"]
    assert classes["ids"] == sorted(classes["ids"]) and set(classes["ids"]) <= {1, 2, 3, 4, 5, 6}
    assert "roof" in classes["names"] and len(classes["colors"]) == len(classes["ids"])
    provenance = metadata["provenance"]
    assert provenance["rois"] == os.path.abspath(sample.rois) and provenance["labels"] is None
    assert provenance["class_field"] == "class_id" and provenance["seed"] == 3 and provenance["epochs"] == 2
    split = provenance["split"]
    assert split["mode"] == "fixed" and split["train_per_class"] == 30
    assert all(n in (15, 30) or n <= 15 for n in split["counts"]["train"])
    assert all(n <= 10 for n in split["counts"]["validation"]) and sum(split["counts"]["test"]) > 0
    assert provenance["best_epoch"] == result.best_epoch in (1, 2) and provenance["evaluated_on"] == "test"
    assert 0 <= provenance["metrics"]["overall_accuracy"] <= 1
    assert provenance["metrics"]["pixels"] == sum(split["counts"]["test"])
    assert set(provenance["software"]) >= {"engine", "torch", "numpy", "gdal"} and provenance["created"]
    assert progress[-1] == 1.0 and progress == sorted(progress)
    model, stored = load_model(path)
    assert stored == metadata and model.config == metadata["model"]["config"]


def test_classify_and_evaluate_the_training_raster(trained, sample, tmp_path):
    path, metadata, _, _ = trained
    outputs = {k: str(tmp_path / f"{k}.tif") for k in ("classes", "confidence", "clusters")}
    written = classify_file(path, sample.raster, outputs["classes"], confidence=outputs["confidence"],
                            clusters=outputs["clusters"], device="cpu", threads=1)
    assert set(map(os.path.abspath, written.values())) == set(map(os.path.abspath, outputs.values()))
    classes = _read(outputs["classes"])
    nodata = (_read(sample.raster) == -32768).all(axis=0)
    assert classes.shape == (40, 40) and np.array_equal(classes == 0, nodata)
    assert set(np.unique(classes[~nodata])) <= set(metadata["classes"]["ids"])
    confidence = _read(outputs["confidence"])
    assert np.all((confidence[~nodata] > 0) & (confidence[~nodata] <= 1))

    report = tmp_path / "acc.json"
    result = evaluate_files(outputs["classes"], labels=sample.labels, json_out=str(report))
    assert report.is_file() and 0 <= result["overall_accuracy"] <= 1
    truth = _read(sample.labels)
    assert result["pixels"] == int((truth > 0).sum())
    assert result["overall_accuracy"] == pytest.approx(np.mean(classes[truth > 0] == truth[truth > 0]))


def test_classify_refuses_a_raster_with_another_band_count(trained, tmp_path):
    other = generate_sample(str(tmp_path), rows=20, cols=20, bands=30, seed=2)
    with pytest.raises(ValueError, match="band"):
        classify_file(trained[0], other.raster, str(tmp_path / "c.tif"), device="cpu", threads=1)
    assert not os.path.exists(tmp_path / "c.tif")


def test_outputs_in_missing_folders_are_refused_before_work(trained, sample):
    with pytest.raises(ValueError, match="does not exist"):
        classify_file(trained[0], sample.raster, "/no/such/folder/classes.tif")
    with pytest.raises(ValueError, match="does not exist"):
        train_from_files(sample.raster, "/no/such/folder/model.pt", labels=sample.labels)


def test_cancelled_training_leaves_no_model_file(sample, tmp_path):
    path = tmp_path / "model.pt"
    with pytest.raises(TrainingCancelled):
        train_from_files(sample.raster, str(path), labels=sample.labels, epochs=2, device="cpu", overrides=SMALL,
                         threads=1, cancelled=lambda: True)
    assert list(tmp_path.iterdir()) == []


def test_validation_labels_replace_the_sampled_split(sample, tmp_path):
    metadata, _ = train_from_files(sample.raster, str(tmp_path / "m.pt"), rois=sample.rois, class_field="class_id",
                                   model="mambahsi", epochs=1, device="cpu", overrides=SMALL,
                                   threads=1, split=SplitOptions(val_labels=sample.labels))
    provenance = metadata["provenance"]
    counts = provenance["split"]["counts"]
    truth = _read(sample.labels)
    assert provenance["split"]["mode"] == "validation-set" and provenance["evaluated_on"] == "validation"
    assert sum(counts["test"]) == 0
    # every ROI pixel trains; validation is the rest of the reference map (of the classes the ROIs have)
    assert sum(counts["train"]) + sum(counts["validation"]) == int(np.isin(truth, metadata["classes"]["ids"]).sum())
    assert provenance["metrics"]["pixels"] == sum(counts["validation"])


def test_a_class_with_one_usable_pixel_is_left_out(sample, tmp_path, caplog):
    labels = str(tmp_path / "labels.tif")
    gdal.Translate(labels, sample.labels)
    ds = gdal.Open(labels, gdal.GA_Update)
    values = ds.GetRasterBand(1).ReadAsArray()
    water = np.argwhere(values == 6)
    values[tuple(water[1:].T)] = 0  # one water pixel left
    ds.GetRasterBand(1).WriteArray(values)
    ds = None
    with caplog.at_level(logging.WARNING):
        metadata, _ = train_from_files(sample.raster, str(tmp_path / "m.pt"), labels=labels, model="mambahsi",
                                       epochs=1, device="cpu", overrides=SMALL, threads=1,
                                       split=SplitOptions(mode="ratio"))
    assert 6 not in metadata["classes"]["ids"] and len(metadata["classes"]["ids"]) == 5
    assert "class 6" in caplog.text and "left out" in caplog.text
    assert metadata["provenance"]["split"]["mode"] == "ratio"


def test_a_band_subset_and_learning_rate_are_trained_recorded_and_read_again(sample, tmp_path):
    """A model trained on chosen bands reads exactly those bands of the raster it classifies."""
    path = str(tmp_path / "subset.pt")
    metadata, _ = train_from_files(sample.raster, path, rois=sample.rois, class_field="class_id", model="mambahsi",
                                   epochs=1, device="cpu", bands=[2, 5, 7, 11], lr=1e-3, overrides=SMALL, threads=1)
    assert metadata["bands"]["indices"] == [2, 5, 7, 11] and metadata["model"]["config"]["in_bands"] == 4
    assert metadata["provenance"]["learning_rate"] == 1e-3
    out = classify_file(path, sample.raster, str(tmp_path / "classes.tif"), device="cpu", threads=1)
    assert gdal.Open(out["classes"]).RasterCount == 1


@pytest.mark.parametrize("scene, expected", [("enmap_potsdam", "spatial"), ("salinas_a", "fixed")])
def test_auto_split_is_spatial_when_every_class_has_three_separate_rois(shared_data, scene, expected, tmp_path,
                                                                        caplog):
    """EnMAP's labels hold 6 to 148 components per class, Salinas-A's one field per class."""
    files = {"enmap_potsdam": ("enmap_potsdam_mosaic.tif", "enmap_potsdam_labels.tif"),
             "salinas_a": ("salinas_a.tif", "salinas_a_labels.tif")}[scene]
    raster, labels = (os.path.join(shared_data, scene, name) for name in files)
    with caplog.at_level(logging.INFO, logger="engine"):
        metadata, _ = train_from_files(raster, str(tmp_path / "m.pt"), labels=labels, model="mambahsi", epochs=1,
                                       device="cpu", overrides=SMALL, threads=1, split=SplitOptions(mode="auto"))
    split = metadata["provenance"]["split"]
    assert split["mode"] == expected and "split: " in caplog.text        # the log and the model say which ran
    assert split["counts"]["train"] == [30] * len(metadata["classes"]["ids"])
    assert sum(split["counts"]["test"]) > 0 and metadata["provenance"]["evaluated_on"] == "test"
