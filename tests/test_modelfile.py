"""Model file (engine/modelfile.py): round trip, atomic writes, refusal of bad files, raster checks.

A tiny model with a persistent and a non-persistent buffer stands in for the real ones (the registry
builder is replaced by one that knows it); one test round-trips the real CSSMamba, EMA prototypes included.
"""

import os
import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from engine import modelfile
from engine.modelfile import FORMAT_VERSION, check_raster_matches, load_model, save_model
from engine.models.base import HSIClassifier, ModelOutput

REGISTRY_BUILD = modelfile._build                      # the real one, before the fixture replaces it


class BufferNet(HSIClassifier):
    """1x1 convolution plus a persistent buffer (like CSSMamba's EMA prototypes) and a scratch one."""

    name = "buffernet"

    def __init__(self, in_bands: int, n_classes: int, width: int = 2) -> None:
        super().__init__({"in_bands": in_bands, "n_classes": n_classes, "width": width})
        self.conv = nn.Conv2d(in_bands, n_classes, 1)
        self.register_buffer("prototypes", torch.zeros(n_classes, width))
        self.register_buffer("scratch", torch.zeros(3), persistent=False)

    def forward(self, x, guide=None, valid=None):
        return ModelOutput(self.conv(x))


def build_dummy(name, config):
    if name != "buffernet":
        raise ValueError(f"unknown model {name!r}; valid: buffernet")
    return BufferNet(**config)


@pytest.fixture(autouse=True)
def dummy_registry(monkeypatch):
    monkeypatch.setattr(modelfile, "_build", build_dummy)


def metadata_for(bands: int = 3, classes: int = 2, wavelengths=True) -> dict:
    return {
        "bands": {"indices": list(range(1, bands + 1)), "names": [f"band {i}" for i in range(1, bands + 1)],
                  "wavelengths": [450.0 + 10 * i for i in range(bands)] if wavelengths else None,
                  "nodata": [-32768.0] * bands},
        "normalisation": {"low": np.zeros(bands), "high": np.linspace(0.5, 0.9, bands)},   # numpy, as fit_stretch
        "classes": {"ids": [3, 7][:classes] + list(range(10, 10 + classes - 2)),
                    "names": [f"class {i}" for i in range(classes)], "colors": [[255, 0, 0]] * classes},
        "provenance": {"raster": "scene.tif", "labels": "labels.tif", "seed": 0, "epochs": 200, "best_epoch": 17,
                       "metrics": {"overall_accuracy": 0.9}, "software": {"engine": "0.1.0"}},
    }


def trained_model(bands: int = 3, classes: int = 2) -> BufferNet:
    torch.manual_seed(0)
    model = BufferNet(bands, classes)
    with torch.no_grad():
        model.prototypes.copy_(torch.randn(classes, 2))
        model.scratch.fill_(5.0)
    return model


@pytest.fixture
def saved(tmp_path):
    path = str(tmp_path / "model.pt")
    model = trained_model()
    save_model(path, model, metadata_for())
    return path, model


def test_round_trip_restores_weights_persistent_buffers_and_metadata(saved):
    path, model = saved
    loaded, metadata = load_model(path)
    assert isinstance(loaded, BufferNet) and not loaded.training
    assert loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    assert "scratch" not in torch.load(path, weights_only=True)["state_dict"]    # non-persistent stays out
    assert metadata["format_version"] == FORMAT_VERSION
    assert metadata["model"] == {"name": "buffernet", "config": {"in_bands": 3, "n_classes": 2, "width": 2}}
    assert metadata["normalisation"]["high"] == pytest.approx([0.5, 0.7, 0.9])
    assert metadata["provenance"]["best_epoch"] == 17
    x = torch.rand(1, 3, 4, 4)
    assert torch.equal(loaded(x).logits, model(x).logits)


def test_save_is_atomic_and_leaves_no_temporary_file(saved, tmp_path):
    path, model = saved
    before = open(path, "rb").read()
    bad = metadata_for()
    bad["classes"]["names"] = ["only one"]
    with pytest.raises(ValueError, match="classes.names"):
        save_model(path, model, bad)                    # refused before anything is written
    assert open(path, "rb").read() == before
    save_model(path, trained_model(), metadata_for())   # overwriting works
    assert os.listdir(tmp_path) == ["model.pt"]


def test_save_into_a_missing_folder_names_the_path(tmp_path):
    path = str(tmp_path / "missing" / "model.pt")
    with pytest.raises(ValueError, match="does not exist") as error:
        save_model(path, trained_model(), metadata_for())
    assert path in str(error.value)


def test_save_into_an_unwritable_folder_names_the_path(tmp_path, monkeypatch):
    path = str(tmp_path / "model.pt")
    monkeypatch.setattr(os, "access", lambda p, mode: False)   # tests run as root, where chmod cannot forbid
    with pytest.raises(ValueError, match="not writable") as error:
        save_model(path, trained_model(), metadata_for())
    assert path in str(error.value) and not os.path.exists(path)


def test_save_where_the_system_refuses_the_write_names_the_path():
    with pytest.raises(ValueError, match="cannot write the model file /proc/model.pt"):
        save_model("/proc/model.pt", trained_model(), metadata_for())


def test_metadata_that_is_not_json_is_refused(tmp_path):
    metadata = metadata_for()
    metadata["provenance"]["created"] = object()
    with pytest.raises(ValueError, match="JSON"):
        save_model(str(tmp_path / "m.pt"), trained_model(), metadata)


# --- bad files -------------------------------------------------------------------------------------


def assert_refused(path, reason=""):
    with pytest.raises(ValueError, match="is not a valid CSSMamba model file") as error:
        load_model(str(path))
    assert str(path) in str(error.value) and "retrain or re-download it" in str(error.value)
    assert reason in str(error.value)


def test_truncated_file_is_refused(saved, tmp_path):
    path, _ = saved
    data = open(path, "rb").read()
    for keep in (len(data) // 2, 100, 0):
        cut = tmp_path / f"cut{keep}.pt"
        cut.write_bytes(data[:keep])
        assert_refused(cut, "cannot be read")


def test_random_bytes_are_refused(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert_refused(path, "cannot be read")


class Payload:
    """A pickle that would create a marker file when unpickled by a code-executing loader."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("container", ["torch", "pickle"])
def test_a_pickle_that_runs_code_is_refused_without_running_it(tmp_path, container):
    marker = str(tmp_path / "pwned")
    path = tmp_path / "evil.pt"
    evil = {"format": "cssmamba-model", "metadata_json": "{}", "state_dict": Payload(marker)}
    if container == "torch":
        torch.save(evil, str(path))
    else:
        path.write_bytes(pickle.dumps(evil, protocol=2))
    assert_refused(path, "cannot be read")
    assert not os.path.exists(marker)


def tamper(path, out, change):
    """A deliberately edited file: ``change`` applied and the checksum recomputed, so that the checks behind
    the checksum are what refuses it (an unsigned edit is refused by the checksum, tested below)."""
    payload = torch.load(path, weights_only=True)
    change(payload)
    if isinstance(payload.get("metadata_json"), str) and isinstance(payload.get("state_dict"), dict) and all(
            isinstance(v, torch.Tensor) for v in payload["state_dict"].values()):
        payload["sha256"] = modelfile._digest(payload["metadata_json"], payload["state_dict"])
    torch.save(payload, str(out))
    return out


def test_an_edit_without_the_checksum_is_refused(saved, tmp_path):
    """torch does not check its zip CRCs: one changed weight or stretch value must not load silently."""
    path, _ = saved
    payload = torch.load(path, weights_only=True)
    name = next(k for k, v in payload["state_dict"].items() if v.is_floating_point() and v.numel())
    payload["state_dict"][name].view(-1)[0] += 1.0
    torch.save(payload, str(tmp_path / "edited.pt"))
    assert_refused(tmp_path / "edited.pt", "checksum does not match")


def test_files_from_before_the_checksum_still_load(saved, tmp_path):
    path, _ = saved
    payload = torch.load(path, weights_only=True)
    del payload["sha256"]
    torch.save(payload, str(tmp_path / "old.pt"))
    load_model(str(tmp_path / "old.pt"))


def test_nan_weights_are_refused_at_load_and_at_save(saved, tmp_path):
    path, _ = saved
    bad = tamper(path, tmp_path / "nan.pt", lambda p: next(
        v for v in p["state_dict"].values() if v.is_floating_point() and v.numel()).view(-1).__setitem__(0, float("nan")))
    assert_refused(bad, "NaN or Inf")
    model, metadata = load_model(str(path))
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("inf")
    with pytest.raises(ValueError, match="training diverged"):
        save_model(str(tmp_path / "diverged.pt"), model, metadata)
    assert not (tmp_path / "diverged.pt").exists()


def edit_metadata(edit):
    def change(payload):
        import json

        metadata = json.loads(payload["metadata_json"])
        edit(metadata)
        payload["metadata_json"] = json.dumps(metadata)
    return change


@pytest.mark.parametrize("change, reason", [
    (lambda p: p.pop("state_dict"), "entries"),
    (lambda p: p.update(extra=1), "entries"),
    (lambda p: p.update(format="something-else"), "marker"),
    (lambda p: p.update(metadata_json="{not json"), "unreadable metadata"),
    (lambda p: p.update(state_dict=[1, 2]), "not a mapping"),
    (edit_metadata(lambda m: m.pop("classes")), "'classes' must be an object"),
    (edit_metadata(lambda m: m["bands"].update(indices=[1, 2])), "bands.indices' has 2 entries"),
    (edit_metadata(lambda m: m["normalisation"].update(low=["a", "b", "c"])), "normalisation.low"),
    (edit_metadata(lambda m: m["model"]["config"].pop("n_classes")), "n_classes"),
    (edit_metadata(lambda m: m["model"].update(name="nosuchmodel")), "cannot rebuild model 'nosuchmodel'"),
    (edit_metadata(lambda m: m["model"]["config"].update(width=5)), "do not fit the architecture"),
    (lambda p: p["state_dict"].update({"conv.weight": torch.zeros(2, 3, 3, 3)}), "size mismatch"),
    (lambda p: p["state_dict"].pop("prototypes"), "Missing key"),
    (lambda p: p["state_dict"].update(unexpected=torch.zeros(1)), "Unexpected key"),
])
def test_tampered_files_are_refused(saved, tmp_path, change, reason):
    path, _ = saved
    assert_refused(tamper(path, tmp_path / "bad.pt", change), reason)


def test_a_file_from_a_newer_version_asks_for_an_update(saved, tmp_path):
    path, _ = saved
    newer = tamper(path, tmp_path / "newer.pt", edit_metadata(lambda m: m.update(format_version=FORMAT_VERSION + 1)))
    with pytest.raises(ValueError, match="newer version of the plugin.*update the plugin"):
        load_model(str(newer))


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_model(str(tmp_path / "nothing.pt"))


# --- raster checks ---------------------------------------------------------------------------------


def raster(bands, wavelengths=None):
    return SimpleNamespace(path="other.tif", bands=bands, wavelengths=wavelengths)


def test_a_raster_with_another_band_count_is_refused_listing_both():
    with pytest.raises(ValueError, match="other.tif has 5 bands but the model was trained on 3 bands"):
        check_raster_matches(metadata_for(bands=3), raster(5))


def test_wavelengths_that_differ_by_more_than_one_nm_are_listed():
    metadata = metadata_for(bands=8)                  # 450, 460, ..., 520 nm
    theirs = [450.0 + 10 * i for i in range(8)]
    theirs[2] += 0.9                                  # within tolerance
    theirs[3] += 5.0
    theirs[6] -= 1.5
    with pytest.raises(ValueError) as error:
        check_raster_matches(metadata, raster(8, theirs))
    message = str(error.value)
    assert "8 bands and the model 8" in message and "2 wavelengths differ" in message
    assert "band 4: model 480 nm, raster 485 nm" in message and "band 7: model 510 nm, raster 508.5 nm" in message
    assert "band 3" not in message


def test_matching_or_unknown_wavelengths_pass():
    metadata = metadata_for(bands=3)
    check_raster_matches(metadata, raster(3, [450.5, 460.0, 469.2]))
    check_raster_matches(metadata, raster(3, None))
    check_raster_matches(metadata_for(bands=3, wavelengths=False), raster(3, [1.0, 2.0, 3.0]))


# --- the real models -------------------------------------------------------------------------------


def test_real_cssmamba_round_trips_with_its_prototypes(tmp_path, monkeypatch):
    monkeypatch.setattr(modelfile, "_build", REGISTRY_BUILD)
    from engine.models.registry import build_model

    torch.manual_seed(0)
    model = build_model("cssmamba", in_bands=3, n_classes=2, dim=16)
    buffers = dict(model.named_buffers())
    assert buffers, "CSSMamba keeps its EMA prototypes as buffers"
    with torch.no_grad():
        for b in buffers.values():
            if b.is_floating_point():
                b.copy_(torch.randn_like(b))
    path = str(tmp_path / "cssmamba.pt")
    save_model(path, model, metadata_for())
    loaded, metadata = load_model(path)
    assert metadata["model"]["name"] == "cssmamba"
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)



def test_a_file_naming_an_unknown_model_is_refused_by_the_real_registry(saved, tmp_path, monkeypatch):
    path, _ = saved
    monkeypatch.setattr(modelfile, "_build", REGISTRY_BUILD)
    assert_refused(path, "cannot rebuild model 'buffernet'")
