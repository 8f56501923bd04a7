"""engine.models.classical: random forest and SVM as HSIClassifiers stored as tensors.

Their probabilities must be scikit-learn's (the forest's ``predict_proba``; the SVM's libsvm Platt
sigmoids and pairwise coupling), the model file must load them without pickle, and the CLI runs them
through the same train / classify path as the deep models.
"""

import os

import numpy as np
import pytest
import torch

from engine.models.classical import RandomForest
from engine.models.registry import build_model


def blobs(classes: int, bands: int = 12, per_class: int = 40, seed: int = 0, spread: float = 0.9):
    """Gaussian classes around fixed centres (the same for every seed); ``seed`` draws the pixels."""
    centres = np.random.default_rng(100).normal(0, 1.5, (classes, bands))
    rng = np.random.default_rng(seed)
    x = np.concatenate([c + rng.normal(0, spread, (per_class, bands)) for c in centres]).astype(np.float32)
    return x, np.repeat(np.arange(classes), per_class), centres


def as_image(x: np.ndarray) -> torch.Tensor:
    """(N, bands) spectra as a (1, bands, 1, N) image."""
    return torch.from_numpy(np.ascontiguousarray(x.T[:, None, :]))[None]


def sklearn_reference(name, settings, x, y, seed):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    scaler = StandardScaler().fit(x)
    if name == "rf":
        model = RandomForestClassifier(n_estimators=40, n_jobs=1, random_state=seed, **settings)
    else:
        model = SVC(kernel="rbf", probability=True, random_state=seed, **settings)
    return model.fit(scaler.transform(x), y), scaler


@pytest.mark.parametrize("name, classes", [("rf", 4), ("svm", 4), ("svm", 2)])
def test_probabilities_are_scikit_learns(name, classes):
    x, y, centres = blobs(classes)
    x_val, y_val, _ = blobs(classes, seed=1)
    model = build_model(name, 12, classes, **({"trees": 40} if name == "rf" else {}))
    info = model.fit_pixels(x, y, x_val, y_val, seed=3)
    assert info["validation_oa"] > 0.8 and set(info["settings"]) <= set(model.config)
    test = (centres[np.random.default_rng(2).integers(0, classes, 300)]
            + np.random.default_rng(3).normal(0, 1.3, (300, 12))).astype(np.float32)
    ours = model(as_image(test)).logits.softmax(1)[0, :, 0].T.numpy()
    reference, scaler = sklearn_reference(name, info["settings"], x, y, seed=3)
    assert np.abs(ours - reference.predict_proba(scaler.transform(test))).max() < 1e-5


def test_the_model_file_stores_tensors_and_loads_without_pickle(tmp_path):
    from engine.modelfile import load_model, save_model

    x, y, _ = blobs(3)
    for name in ("rf", "svm"):
        model = build_model(name, 12, 3, **({"trees": 20} if name == "rf" else {}))
        model.fit_pixels(x, y, x[::4], y[::4])
        path = str(tmp_path / f"{name}.pt")
        metadata = {"format_version": 1, "model": {"name": name, "config": dict(model.config)},
                    "bands": {"indices": list(range(1, 13)), "names": [f"b{i}" for i in range(12)],
                              "wavelengths": None, "nodata": [None] * 12, "file_count": 12},
                    "normalisation": {"low": [0.0] * 12, "high": [1.0] * 12},
                    "classes": {"ids": [1, 2, 3], "names": ["a", "b", "c"], "colors": [[0, 0, 0]] * 3},
                    "provenance": {}}
        save_model(path, model, metadata)
        stored = torch.load(path, weights_only=True)                    # plain tensors: no code runs
        assert all(isinstance(v, torch.Tensor) for v in stored["state_dict"].values())
        loaded, _ = load_model(path)
        image = as_image(x[:50])
        assert torch.equal(loaded(image).logits, model(image).logits)


def test_an_unfitted_model_and_deep_options_are_refused_with_the_fix(shared_data, tmp_path, capsys):
    from engine.cli import main

    with pytest.raises(ValueError, match="not fitted"):
        RandomForest(4, 2)(torch.zeros(1, 4, 2, 2))
    with pytest.raises(ValueError, match="unknown option.*dim"):
        build_model("svm", 4, 2, dim=32)
    folder = os.path.join(shared_data, "salinas_a")
    args = ["train", "--raster", os.path.join(folder, "salinas_a.tif"), "--labels",
            os.path.join(folder, "salinas_a_labels.tif"), "--model", "rf", "--out", str(tmp_path / "m.pt")]
    assert main(args + ["--epochs", "5", "--sampling", "whole", "--label-tile", "128"]) == 2
    error = capsys.readouterr().err
    assert "--epochs, --sampling, --label-tile are for the deep models" in error and not (tmp_path / "m.pt").exists()


def test_svm_trains_classifies_and_evaluates_salinas_a_from_the_cli(shared_data, tmp_path, capsys):
    from osgeo import gdal

    from engine.cli import main

    folder = os.path.join(shared_data, "salinas_a")
    model, classes, confidence = (str(tmp_path / name) for name in ("svm.pt", "classes.tif", "confidence.tif"))
    assert main(["train", "--raster", os.path.join(folder, "salinas_a.tif"), "--labels",
                 os.path.join(folder, "salinas_a_labels.tif"), "--model", "svm", "--out", model,
                 "--threads", "1"]) == 0
    out = capsys.readouterr().out
    oa = float(out.split("test        OA ")[1].split()[0])
    assert oa > 0.95 and "scikit-learn" in out
    assert main(["classify", "--model", model, "--raster", os.path.join(folder, "salinas_a.tif"), "--out", classes,
                 "--confidence", confidence]) == 0
    probability = gdal.Open(confidence).ReadAsArray()
    assert probability.max() <= 1 and probability[gdal.Open(classes).ReadAsArray() > 0].min() > 1 / 6


def test_fitting_polls_the_cancel_between_the_searched_settings():
    from engine.training.train import TrainConfig, TrainingCancelled, train_patches
    from engine.training.sampler import Patch, Window

    x, y, _ = blobs(3, per_class=20)
    image = np.ascontiguousarray(x.T.reshape(12, 6, 10))
    train = y.reshape(6, 10).astype(np.int64)
    patch = Patch(Window(0, 6, 0, 10), image, image, np.ones((6, 10), bool), train, train.copy(),
                  np.full((6, 10), -1))
    polls = []

    def cancelled():
        polls.append(1)
        return len(polls) > 2                  # let the start and the first setting through, then stop

    with pytest.raises(TrainingCancelled, match="fitting svm cancelled"):
        train_patches(build_model("svm", 12, 3), [patch], TrainConfig(), cancelled=cancelled)
    assert len(polls) == 3
