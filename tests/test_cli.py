"""`python -m engine`: every subcommand's help, --set parsing, evaluate on real labels, the demo, errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from osgeo import gdal

from engine.cli import MODEL_NAMES, main, parse_overrides

gdal.UseExceptions()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_engine(*args):
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


HELP = {
    "train": ["--raster", "--labels", "--rois", "--class-field", "--name-field", "--model", "--epochs", "--device",
              "--seed", "--set", "--out", "--report", "--split", "--val-rois", "--val-labels", "--patience",
              "--threads", "cssmamba", "mambahsi"],
    "classify": ["--model", "--raster", "--out", "--confidence", "--clusters", "--probabilities", "--tile",
                 "--overlap", "--device"],
    "evaluate": ["--pred", "--labels", "--rois", "--class-field", "--name-field", "--json"],
    "benchmark": ["--methods", "--datasets", "--seeds", "--epochs", "--device", "--out", "--cache",
                  "--export-cache", "--merge", "--ablation", "--set"],
    "demo": ["--out", "--force", "--epochs", "--model", "--set", "--device", "--threads"],
    "sample": ["--out", "--rows", "--cols", "--bands", "--seed"],
    "selfcheck": ["--raster", "--device", "--repeats"],
}


@pytest.mark.parametrize("command", sorted(HELP))
def test_every_subcommand_explains_its_options(command, capsys):
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    missing = [option for option in HELP[command] if option not in text]
    assert not missing, f"'{command} --help' does not mention {missing}"


def test_top_level_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert all(name in text for name in HELP)


def test_model_choices_are_the_registry_names():
    from engine.models.registry import MODEL_NAMES as registry_names

    assert tuple(MODEL_NAMES) == tuple(registry_names)


def test_set_values_are_read_as_json_when_they_parse():
    parsed = parse_overrides(["dim=64", "keep_ratio=0.5", "pooling=true", "token_selection=False",
                              "gate=prior", 'partition="topk"', "schedule=[50, 30, 20]", "scan_backend=None",
                              "name = with spaces "])
    assert parsed == {"dim": 64, "keep_ratio": 0.5, "pooling": True, "token_selection": False, "gate": "prior",
                      "partition": "topk", "schedule": [50, 30, 20], "scan_backend": None,
                      "name": "with spaces"}
    assert isinstance(parsed["dim"], int) and parse_overrides(None) == {}
    for bad in ("dim", "=3"):
        with pytest.raises(ValueError, match="key=value"):
            parse_overrides([bad])


def test_first_ctrl_c_requests_a_clean_cancel_and_the_second_interrupts():
    import signal

    from engine.cli import _ctrl_c_cancels

    before = signal.getsignal(signal.SIGINT)
    with _ctrl_c_cancels() as cancelled:
        assert not cancelled()
        os.kill(os.getpid(), signal.SIGINT)
        assert cancelled(), "the trainer/predictor sees the cancel at its next check"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_unknown_options_are_refused(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["evaluate", "--pred", "a.tif", "--labels", "b.tif", "--bogus"])
    assert stop.value.code == 2 and "--bogus" in capsys.readouterr().err


def test_evaluate_real_labels_against_themselves_is_perfect(shared_data, tmp_path, capsys):
    labels = os.path.join(shared_data, "salinas_a", "salinas_a_labels.tif")
    report = tmp_path / "acc.json"
    assert main(["evaluate", "--pred", labels, "--labels", labels, "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["overall_accuracy"] == 1.0 and result["kappa"] == 1.0 and result["pixels"] == 5348
    assert [c["id"] for c in result["classes"]] == [1, 10, 11, 12, 13, 14]
    assert result["classes"][1]["name"] == "Corn_senesced_green_weeds"
    assert "OA 1.0000" in capsys.readouterr().out


def test_evaluate_counts_changed_and_unclassified_pixels_as_errors(shared_data, tmp_path):
    labels = os.path.join(shared_data, "enmap_potsdam", "enmap_potsdam_labels.tif")
    pred = str(tmp_path / "pred.tif")
    gdal.Translate(pred, labels)
    ds = gdal.Open(pred, gdal.GA_Update)
    values = ds.GetRasterBand(1).ReadAsArray()
    trees, roofs = np.argwhere(values == 4)[:100], np.argwhere(values == 1)[:20]
    values[tuple(trees.T)] = 3          # 100 tree pixels called low vegetation
    values[tuple(roofs.T)] = 0          # 20 roof pixels left unclassified (nodata)
    ds.GetRasterBand(1).WriteArray(values)
    ds = None
    report = tmp_path / "acc.json"
    assert main(["evaluate", "--pred", pred, "--labels", labels, "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["pixels"] == 5672
    assert result["overall_accuracy"] == pytest.approx((5672 - 120) / 5672)
    by_id = {c["id"]: c for c in result["classes"]}
    assert by_id[4]["producers_accuracy"] == pytest.approx((2070 - 100) / 2070)
    assert by_id[1]["producers_accuracy"] == pytest.approx((505 - 20) / 505)
    assert by_id[-1]["name"] == "unclassified" and by_id[-1]["reference_pixels"] == 0
    assert result["confusion_matrix"][0][-1] == 20, "roof row, unclassified column"


def test_evaluate_against_the_rois_that_made_the_labels_is_perfect(shared_data):
    folder = os.path.join(shared_data, "enmap_potsdam")
    from engine.evaluation import evaluate_files

    result = evaluate_files(os.path.join(folder, "enmap_potsdam_labels.tif"),
                            rois=os.path.join(folder, "enmap_potsdam_rois.gpkg"), class_field="class_id",
                            name_field="class_name")
    assert result["overall_accuracy"] == 1.0 and result["pixels"] == 5672
    assert [c["name"] for c in result["classes"]][:2] == ["roof", "pavement"]


def test_evaluate_refuses_a_reference_on_another_grid(shared_data, capsys):
    pred = os.path.join(shared_data, "salinas_a", "salinas_a_labels.tif")
    other = os.path.join(shared_data, "muufl_crop", "muufl_labels.tif")
    assert main(["evaluate", "--pred", pred, "--labels", other]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "grid" in err and "muufl_labels.tif" in err


def test_evaluate_needs_a_class_field_with_rois(shared_data, capsys):
    folder = os.path.join(shared_data, "enmap_potsdam")
    assert main(["evaluate", "--pred", os.path.join(folder, "enmap_potsdam_labels.tif"),
                 "--rois", os.path.join(folder, "enmap_potsdam_rois.gpkg")]) == 2
    assert "class field" in capsys.readouterr().err


def test_train_refuses_an_unwritable_model_path_before_reading_anything(capsys):
    assert main(["train", "--raster", "/no/such.tif", "--labels", "/no/labels.tif",
                 "--out", "/no/such/folder/model.pt"]) == 2
    assert "/no/such/folder does not exist" in capsys.readouterr().err


def test_demo_trains_classifies_and_evaluates_the_sample(tmp_path):
    result = run_engine("demo", "--out", str(tmp_path), "--rows", "40", "--cols", "40", "--bands", "24",
                        "--epochs", "2", "--set", "dim=8", "--threads", "1", "--device", "cpu")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert 'trained cssmamba ({"dim": 8})' in out and "best epoch" in out and "whole-scene accuracy" in out
    for name in ("demo_cssmamba.pt", "demo_classes.tif", "demo_confidence.tif", "demo_clusters.tif",
                 "demo_accuracy.json"):
        assert os.path.isfile(tmp_path / name) and str(tmp_path / name) in out
    metrics = json.loads((tmp_path / "demo_accuracy.json").read_text())
    assert 0 < metrics["overall_accuracy"] <= 1 and len(metrics["classes"]) >= 5
    classes = gdal.Open(str(tmp_path / "demo_classes.tif"))
    assert (classes.RasterYSize, classes.RasterXSize) == (40, 40)
    # the second run reuses the sample; a misspelt --set key then stops it before any training
    again = run_engine("demo", "--out", str(tmp_path), "--set", "dims=8")
    assert "using the existing sample" in again.stdout
    assert again.returncode == 2 and "unknown option(s) dims for model 'cssmamba'" in again.stderr


def test_train_classify_evaluate_the_real_enmap_scene_from_its_rois(shared_data, tmp_path, capsys):
    """The realistic QGIS case end to end: georeferenced EnMAP mosaic with nodata tiles and bad bands,
    training ROIs in a GeoPackage, reference label raster (2 epochs of a narrow model: plumbing, not accuracy)."""
    folder = os.path.join(shared_data, "enmap_potsdam")
    mosaic = os.path.join(folder, "enmap_potsdam_mosaic.tif")
    model, report = str(tmp_path / "potsdam.pt"), tmp_path / "report.json"
    assert main(["train", "--raster", mosaic, "--rois", os.path.join(folder, "enmap_potsdam_rois.gpkg"),
                 "--class-field", "class_id", "--name-field", "class_name", "--model", "mambahsi", "--epochs", "2",
                 "--set", "dim=8", "--threads", "1", "--device", "cpu", "--seed", "4", "--out", model,
                 "--report", str(report)]) == 0
    trained = json.loads(report.read_text())
    assert len(trained["history"]) == 2 and trained["metadata"]["classes"]["names"][0] == "roof"
    assert len(trained["metadata"]["bands"]["indices"]) == 218, "the 6 bad bands are dropped"
    assert trained["metadata"]["provenance"]["split"]["counts"]["train"] == [30] * 6
    classes = str(tmp_path / "classes.tif")
    assert main(["classify", "--model", model, "--raster", mosaic, "--out", classes, "--threads", "1",
                 "--device", "cpu"]) == 0
    out, ref = gdal.Open(classes), gdal.Open(mosaic)
    assert out.GetGeoTransform() == ref.GetGeoTransform() and out.GetSpatialRef().IsSame(ref.GetSpatialRef())
    assert (out.ReadAsArray()[:32, 160 - 32:] == 0).all(), "the missing tile at the top right is nodata"
    assert main(["evaluate", "--pred", classes, "--labels", os.path.join(folder, "enmap_potsdam_labels.tif")]) == 0
    printed = capsys.readouterr().out
    assert "(5,672 pixels)" in printed and "best epoch" in printed
    assert model in printed and classes in printed


def test_selfcheck_on_the_real_enmap_mosaic(shared_data):
    raster = os.path.join(shared_data, "enmap_potsdam", "enmap_potsdam_mosaic.tif")
    result = run_engine("selfcheck", "--raster", raster, "--repeats", "1", "--device", "cpu", "--threads", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "self-check [PASS]" in result.stdout and "30720" in result.stdout  # 192 x 160 pixels


def test_selfcheck_names_a_missing_raster():
    result = run_engine("selfcheck", "--raster", "/no/such/raster.tif")
    assert result.returncode == 2
    assert "/no/such/raster.tif" in result.stderr and "Traceback" not in result.stderr


def test_selfcheck_refuses_cuda_when_there_is_none():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the refusal is for machines without it")
    result = run_engine("selfcheck", "--raster", "/no/matter.tif", "--device", "cuda")
    assert result.returncode == 2 and "cuda" in result.stderr.lower()
