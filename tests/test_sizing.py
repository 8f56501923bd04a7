"""Device-aware model sizes: the papers' on a GPU when they fit, the largest that fits otherwise, the
plugin's CPU sizes on the CPU, the user's when set (CUDA mocked: CI has no GPU)."""

import torch

from engine import pipeline
from engine.data.sample import generate_sample
from engine.training.sizing import choose_size, size_candidates

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_candidates_run_from_the_paper_size_down_to_the_cpu_size():
    assert size_candidates("cssmamba") == [{"dim": 128}, {"dim": 64}, {"dim": 32}]
    assert size_candidates("mambahsi") == [{"dim": 128}, {"dim": 64}, {"dim": 32}]
    assert size_candidates("m3amba") == [{"dim": 384, "depth": 9}, {"dim": 192, "depth": 9}, {"dim": 96, "depth": 9},
                                         {"dim": 48, "depth": 9}, {"dim": 24, "depth": 9}, {"dim": 16, "depth": 2}]


def test_the_rule():
    asked = []

    def fits_up_to(width):
        def fits(size):
            asked.append(size["dim"])
            return size["dim"] <= width
        return fits

    assert choose_size("cssmamba", CPU, {}, fits_up_to(1000)) == ({"dim": 32}, "the plugin's CPU size")
    assert asked == []                                  # the CPU never probes
    size, why = choose_size("cssmamba", CUDA, {}, fits_up_to(1000))
    assert size == {"dim": 128} and "paper" in why
    size, why = choose_size("cssmamba", CUDA, {}, fits_up_to(64))
    assert size == {"dim": 64} and "largest size that fits" in why
    size, why = choose_size("m3amba", CUDA, {}, fits_up_to(0))
    assert size == {"dim": 16, "depth": 2} and "no larger size fits" in why
    assert choose_size("cssmamba", CUDA, {"dim": 48}, fits_up_to(0)) == ({}, "set by the user")
    size, why = choose_size("m3amba", CUDA, {"dim": 64}, lambda size: True)   # the width set, the depth chosen
    assert size == {"depth": 9} and why.endswith("dim set by the user")


def test_training_on_a_gpu_builds_the_largest_model_that_fits(tmp_path, monkeypatch, caplog):
    """The job asks the memory estimate for each size on the 'GPU' and records the size that ran."""
    sample = generate_sample(str(tmp_path), rows=24, cols=24, bands=12)
    monkeypatch.setattr(pipeline, "resolve_device", lambda device: CUDA)      # only the sizing sees a GPU
    monkeypatch.setattr(pipeline, "whole_scene_fits", lambda model, *args: model.config["dim"] <= 64)
    caplog.set_level("INFO", logger="engine.pipeline")
    metadata, _ = pipeline.train_from_files(sample.raster, str(tmp_path / "m.pt"), labels=sample.labels,
                                            model="mambahsi", epochs=1, device="cpu")
    assert metadata["model"]["config"]["dim"] == 64
    assert "model mambahsi at width 64 (the largest size that fits the GPU" in caplog.text


def test_the_estimate_says_whether_the_whole_scene_fits(tmp_path):
    import numpy as np

    from engine.models.registry import build_model
    from engine.training.train import TrainConfig, whole_scene_fits

    image = np.random.default_rng(0).random((12, 32, 32), dtype=np.float32)
    labels = np.full((32, 32), -1)
    labels[::4, ::4] = np.arange(64).reshape(8, 8) % 3
    net = build_model("cssmamba", 12, 3, dim=8)
    valid = np.ones((32, 32), bool)
    guide = net.make_guide(image, labels, valid)
    assert whole_scene_fits(net, image, guide, valid, TrainConfig(device="cpu", memory_budget_mb=4096))
    assert not whole_scene_fits(net, image, guide, valid, TrainConfig(device="cpu", memory_budget_mb=0.5))
    assert next(net.parameters()).device.type == "cpu"
