"""Trainer (engine/training/train.py): whole-image training, best-epoch selection, early stop, cancel, windows.

Most tests use tiny per-pixel models defined here (a 1x1 convolution), so a run takes milliseconds and
the expected behaviour is exact; one smoke test trains the real models for two epochs.
"""

import math
import os
import subprocess
import sys
from typing import List, Optional

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.training import train as train_module
from engine.data.splits import Split, fixed_count_split
from engine.models.base import HSIClassifier, ModelOutput
from engine.precision import Precision
from engine.training.train import (TrainConfig, TrainingCancelled, Window, estimate_training_bytes_per_pixel,
                                   seed_everything, train_model)


@pytest.fixture(autouse=True)
def untimed(request, monkeypatch):
    """The tests below count the model's forwards; the timed step of the epoch estimate would add two
    (its own test, test_the_epoch_time_is_estimated_before_training, keeps it)."""
    if "estimated" not in request.node.name:
        monkeypatch.setattr(train_module, "estimate_epoch_seconds", lambda *args, **kwargs: 1.0)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class PixelNet(HSIClassifier):
    """A 1x1 convolution: classifies each pixel from its own spectrum."""

    name = "pixelnet"

    def __init__(self, in_bands: int, n_classes: int) -> None:
        super().__init__({"in_bands": in_bands, "n_classes": n_classes})
        self.conv = nn.Conv2d(in_bands, n_classes, 1)

    def forward(self, x, guide=None, valid=None):
        return ModelOutput(self.conv(x))


class GuidedNet(PixelNet):
    """PixelNet with a guide (training mask), an auxiliary loss and a buffer that counts training forwards,
    like CSSMamba's EMA prototypes change in a training forward. Records what each forward received."""

    name = "guidednet"

    def __init__(self, in_bands: int, n_classes: int) -> None:
        super().__init__(in_bands, n_classes)
        self.register_buffer("train_forwards", torch.zeros((), dtype=torch.int64))
        self.calls: List[tuple] = []
        self.masks: List[Optional[torch.Tensor]] = []

    def make_guide(self, raw, train_labels, valid):
        self.guide_source = train_labels.copy()
        return torch.from_numpy(np.stack([train_labels + 1, valid.astype(np.int64)]))

    def forward(self, x, guide=None, valid=None):
        self.calls.append((self.training, tuple(x.shape[2:]), None if guide is None else tuple(guide.shape)))
        self.masks.append(valid)
        if self.training:
            assert guide is not None and guide.shape[2:] == x.shape[2:] and guide.dtype == torch.int64
            if valid is not None:                     # make_guide's second map is the raster's mask
                assert torch.equal(valid, guide[:, 1].bool())
            self.train_forwards += 1
        return ModelOutput(self.conv(x), aux_loss=0.01 * self.conv.weight.square().sum())


def easy_scene(rows: int = 24, cols: int = 24, bands: int = 4, seed: int = 0):
    """Three classes in vertical stripes with well separated spectra: (image, raw, valid, labels)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(cols) * 3 // cols, rows).reshape(cols, rows).T.astype(np.int64)
    centres = np.array([[0.1, 0.9, 0.2, 0.5], [0.8, 0.2, 0.6, 0.1], [0.4, 0.5, 0.9, 0.9]])[:, :bands]
    image = centres[labels].transpose(2, 0, 1) + rng.normal(0, 0.02, (bands, rows, cols))
    image = image.astype(np.float32)
    return image, image * 1000, np.ones((rows, cols), bool), labels


def easy_split(labels, seed: int = 0, train: int = 5, val: int = 5) -> Split:
    return fixed_count_split(labels, seed, train_per_class=train, val_per_class=val)


def scripted_validation(monkeypatch, values):
    """Make the epochs' val OA follow ``values`` (1 per epoch) so selection rules can be tested exactly."""
    sequence = iter(values)
    monkeypatch.setattr(train_module, "_score", lambda *args, **kwargs: next(sequence))


def fast(**kwargs) -> TrainConfig:
    """Few epochs, a high rate for the 1x1 models, one thread (the test machine's cores are shared)."""
    return TrainConfig(**{"epochs": 30, "lr": 0.05, "device": "cpu", "threads": 1, **kwargs})


@pytest.mark.parametrize("augment", [False, True])
def test_every_forward_gets_the_raster_s_valid_mask_cropped_and_turned_like_the_image(augment):
    """Issue 13, lead 5: the model learns nodata from the mask, not from all-zero values (a dark valid pixel
    is all zero after the stretch too); GuidedNet checks each training mask against its guide's mask map."""
    image, raw, valid, labels = easy_scene()
    valid[:4, :10] = False
    image[:, ~valid] = 0.0
    image[:, 20, 20] = 0.0                                # valid, all zero
    labels[~valid] = -1
    model = GuidedNet(4, 3)
    train_model(model, image, raw, valid, easy_split(labels), fast(epochs=4, augment=augment))
    assert model.masks and all(m is not None and m.dtype == torch.bool for m in model.masks)
    assert any(not bool(m.all()) for m in model.masks)
    assert all(bool(m[0, 20, 20]) for m in model.masks if m.shape[1:] == (24, 24) and not augment)


def test_loss_decreases_and_validation_reaches_full_accuracy():
    image, raw, valid, labels = easy_scene()
    split = easy_split(labels)
    seed_everything(0)
    model = PixelNet(4, 3)
    result = train_model(model, image, raw, valid, split, fast())
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.5 * losses[0]
    assert result.best_val_oa == 1.0
    assert result.history[result.best_epoch - 1]["val_oa"] == 1.0
    assert result.device == "cpu" and result.threads == 1 and result.seconds > 0
    assert result.windows == [Window(0, 24, 0, 24)]
    # the model is returned holding the best state, on the CPU, in eval mode; the state is a CPU copy
    assert not model.training
    for key, value in model.state_dict().items():
        assert value.device.type == "cpu" and torch.equal(value, result.state_dict[key])
        assert value.data_ptr() != result.state_dict[key].data_ptr()


def test_guide_is_built_from_valid_training_pixels_and_aux_loss_is_recorded():
    image, raw, valid, labels = easy_scene()
    valid[0, :] = False
    split = easy_split(labels)
    split.train[0, :3] = 0                             # training labels under nodata must not reach the model
    model = GuidedNet(4, 3)
    result = train_model(model, image, raw, valid, split, fast(epochs=3))
    assert (model.guide_source[0] == -1).all()
    assert np.array_equal(model.guide_source[1:], split.train[1:])
    assert all(h["aux_loss"] is not None and h["aux_loss"] > 0 for h in result.history)
    training_calls = [c for c in model.calls if c[0]]
    assert training_calls[-1] == (True, (24, 24), (1, 2, 24, 24))
    assert all(c[2] is None for c in model.calls if not c[0])      # validation, like prediction, has no guide


def test_best_epoch_is_kept_and_the_later_epoch_wins_ties(monkeypatch):
    image, raw, valid, labels = easy_scene()
    scripted_validation(monkeypatch, [0.5, 0.8, 0.8, 0.6])
    snapshots = []
    model = PixelNet(4, 3)
    result = train_model(model, image, raw, valid, easy_split(labels), fast(epochs=4),
                         progress=lambda f, t="": snapshots.append({k: v.clone() for k, v in model.state_dict().items()}))
    assert result.best_epoch == 3 and result.best_val_oa == 0.8
    assert [h["val_oa"] for h in result.history] == [0.5, 0.8, 0.8, 0.6]
    epoch_states = snapshots[1:]                       # the first call reports the preparation
    assert len(epoch_states) == 4
    for key, value in result.state_dict.items():
        assert torch.equal(value, epoch_states[2][key])
        assert not torch.equal(value, epoch_states[3][key])


class SnapshotNet(GuidedNet):
    """GuidedNet that keeps a copy of its state at every forward. The first is the memory probe's;
    after it, forward n + 1 sees the weights of n optimizer steps, and the buffer before it."""

    def __init__(self, in_bands: int, n_classes: int) -> None:
        super().__init__(in_bands, n_classes)
        self.states: List[dict] = []

    def forward(self, x, guide=None, valid=None):
        self.states.append({k: v.detach().clone() for k, v in self.state_dict().items()})
        return super().forward(x, guide, valid)


def test_whole_scene_scores_each_epoch_from_the_next_forward_as_an_eval_pass_would():
    image, raw, valid, labels = easy_scene()
    split = easy_split(labels)
    split.validation[split.validation == 2] = 1                  # a wrong reference makes the score peak mid-run
    seed_everything(0)
    model = SnapshotNet(4, 3)
    result = train_model(model, image, raw, valid, split, fast(epochs=12, lr=0.02))
    assert [c[0] for c in model.calls].count(False) == 1          # one eval pass: the last epoch's
    assert len(result.history) == 12 and 1 < result.best_epoch < 12   # so the checks below bite
    # epoch k's score is that of the state after k steps, scored by an eval forward without a guide
    states = model.states[2:]                                     # after 1, 2, ... 12 steps
    mask = split.validation >= 0
    for epoch, state in enumerate(states, start=1):
        model.load_state_dict(state)
        with torch.no_grad():
            predicted = model(torch.from_numpy(image)[None]).logits[0].argmax(0).numpy()
        assert result.history[epoch - 1]["val_oa"] == float((predicted[mask] == split.validation[mask]).mean())
    # the kept state is the best epoch's, buffer included (before the forward that scored it)
    assert int(result.state_dict["train_forwards"]) == result.best_epoch
    for key, value in result.state_dict.items():
        assert torch.equal(value, states[result.best_epoch - 1][key])


def test_early_stopping_after_patience_epochs_without_a_higher_val_oa(monkeypatch):
    image, raw, valid, labels = easy_scene()
    # a tie (epoch 3) updates the kept state but is no improvement: 3 epochs without one end the run
    scripted_validation(monkeypatch, [0.5, 0.7, 0.7, 0.6, 0.6, 0.9, 0.9])
    result = train_model(PixelNet(4, 3), image, raw, valid, easy_split(labels), fast(epochs=7, patience=3))
    assert len(result.history) == 5
    assert result.best_epoch == 3 and result.best_val_oa == 0.7


def test_without_validation_pixels_the_last_epoch_is_kept():
    image, raw, valid, labels = easy_scene()
    split = easy_split(labels)
    split.validation[:] = -1
    model = PixelNet(4, 3)
    result = train_model(model, image, raw, valid, split, fast(epochs=4, patience=1))
    assert len(result.history) == 4 and result.best_epoch == 4 and math.isnan(result.best_val_oa)


def test_progress_is_reported_every_epoch_and_ends_at_one():
    image, raw, valid, labels = easy_scene()
    calls = []
    train_model(PixelNet(4, 3), image, raw, valid, easy_split(labels), fast(epochs=5),
                progress=lambda fraction, text="": calls.append((fraction, text)))
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    epoch_calls = [t for _, t in calls if t.startswith("epoch")]
    assert len(epoch_calls) == 5 and "val OA" in epoch_calls[-1] and "epoch 5/5" in epoch_calls[-1]


def test_cancel_raises_and_returns_nothing():
    image, raw, valid, labels = easy_scene()
    polls = []

    def cancelled():
        polls.append(1)
        return len(polls) > 6                           # a few epochs in

    progress = []
    with pytest.raises(TrainingCancelled):
        train_model(PixelNet(4, 3), image, raw, valid, easy_split(labels), fast(epochs=50), cancelled=cancelled,
                    progress=lambda f, t="": progress.append(f))
    assert len(polls) == 7 and progress[-1] < 0.2     # polled at least once per epoch, stopped at once


def test_cancel_is_polled_between_windows_inside_an_epoch(monkeypatch):
    image, raw, valid, labels = easy_scene(40, 40)
    monkeypatch.setattr(train_module, "estimate_training_bytes_per_pixel", lambda *a, **k: 1000.0)
    polls = []
    model = GuidedNet(4, 3)
    with pytest.raises(TrainingCancelled, match="in epoch 1"):
        train_model(model, image, raw, valid, easy_split(labels), fast(epochs=3, memory_budget_mb=1.0),
                    cancelled=lambda: polls.append(1) or len(polls) > 3)   # 2 polls before the loop, then windows
    assert [c[0] for c in model.calls] == [True]       # one window trained, cancelled before the second


def test_windows_give_one_step_per_window_with_training_pixels(monkeypatch):
    # 1000 B/px and 1 MiB allow 1048 px: a 40 x 40 scene splits into MambaHSI's halves of 25 x 40 px.
    monkeypatch.setattr(train_module, "estimate_training_bytes_per_pixel", lambda *a, **k: 1000.0)
    image, raw, valid, labels = easy_scene(40, 40)
    model = GuidedNet(4, 3)
    result = train_model(model, image, raw, valid, easy_split(labels), fast(epochs=3, memory_budget_mb=1.0))
    assert result.windows == [Window(0, 25, 0, 40), Window(15, 40, 0, 40)]
    training = [c for c in model.calls if c[0]]
    assert [c[1] for c in training] == [(25, 40), (25, 40)] * 3
    assert [c[2] for c in training] == [(1, 2, 25, 40)] * 6          # the guide is cropped like the labels
    assert all(h["steps"] == 2 for h in result.history)
    # validation ran tiled (through engine.inference.tiling.predict_array), never on the whole 40 x 40 image
    assert all(c[1] != (40, 40) for c in model.calls if not c[0])
    assert result.best_val_oa > 0.9


def test_windows_without_training_pixels_are_skipped(monkeypatch):
    # 1000 B/px and 0.65 MiB allow 681 px: a 40 x 40 scene splits into 2 x 2 quadrants of 25 x 25 px.
    monkeypatch.setattr(train_module, "estimate_training_bytes_per_pixel", lambda *a, **k: 1000.0)
    image, raw, valid, labels = easy_scene(40, 40)
    split = easy_split(labels)
    split.train[:] = -1
    split.train[10:15] = labels[10:15]                 # rows 10-14 lie in the top quadrants only
    model = GuidedNet(4, 3)
    result = train_model(model, image, raw, valid, split, fast(epochs=4, memory_budget_mb=0.65))
    assert result.windows == [Window(0, 25, 0, 25), Window(0, 25, 15, 40), Window(15, 40, 0, 25),
                              Window(15, 40, 15, 40)]
    assert all(h["steps"] == 2 for h in result.history)
    assert sum(c[0] for c in model.calls) == 4 * 2
    # the counting buffer of the best epoch's state shows the memory probe left the buffers untouched
    assert int(result.state_dict["train_forwards"]) == result.best_epoch * 2


def test_memory_probe_measures_a_positive_footprint_and_restores_buffers():
    image, raw, valid, labels = easy_scene()
    model = GuidedNet(4, 3).train()
    x = torch.from_numpy(image)[None]
    guide = model.make_guide(raw, labels, valid)[None]
    small = estimate_training_bytes_per_pixel(model, x, guide, Precision("fp32"))
    assert small > 4 * 4                               # at least the saved input (4 float32 bands per pixel)
    assert int(model.train_forwards) == 0
    assert all(p.grad is None for p in model.parameters())


def test_a_small_memory_budget_trains_on_windows_with_the_real_probe():
    image, raw, valid, labels = easy_scene(40, 40)
    model = PixelNet(4, 3)
    per_pixel = estimate_training_bytes_per_pixel(model.train(), torch.from_numpy(image)[None], None, Precision("fp32"))
    fixed = 4 * sum(p.numel() * 4 for p in model.parameters())
    budget_mb = (fixed + 700 * per_pixel) / 2**20       # room for 700 of the 1600 px
    result = train_model(model, image, raw, valid, easy_split(labels), fast(epochs=2, memory_budget_mb=budget_mb))
    assert len(result.windows) > 1 and all(w.pixels <= 700 for w in result.windows)


def test_the_same_seed_gives_bit_identical_weights_on_cpu():
    image, raw, valid, labels = easy_scene()
    states = []
    for _ in range(2):
        seed_everything(7)
        model = GuidedNet(4, 3)
        states.append(train_model(model, image, raw, valid, easy_split(labels), fast(epochs=5, seed=7)).state_dict)
    seed_everything(8)
    other = GuidedNet(4, 3)
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not torch.equal(states[0]["conv.weight"], other.conv.weight)


def test_thread_count_and_deterministic_mode_are_restored():
    image, raw, valid, labels = easy_scene()
    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    threads = 2 if before[0] == 1 else 1
    result = train_model(PixelNet(4, 3), image, raw, valid, easy_split(labels), fast(epochs=1, threads=threads))
    assert result.threads == threads
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before


@pytest.mark.parametrize("change, message", [
    (lambda s: s.update(raw=s["raw"][:2]), "raw spectra"),
    (lambda s: s.update(valid=s["valid"][:5]), "valid mask"),
    (lambda s: s.update(image=np.where(s["valid"], np.nan, 0).astype(np.float32)[None].repeat(4, 0)), "NaN"),
    (lambda s: s["split"].train.fill(-1), "no training pixels"),
    (lambda s: s.update(model=PixelNet(4, 2)), "n_classes=3"),
])
def test_bad_inputs_are_refused_with_a_clear_message(change, message):
    image, raw, valid, labels = easy_scene()
    setup = {"image": image, "raw": raw, "valid": valid, "split": easy_split(labels), "model": PixelNet(4, 3)}
    change(setup)
    with pytest.raises(ValueError, match=message):
        train_model(setup["model"], setup["image"], setup["raw"], setup["valid"], setup["split"], fast(epochs=1))


class DivergingNet(PixelNet):
    def forward(self, x, guide=None, valid=None):
        return ModelOutput(self.conv(x), aux_loss=self.conv.weight.sum() * float("nan"))


def test_a_diverging_loss_stops_training_with_advice():
    image, raw, valid, labels = easy_scene()
    with pytest.raises(ValueError, match="diverged.*lower the learning rate"):
        train_model(DivergingNet(4, 3), image, raw, valid, easy_split(labels), fast(epochs=2))


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_the_first_epoch_s_loss_is_the_cross_entropy_with_the_configured_label_smoothing(smoothing):
    """Issue 13, lead 7: label smoothing reaches the training loss (the loss logged before the first step)."""
    image, raw, valid, labels = easy_scene()
    split = easy_split(labels)
    torch.manual_seed(0)
    model = PixelNet(4, 3)
    with torch.no_grad():
        logits = model(torch.from_numpy(image)[None]).logits
        target = torch.from_numpy(split.train)[None]
        expected = F.cross_entropy(logits, target, ignore_index=-1, label_smoothing=smoothing).item()
    result = train_model(model, image, raw, valid, split, fast(epochs=1, label_smoothing=smoothing))
    assert result.history[0]["loss"] == pytest.approx(expected, rel=1e-5)


def test_a_class_without_training_pixels_is_warned_about(caplog):
    image, raw, valid, labels = easy_scene()
    with caplog.at_level("INFO", logger="engine.training.train"):
        train_model(PixelNet(4, 4), image, raw, valid, easy_split(labels),
                    TrainConfig(epochs=1, lr=0.05, device="cpu", class_ids=(2, 5, 7, 9)))
    # the user's class ids, not the model's 0-based indices
    assert "no training pixels for class 9" in caplog.text
    assert "training pixels per class: class 2: " in caplog.text and "class 7: " in caplog.text


@pytest.mark.parametrize("kwargs", [{"epochs": 0}, {"lr": 0.0}, {"device": "gpu"}, {"patience": 0},
                                    {"memory_budget_mb": -1}, {"threads": 0}, {"label_smoothing": 1.0},
                                    {"label_smoothing": -0.1}])
def test_bad_configs_are_refused(kwargs):
    with pytest.raises(ValueError):
        TrainConfig(**kwargs)


def test_cuda_without_a_gpu_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    image, raw, valid, labels = easy_scene()
    with pytest.raises(ValueError, match="no CUDA GPU"):
        train_model(PixelNet(4, 3), image, raw, valid, easy_split(labels), fast(device="cuda"))


def test_trainer_and_model_file_import_without_gdal():
    """They run on GPU machines without GDAL: importing them (and the tiled validation) must not need osgeo."""
    code = ("import sys; sys.modules['osgeo'] = None; "
            "import engine.training.train, engine.modelfile, engine.inference.tiling, engine.models.registry")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# --- the real models -------------------------------------------------------------------------------


@pytest.fixture
def one_thread():
    """Tiny ops on a shared 2-core machine run fastest on one thread; the setting is restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", ["mambahsi", "cssmamba"])
def test_real_models_train_save_and_load(name, tmp_path, one_thread):
    """Two epochs of the real model (narrow, for speed), then a model-file round trip: the loaded model,
    CSSMamba's EMA prototypes included, predicts exactly what the trained one does."""
    from engine.modelfile import load_model, save_model
    from engine.models.registry import build_model

    image, raw, valid, labels = easy_scene(16, 16, bands=4)
    seed_everything(0)
    model = build_model(name, in_bands=4, n_classes=3, dim=16)
    result = train_model(model, image, raw, valid, easy_split(labels, train=4, val=3), fast(epochs=2, lr=3e-4))
    assert len(result.history) == 2 and all(np.isfinite(h["loss"]) for h in result.history)
    assert result.backend in ("cpp", "torch")
    assert set(result.state_dict) == set(model.state_dict())
    if name == "cssmamba":
        assert result.history[0]["aux_loss"] is not None
        prototypes = [v for k, v in result.state_dict.items() if k.endswith("prototypes")]
        assert prototypes and all(p.abs().sum() > 0 for p in prototypes)    # the EMA ran

    metadata = {"bands": {"indices": [1, 2, 3, 4], "names": ["a", "b", "c", "d"], "wavelengths": None,
                          "nodata": [None] * 4},
                "normalisation": {"low": [0.0] * 4, "high": [1.0] * 4},
                "classes": {"ids": [1, 2, 3], "names": ["x", "y", "z"], "colors": [[0, 0, 0]] * 3},
                "provenance": {"best_epoch": result.best_epoch}}
    path = str(tmp_path / f"{name}.pt")
    save_model(path, model, metadata)
    loaded, _ = load_model(path)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x = torch.from_numpy(image)[None]
    with torch.no_grad():
        assert torch.equal(loaded(x).logits, model(x).logits)


def test_the_epoch_time_is_estimated_before_training_and_compared_after(caplog):
    image, raw, valid, labels = easy_scene()
    caplog.set_level("INFO", logger="engine.training.train")
    model = PixelNet(4, 3)
    result = train_model(model, image, raw, valid, easy_split(labels), fast(epochs=3))
    assert result.estimated_epoch_seconds > 0
    lines = caplog.text.splitlines()
    estimate = next(i for i, line in enumerate(lines) if "estimated time:" in line and "for 3 epochs" in line)
    first = next(i for i, line in enumerate(lines) if "first epoch took" in line)
    assert estimate < first                                        # said before epoch 1 ended
    assert "time per epoch: estimated" in caplog.text and "measured" in caplog.text


def test_orientations_are_undone_exactly_and_augmented_training_runs():
    """orient/unorient are inverse for the 8 orientations, also for non-square windows, and a model
    trained with augment=True keeps the best state as usual (on a generated scene, 3 epochs)."""
    from engine.training.train import ORIENTATIONS, orient, unorient

    t = torch.arange(2 * 3 * 5, dtype=torch.float32).reshape(1, 2, 3, 5)
    seen = set()
    for k in range(ORIENTATIONS):
        turned = orient(t, k)
        assert torch.equal(unorient(turned, k), t)
        seen.add(tuple(turned.flatten().tolist()))
    assert len(seen) == ORIENTATIONS                       # eight different views
    image, raw, valid, labels = easy_scene(rows=24, cols=30)
    model = GuidedNet(4, 3)
    result = train_model(model, image, raw, valid, easy_split(labels), fast(epochs=12, augment=True))
    training = {shape for is_training, shape, _ in model.calls if is_training}
    assert training == {(24, 30), (30, 24)}                # turned windows, the guide turned alike (GuidedNet)
    assert {shape for is_training, shape, _ in model.calls if not is_training} == {(24, 30)}   # validation as
    assert len([c for c in model.calls if not c[0]]) >= 12                                     # classification
    assert result.best_val_oa == 1.0
