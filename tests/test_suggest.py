"""engine.suggest: where to draw the next ROIs."""

import os

import numpy as np
import pytest
from osgeo import ogr

from engine.suggest import select_suggestions


def two_class_scene(rows=40, cols=60):
    """Class 0 on the left, class 1 on the right; the model is unsure near the border (col 30) and in a
    doubtful patch at rows 5-8, cols 5-8 of class 0."""
    cols_index = np.arange(cols)[None].repeat(rows, 0)
    p1 = 1 / (1 + np.exp(-(cols_index - 30) / 3.0))
    p1[5:9, 5:9] = 0.45
    return np.stack([1 - p1, p1]).astype(np.float32)


def test_suggestions_go_where_the_margin_is_small_spread_out_and_over_the_classes():
    probabilities = two_class_scene()
    valid = np.ones(probabilities.shape[1:], bool)
    picks = select_suggestions(probabilities, valid, 6, min_distance=5)
    assert len(picks) == 6
    rows, cols = np.array([p.row for p in picks]), np.array([p.col for p in picks])
    assert ((cols >= 26) & (cols <= 34) | ((rows >= 5) & (rows <= 8) & (cols >= 5) & (cols <= 8))).all()
    distances = np.hypot(rows[:, None] - rows[None], cols[:, None] - cols[None]) + 99 * np.eye(6)
    assert distances.min() >= 5                                             # spread out
    assert {p.predicted for p in picks} == {0, 1}                           # both classes get some
    assert all(p.score == pytest.approx(1 - (p.p_first - p.p_second) + 0.25 * p.border) for p in picks)
    assert "undecided between" in picks[0].reason(["left", "right"])


def test_labelled_pixels_and_non_candidates_are_kept_away_from():
    probabilities = two_class_scene()
    valid = np.ones(probabilities.shape[1:], bool)
    labelled = np.zeros(valid.shape, bool)
    labelled[:, 28:33] = True                                               # ROIs along the border already
    picks = select_suggestions(probabilities, valid, 4, exclude=labelled, min_distance=6)
    assert all(abs(p.col - 30) >= 3 for p in picks)                         # half the distance from the ROIs
    assert any(5 <= p.row <= 8 and 5 <= p.col <= 8 for p in picks)           # then the doubtful patch
    pool = np.zeros(valid.shape, bool)
    pool[30:, :] = True
    assert all(p.row >= 30 for p in select_suggestions(probabilities, valid, 4, candidates=pool, min_distance=3))
    with pytest.raises(ValueError, match="at least one"):
        select_suggestions(probabilities, valid, 0)


def test_the_cli_writes_points_at_pixel_centres_from_a_trained_model(shared_data, tmp_path, capsys):
    from engine.cli import main

    folder = os.path.join(shared_data, "salinas_a")
    raster, labels = os.path.join(folder, "salinas_a.tif"), os.path.join(folder, "salinas_a_labels.tif")
    model = str(tmp_path / "svm.pt")
    assert main(["train", "--raster", raster, "--labels", labels, "--model", "svm", "--out", model]) == 0
    out = str(tmp_path / "suggestions.gpkg")
    assert main(["suggest", "--model", model, "--raster", raster, "--labels", labels, "--count", "8",
                 "--min-distance", "4", "--out", out]) == 0
    assert "undecided between" in capsys.readouterr().out
    source = ogr.Open(out)
    layer = source.GetLayer(0)
    assert layer.GetFeatureCount() == 8
    fields = [layer.GetLayerDefn().GetFieldDefn(i).GetName() for i in range(layer.GetLayerDefn().GetFieldCount())]
    assert {"predicted", "second", "probability", "reason", "class_id"} <= set(fields)
    from osgeo import gdal

    transform = gdal.Open(raster).GetGeoTransform()
    for feature in layer:
        x, y = feature.GetGeometryRef().GetX(), feature.GetGeometryRef().GetY()
        assert x == pytest.approx(transform[0] + (feature["col"] + 0.5) * transform[1])
        assert y == pytest.approx(transform[3] + (feature["row"] + 0.5) * transform[5])
        assert feature["class_id"] is None and feature["probability"] >= feature["second_probability"]
    assert main(["suggest", "--model", model, "--raster", raster, "--out", str(tmp_path / "s.shp")]) == 2
