"""`python -m engine`: the main job of `make demo` and its error messages."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_engine(*args):
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_demo_makes_the_sample_and_passes_the_selfcheck(tmp_path):
    result = run_engine("demo", "--out", str(tmp_path), "--rows", "40", "--cols", "40", "--bands", "20",
                        "--repeats", "1", "--threads", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "self-check [PASS]" in result.stdout
    assert "device: cpu" in result.stdout and "threads: 2" in result.stdout
    assert "1600" in result.stdout  # L = 40 x 40 pixels
    assert "selective scan backend:" in result.stderr, "the backend that ran is logged"
    assert os.path.isfile(tmp_path / "sample.tif")
    again = run_engine("demo", "--out", str(tmp_path), "--repeats", "1")
    assert "using the existing sample" in again.stdout


def test_selfcheck_on_the_real_enmap_mosaic(shared_data):
    raster = os.path.join(shared_data, "enmap_potsdam", "enmap_potsdam_mosaic.tif")
    result = run_engine("selfcheck", "--raster", raster, "--repeats", "1", "--device", "cpu")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "self-check [PASS]" in result.stdout and "30720" in result.stdout  # 192 x 160 pixels


def test_selfcheck_names_a_missing_raster():
    result = run_engine("selfcheck", "--raster", "/no/such/raster.tif")
    assert result.returncode == 2
    assert "/no/such/raster.tif" in result.stderr and "Traceback" not in result.stderr


def test_selfcheck_refuses_cuda_when_there_is_none():
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the refusal is for machines without it")
    result = run_engine("selfcheck", "--raster", "/no/matter.tif", "--device", "cuda")
    assert result.returncode == 2 and "cuda" in result.stderr.lower()
