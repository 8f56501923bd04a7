"""engine.compare: several models on one split, one report with tables, class maps and matrices."""

import os
import re

import pytest

from engine.cli import main
from engine.compare import compare_models
from engine.pipeline import SplitOptions


def test_compare_trains_every_model_on_the_same_split_and_writes_the_report(shared_data, tmp_path, capsys):
    folder = os.path.join(shared_data, "salinas_a")
    out = tmp_path / "compare"
    assert main(["compare", "--raster", os.path.join(folder, "salinas_a.tif"), "--labels",
                 os.path.join(folder, "salinas_a_labels.tif"), "--models", "rf,svm,mambahsi", "--epochs", "2",
                 "--threads", "1", "--split", "fixed", "--out-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert all(re.search(rf"^{m} +\d+\.\d\d", printed, re.M) for m in ("rf", "svm", "mambahsi"))
    assert sorted(p for p in os.listdir(out) if not p.endswith(".aux.xml")) == [
        "compare.html", "mambahsi.pt", "mambahsi_classes.tif", "rf.pt", "rf_classes.tif", "svm.pt",
        "svm_classes.tif"]
    page = (out / "compare.html").read_text(encoding="utf-8")
    assert page.count('<img alt="') == 3 and page.count("data:image/png;base64,") == 3
    assert page.count('class="confusion"') == 3 and "Lettuce_romaine_7wk" in page
    assert "fixed, seed 0: 180 training, 60 validation, 5108 test pixels" in page


def test_compare_refuses_a_single_or_unknown_model_before_any_work(shared_data, tmp_path):
    folder = os.path.join(shared_data, "salinas_a")
    raster, labels = os.path.join(folder, "salinas_a.tif"), os.path.join(folder, "salinas_a_labels.tif")
    with pytest.raises(ValueError, match="at least two different models"):
        compare_models(raster, str(tmp_path / "one"), models=["svm"], labels=labels)
    with pytest.raises(ValueError, match="at least two different models"):
        compare_models(raster, str(tmp_path / "twice"), models=["svm", "svm"], labels=labels)
    with pytest.raises(ValueError, match="cannot compare m3amba"):
        compare_models(raster, str(tmp_path / "mm"), models=["svm", "m3amba"], labels=labels)
    assert not any((tmp_path / name).exists() for name in ("one", "twice", "mm"))


def test_a_cancel_keeps_the_finished_models_and_writes_no_report(shared_data, tmp_path):
    from engine.training.train import TrainingCancelled

    folder = os.path.join(shared_data, "salinas_a")
    calls = []

    def cancelled():
        calls.append(1)
        return os.path.exists(tmp_path / "svm_classes.tif")      # stop once the first model is done

    with pytest.raises(TrainingCancelled):
        compare_models(os.path.join(folder, "salinas_a.tif"), str(tmp_path), models=["svm", "mambahsi"],
                       labels=os.path.join(folder, "salinas_a_labels.tif"), epochs=2, threads=1,
                       split=SplitOptions(mode="fixed"), cancelled=cancelled)
    assert (tmp_path / "svm.pt").exists() and not (tmp_path / "mambahsi.pt").exists()
    assert not (tmp_path / "compare.html").exists()
