"""engine.roistats: class spectra, counts and Jeffries–Matusita separability of the ROIs, and its report."""

import json
import os

import numpy as np

from engine.roistats import jeffries_matusita, roi_statistics


def test_jm_is_zero_for_one_distribution_and_near_two_for_distant_ones():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, (200, 5)), rng.normal(0, 1, (200, 5))
    far = rng.normal(8, 1, (200, 5))
    x = np.concatenate([a, b, far])
    y = np.repeat([0, 1, 2], 200)
    jm, components = jeffries_matusita(x, y, 3)
    assert components == 5 and np.allclose(np.diag(jm), 0) and np.allclose(jm, jm.T)
    assert jm[0, 1] < 0.2 and jm[0, 2] > 1.99 and jm[1, 2] > 1.99


def test_jm_works_with_fewer_pixels_than_bands_and_skips_single_pixel_classes():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 1, (12, 200)), rng.normal(3, 1, (12, 200)), rng.normal(0, 1, (1, 200))])
    y = np.repeat([0, 1, 2], [12, 12, 1])
    jm, components = jeffries_matusita(x, y, 3)
    assert components == 10 and np.isfinite(jm[0, 1]) and jm[0, 1] > 1.9 and np.isnan(jm[0, 2])


def test_roi_statistics_of_the_enmap_rois_with_report(shared_data, tmp_path):
    from engine.report import roi_statistics_html

    folder = os.path.join(shared_data, "enmap_potsdam")
    stats = roi_statistics(os.path.join(folder, "enmap_potsdam_mosaic.tif"),
                           rois=os.path.join(folder, "enmap_potsdam_rois.gpkg"), class_field="class_id",
                           name_field="class_name")
    report = stats.as_dict()
    assert [c["pixels"] for c in report["classes"]] == [505, 953, 1694, 2070, 91, 359]   # the label raster's
    assert [c["name"] for c in report["classes"]][:2] == ["roof", "pavement"]
    assert len(report["wavelengths"]) == len(report["classes"][0]["mean"]) == 218
    jm = np.array(report["jeffries_matusita"], dtype=float)
    water = [c["name"] for c in report["classes"]].index("water")
    assert jm[water][np.arange(6) != water].min() > 1.9          # water stands apart from everything
    assert any("poorly separable" in w for w in report["warnings"])   # mixed urban classes at 30 m do not
    json.dumps(report)
    html = roi_statistics_html(report)
    assert "<svg" in html and "wavelength (nm)" in html and "Jeffries" in html and "pavement" in html


def test_the_cli_writes_the_report_and_names_small_classes(shared_data, tmp_path, capsys):
    from engine.cli import main

    folder = os.path.join(shared_data, "muufl_crop")
    out, data = tmp_path / "roistats.html", tmp_path / "roistats.json"
    assert main(["roistats", "--raster", os.path.join(folder, "muufl_hsi.tif"), "--labels",
                 os.path.join(folder, "muufl_labels.tif"), "--bands", "1-20", "--out", str(out),
                 "--json", str(data)]) == 0
    printed = capsys.readouterr().out
    assert "warning: classes 5 (road) and 8 (building)" in printed and out.is_file()
    report = json.loads(data.read_text())
    assert len(report["classes"][0]["mean"]) == 20 and report["jm_components"] == 10
    assert main(["roistats", "--raster", os.path.join(folder, "muufl_hsi.tif"), "--labels",
                 os.path.join(folder, "muufl_labels.tif"), "--out", os.path.join(folder, "muufl_hsi.tif")]) == 2
    assert "destroy the input" in capsys.readouterr().err
