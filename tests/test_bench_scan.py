"""The selective-scan benchmark (SCAN.md §6): its Blelloch pscan baseline is exact, and
`bench/scan.py --quick` runs end to end and writes valid results.

The float64 loop below is written from SCAN.md §1, one token at a time; it shares no code with
the pscan or the engine.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bench.pscan import pscan, selective_scan_pscan

REPO_ROOT = Path(__file__).resolve().parents[1]
INPUT_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def loop_scan(u, delta, A, B, C, D, z, delta_bias):
    """out_t = (Σ_n C_t h_t + D u_t)·silu(z_t), h_t = exp(Δ_t A) h_{t-1} + Δ_t u_t B_t, Δ = softplus(δ + bias)."""
    dt = F.softplus(delta + delta_bias[:, None])
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for t in range(u.shape[-1]):
        h = torch.exp(dt[:, :, t, None] * A) * h + (dt[:, :, t] * u[:, :, t])[:, :, None] * B[:, None, :, t]
        ys.append((h * C[:, None, :, t]).sum(-1) + D * u[:, :, t])
    return torch.stack(ys, -1) * F.silu(z)


def random_inputs(b: int, d: int, n: int, length: int) -> dict:
    g = torch.Generator().manual_seed(length)
    shapes = {"u": (b, d, length), "delta": (b, d, length), "A": (d, n), "B": (b, n, length),
              "C": (b, n, length), "D": (d,), "z": (b, d, length), "delta_bias": (d,)}
    inputs = {k: torch.randn(*s, generator=g) for k, s in shapes.items()}
    inputs["A"] = -torch.rand(d, n, generator=g) * 4 - 0.1  # A < 0
    return inputs


@pytest.mark.parametrize("length", [1, 7, 64, 100])  # 100 pads to 128
def test_pscan_matches_float64_loop_in_output_and_all_gradients(length):
    inputs = random_inputs(2, 4, 3, length)
    r = torch.randn(2, 4, length, generator=torch.Generator().manual_seed(1))
    x32 = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    x64 = {k: v.double().requires_grad_() for k, v in inputs.items()}

    y32 = selective_scan_pscan(**x32, delta_softplus=True)
    y64 = loop_scan(**x64)
    (y32 * r).sum().backward()
    (y64 * r.double()).sum().backward()

    assert y32.dtype == torch.float32 and y32.shape == (2, 4, length)
    torch.testing.assert_close(y32.double(), y64.detach(), rtol=1e-5, atol=1e-5 * y64.abs().max().item())
    for name in INPUT_NAMES:
        g32, g64 = x32[name].grad.double(), x64[name].grad
        torch.testing.assert_close(g32, g64, rtol=1e-5, atol=1e-5 * g64.abs().max().item(), msg=name)


def test_pscan_refuses_a_length_that_is_not_a_power_of_two():
    with pytest.raises(ValueError, match="power-of-two"):
        pscan(torch.ones(1, 3, 2), torch.ones(1, 3, 2))


def test_quick_benchmark_runs_end_to_end_and_writes_valid_json(tmp_path):
    # One thread: two competing OpenMP threads on a busy CI core make tiny cells crawl.
    cmd = [sys.executable, str(REPO_ROOT / "bench" / "scan.py"), "--quick", "--threads", "1",
           "--variants", "pscan,chunked", "--out-dir", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]

    report = json.loads((tmp_path / "scan.json").read_text())
    assert report["meta"]["threads"] == 1 and report["meta"]["torch"] == torch.__version__
    cells = report["cells"]
    assert [c["status"] for c in cells] == ["ok"] * len(cells), report["meta"]["skipped"]
    assert {(c["variant"], c["mode"]) for c in cells} == {(v, m) for v in ("pscan", "chunked") for m in ("fwd", "fb")}
    assert any(c["tile"] == 0 for c in cells), "the untiled spectral cell is missing"
    for c in cells:
        assert 0 < c["best_ms"] <= c["median_ms"] and c["mtok_s"] > 0 and c["x_exp_bound"] > 0
    pscan_fwd = [c for c in cells if (c["variant"], c["mode"]) == ("pscan", "fwd")]
    assert pscan_fwd and all(c["rel_diff"] < 1e-5 for c in pscan_fwd)
    assert all(c["backend"] == "torch" for c in cells if c["variant"] == "chunked")
    assert "| variant |" in (tmp_path / "scan.md").read_text()
