"""Training on several processes with torchrun and DistributedDataParallel, on the CPU with gloo (what CI
can run): two processes compute what one process computes with --windows-per-step 2, rank 0 alone writes
and prints, and a SIGTERM stops every rank without a model file."""

import os
import signal
import subprocess
import sys
import threading

import pytest
import torch

from engine.data.sample import generate_sample
from engine.training.distributed import Group
from engine.modelfile import load_model
from engine.training.train import Window, _windows_of_this_process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return generate_sample(str(tmp_path_factory.mktemp("sample")), rows=40, cols=40, bands=12)


def train_command(sample, out, *extra):
    return ["-m", "engine", "train", "--raster", sample.raster, "--labels", sample.labels, "--threads", "1",
            "--device", "cpu", "--out", str(out), *map(str, extra)]


def run(command, timeout=300):
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_two_processes_compute_what_one_computes_with_two_windows_per_step(sample, tmp_path):
    options = ["--model", "mambahsi", "--set", "dim=8", "--epochs", 3]
    ddp = run(TORCHRUN + train_command(sample, tmp_path / "ddp.pt", *options, "--report", tmp_path / "ddp.json"))
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = run([sys.executable] + train_command(sample, tmp_path / "one.pt", *options, "--windows-per-step", 2))
    assert single.returncode == 0, single.stderr[-3000:]
    (a, meta_a), (b, meta_b) = load_model(str(tmp_path / "ddp.pt")), load_model(str(tmp_path / "one.pt"))
    for name, tensor in a.state_dict().items():
        torch.testing.assert_close(tensor, b.state_dict()[name], rtol=1e-5, atol=1e-6)
    assert meta_a["provenance"]["best_epoch"] == meta_b["provenance"]["best_epoch"]
    assert ddp.stdout.count("model       ") == 1            # rank 0 alone prints the summary
    assert ddp.stderr.count("training reads") == 1          # and logs: the other ranks mute all of engine's loggers
    assert "distributed training: 2 processes (gloo on the CPU)" in ddp.stderr
    assert (tmp_path / "ddp.json").exists()
    assert sorted(os.listdir(tmp_path)) == ["ddp.json", "ddp.pt", "one.pt"]


def test_label_windows_under_torchrun_compute_what_one_process_computes(tmp_path):
    """Label windows (9 tiles of a 130 px scene) make one step per epoch: the ranks share the tiles and DDP's
    mean of their weighted gradients is the one process's accumulated gradient."""
    scene = generate_sample(str(tmp_path / "scene"), rows=130, cols=130, bands=12, seed=2)
    options = ["--model", "mambahsi", "--set", "dim=8", "--epochs", 3, "--sampling", "windows"]
    ddp = run(TORCHRUN + train_command(scene, tmp_path / "ddp.pt", *options))
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = run([sys.executable] + train_command(scene, tmp_path / "one.pt", *options))
    assert single.returncode == 0, single.stderr[-3000:]
    (a, meta_a), (b, meta_b) = load_model(str(tmp_path / "ddp.pt")), load_model(str(tmp_path / "one.pt"))
    assert len(meta_a["provenance"]["sampling"]["windows"]) > 2 and meta_a["tiling"] == meta_b["tiling"]
    for name, tensor in a.state_dict().items():
        torch.testing.assert_close(tensor, b.state_dict()[name], rtol=1e-4, atol=1e-5)
    assert meta_a["provenance"]["best_epoch"] == meta_b["provenance"]["best_epoch"]


def test_cssmamba_trains_under_torchrun(sample, tmp_path):
    result = run(TORCHRUN + train_command(sample, tmp_path / "c.pt", "--set", "dim=8", "--epochs", 2))
    assert result.returncode == 0, result.stderr[-3000:]
    _, metadata = load_model(str(tmp_path / "c.pt"))
    assert metadata["provenance"]["epochs_run"] == 2 and os.listdir(tmp_path) == ["c.pt"]


def test_sigterm_stops_every_rank_and_writes_no_model(sample, tmp_path):
    process = subprocess.Popen(TORCHRUN + train_command(sample, tmp_path / "m.pt", "--set", "dim=8", "--epochs", 500),
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(300, process.kill)      # a hang fails the test instead of the whole run
    watchdog.start()
    for line in process.stderr:
        if "epoch 2/500: loss" in line:
            break
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    watchdog.cancel()
    assert err.count("training cancelled: no model file written") == 2, err[-3000:]
    assert os.listdir(tmp_path) == []


def test_m3amba_under_torchrun_is_refused(sample, tmp_path):
    result = run(TORCHRUN + train_command(sample, tmp_path / "m.pt", "--model", "m3amba", "--aux", sample.raster,
                                          "--no-clip", "--epochs", 1))
    assert result.returncode != 0 and "m3amba trains on one device" in result.stderr


def test_each_process_takes_its_own_window_and_the_mean_stays_the_batch_mean():
    batch = [Window(0, 1, 0, 1), Window(1, 2, 0, 1), Window(2, 3, 0, 1)]
    assert _windows_of_this_process(batch, None) == [(w, 1 / 3) for w in batch]
    assert _windows_of_this_process(batch[:2], Group(1, 2, 1)) == [(batch[1], 1.0)]
    assert _windows_of_this_process(batch[:1], Group(0, 2, 0)) == [(batch[0], 2.0)]
    assert _windows_of_this_process(batch[:1], Group(1, 2, 1)) == [(batch[0], 0.0)]   # idle rank: weight 0
