"""engine.report: the HTML training and accuracy reports, the CSV/JSON tables, atomic writing.

The accuracy inputs come from a real ``evaluate_files`` run on the EnMAP Potsdam labels against a copy
with a known number of pixels changed, so the expected OA is exact; the training report from a real
2-epoch run on a tiny generated sample, so the report follows the engine's real formats.
"""

import csv
import json
import math
import os
import re

import numpy as np
import pytest
from osgeo import gdal

from engine import paths, report
from engine.data.sample import generate_sample
from engine.evaluation import evaluate_files
from engine.pipeline import train_from_files

gdal.UseExceptions()

WRONG, EMPTY = 200, 50  # class-3 pixels turned into class 4, class-1 pixels left unclassified (0)


@pytest.fixture(scope="module")
def evaluation(shared_data, tmp_path_factory):
    """evaluate_files' result for the Potsdam labels against a copy with WRONG + EMPTY pixels changed."""
    labels_path = os.path.join(shared_data, "enmap_potsdam", "enmap_potsdam_labels.tif")
    source = gdal.Open(labels_path)
    labels = source.ReadAsArray()
    predicted = labels.copy()
    rows, cols = np.nonzero(labels == 3)
    predicted[rows[:WRONG], cols[:WRONG]] = 4
    rows, cols = np.nonzero(labels == 1)
    predicted[rows[:EMPTY], cols[:EMPTY]] = 0
    path = str(tmp_path_factory.mktemp("classes") / "classes.tif")
    target = gdal.GetDriverByName("GTiff").Create(path, source.RasterXSize, source.RasterYSize, 1, gdal.GDT_Byte)
    target.SetGeoTransform(source.GetGeoTransform())
    target.SetProjection(source.GetProjection())
    target.GetRasterBand(1).WriteArray(predicted)
    target = None
    return evaluate_files(path, labels=labels_path), int((labels > 0).sum())


@pytest.fixture(scope="module")
def training(tmp_path_factory):
    """(metadata, history) of a real 2-epoch CSSMamba run on a 40 x 40 sample (a few seconds)."""
    folder = tmp_path_factory.mktemp("train")
    sample = generate_sample(str(folder), rows=40, cols=40, bands=24, seed=1)
    metadata, result = train_from_files(sample.raster, str(folder / "model.pt"), rois=sample.rois,
                                        class_field="class_id", name_field="class_name", epochs=2, device="cpu",
                                        overrides={"dim": 8}, threads=1)
    return metadata, result.history


def test_accuracy_report_shows_the_exact_metrics(evaluation):
    result, labelled = evaluation
    assert result["overall_accuracy"] == pytest.approx((labelled - WRONG - EMPTY) / labelled)
    page = report.accuracy_report_html(result, title="Potsdam check")
    assert page.startswith("<!DOCTYPE html>") and "<title>Potsdam check</title>" in page
    for key in ("overall_accuracy", "average_accuracy"):
        assert f"{100 * result[key]:.2f} %" in page
    assert f"{result['kappa']:.4f}" in page
    for entry in result["classes"]:
        assert f"{entry['id']} {entry['name']}" in page  # confusion matrix headers
        if entry["producers_accuracy"] is not None:
            assert f"{100 * entry['producers_accuracy']:.2f} %" in page
    assert result["prediction"] in page and result["reference"] in page
    assert "-1 unclassified" in page and "left empty" in page  # the EMPTY pixels have their own column
    ids = [entry["id"] for entry in result["classes"]]
    for truth, guess, count in ((3, 4, WRONG), (1, -1, EMPTY)):  # the changed pixels, in their matrix cells
        row = re.search(rf"<tr><th class=\"text\">{truth} .*?</tr>", page).group(0)
        assert re.findall(r"<td[^>]*>([\d,]+)</td>", row)[ids.index(guess)] == f"{count:,}"


def test_accuracy_csv_parses_and_matches_the_result(evaluation, tmp_path):
    result, labelled = evaluation
    csv_path, json_path = tmp_path / "acc.csv", tmp_path / "acc.json"
    report.write_accuracy_tables(result, str(csv_path), str(json_path))
    with open(csv_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    classes, matrix = result["classes"], result["confusion_matrix"]
    assert len(rows) == len(classes) + 1
    for entry, matrix_row, row in zip(classes, matrix, rows):
        assert int(row["class_id"]) == entry["id"] and row["class_name"] == entry["name"]
        assert int(row["reference_pixels"]) == entry["reference_pixels"] == sum(matrix_row)
        assert [int(row[f"predicted_{c['id']}"]) for c in classes] == matrix_row
        for key in ("producers_accuracy", "users_accuracy", "f1"):
            assert (float(row[key]) if row[key] else None) == entry[key]
    unclassified = next(row for row in rows if row["class_id"] == "-1")
    assert int(unclassified["predicted_pixels"]) == EMPTY and unclassified["producers_accuracy"] == ""
    total = rows[-1]
    assert total["class_name"] == "total" and int(total["reference_pixels"]) == labelled == result["pixels"]
    assert int(total["predicted_4"]) == sum(row[classes.index(next(c for c in classes if c["id"] == 4))]
                                            for row in matrix)
    assert json.loads(json_path.read_text(encoding="utf-8")) == result


def test_user_text_is_escaped_everywhere():
    name = '<script>alert("x")</script> & co'
    result = {"overall_accuracy": 0.5, "average_accuracy": 0.5, "kappa": 0.0, "pixels": 4,
              "confusion_matrix": [[1, 1], [1, 1]], "prediction": "/data/<b>.tif", "reference": "/data/a&b.gpkg",
              "classes": [{"id": 1, "name": name, "reference_pixels": 2, "producers_accuracy": 0.5,
                           "users_accuracy": 0.5, "f1": 0.5},
                          {"id": 2, "name": "grass", "reference_pixels": 2, "producers_accuracy": 0.5,
                           "users_accuracy": 0.5, "f1": 0.5}]}
    page = report.accuracy_report_html(result, title="<i>title</i>")
    assert "<script>" not in page and "<b>" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in page
    assert "/data/&lt;b&gt;.tif" in page and "/data/a&amp;b.gpkg" in page
    rows = list(csv.reader(report.accuracy_csv(result).splitlines()))
    assert rows[1][1] == name  # the CSV keeps the name as it is, quoted by the csv module


def test_training_report_has_curves_metrics_counts_and_provenance(training):
    metadata, history = training
    parameters = {"EPOCHS": 2, "ROIS": "/data/my <rois>.gpkg", "BANDS": [1, 2, 3]}
    page = report.training_report_html(metadata, history, parameters)
    provenance = metadata["provenance"]
    svgs = re.findall(r"<svg.*?</svg>", page, re.S)
    assert len(svgs) == 2 and all("<polyline" in svg for svg in svgs)
    assert f"best epoch {provenance['best_epoch']}" in svgs[0] and 'class="best"' in svgs[1]
    metrics = provenance["metrics"]
    assert f"{100 * metrics['overall_accuracy']:.2f} %" in page and f"{metrics['kappa']:.4f}" in page
    counts = provenance["split"]["counts"]
    for k, name in enumerate(metadata["classes"]["names"]):
        assert name in page
        r, g, b = metadata["classes"]["colors"][k]
        assert f"rgb({r},{g},{b})" in page
        row = re.search(rf"<td>{metadata['classes']['ids'][k]}</td><td class=\"text\">.*?</tr>", page).group(0)
        assert all(f"<td>{counts[part][k]:,}</td>" in row for part in ("train", "validation", "test"))
    assert "/data/my &lt;rois&gt;.gpkg" in page and "[1, 2, 3]" in page
    assert provenance["device"] in page and provenance["backend"] in page
    assert f"{provenance['train_seconds']:.1f} s" in page
    assert provenance["software"]["torch"] in page and provenance["software"]["gdal"] in page


def _polylines(svg):
    return [[tuple(map(float, p.split(","))) for p in m.split()]
            for m in re.findall(r'<polyline class="series" points="([^"]+)"', svg)]


def test_validation_curve_breaks_at_undefined_values_and_is_drawn_to_scale():
    history = [{"epoch": e, "loss": 1.0 / e, "aux_loss": 0.0, "val_oa": oa, "steps": 1, "seconds": 0.5}
               for e, oa in zip(range(1, 6), (0.0, 0.5, float("nan"), None, 1.0))]
    metadata = {"provenance": {"best_epoch": 5, "best_validation_oa": 1.0}, "classes": {"ids": []}}
    page = report.training_report_html(metadata, history, {})
    loss_svg, oa_svg = re.findall(r"<svg.*?</svg>", page, re.S)
    assert [len(line) for line in _polylines(loss_svg)] == [5]  # aux_loss all 0: no clustering curve
    segments = _polylines(oa_svg)
    assert [len(line) for line in segments] == [2, 1]
    (x0, y0), (x1, y1) = segments[0]
    (x4, y4), = segments[1]
    assert y0 > y1 > y4 and y0 - y1 == pytest.approx(y1 - y4, abs=0.2)  # 0, 0.5, 1 equally spaced
    assert x1 - x0 == pytest.approx((x4 - x0) / 4, abs=0.2)
    assert "No accuracy assessment" in page


def test_write_report_replaces_atomically_and_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "report.html"
    report.write_report(str(path), "<p>first</p>")
    assert path.read_text(encoding="utf-8") == "<p>first</p>"
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())

    def fail(*_):
        raise OSError("disk full")

    monkeypatch.setattr(paths.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        report.write_report(str(path), "<p>second</p>")
    assert path.read_text(encoding="utf-8") == "<p>first</p>"
    assert os.listdir(tmp_path) == ["report.html"]  # no temporary file left behind


def test_writing_into_a_missing_or_read_only_folder_names_the_problem(tmp_path, monkeypatch):
    with pytest.raises(OSError, match="does not exist; create it first"):
        report.write_report(str(tmp_path / "missing" / "r.html"), "x")
    with pytest.raises(OSError, match="it is a folder"):
        report.write_accuracy_tables({"classes": [], "confusion_matrix": []}, csv_path=str(tmp_path))

    def refuse(**_):  # what a read-only folder does (the tests may run as root, who may write anywhere)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(paths.tempfile, "mkstemp", refuse)
    with pytest.raises(OSError, match="Permission denied in .*; choose a writable folder"):
        report.write_accuracy_tables({}, json_path=str(tmp_path / "r.json"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_ticks_are_round_numbers_covering_the_range():
    assert report._ticks(0.0, 1.0) == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ticks = report._ticks(1.0, 200.0, 8)
    assert ticks[0] >= 1 and ticks[-1] <= 200 and all(t % 25 == 0 for t in ticks)
    assert all(math.isclose(b - a, ticks[1] - ticks[0]) for a, b in zip(ticks, ticks[1:]))
