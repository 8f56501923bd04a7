"""Installation self-check: does the selective scan give the right numbers here, and how fast?

The scan is the part of the engine that depends most on the machine (compiled kernel or not,
CPU or CUDA, thread count), so this is what a user or CI runs first. The inputs are made from a
real raster's pixels (raster order, one token per pixel, as the whole-image models scan them),
projected to a Mamba-sized width with a fixed seed.
"""

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from .ssm import cpu_kernel
from .ssm.scan import last_backend, mamba_ssm_status, selective_scan, selective_scan_reference

Progress = Callable[[float, str], None]

# float32 against the float64 oracle: SCAN.md §1 measured 1e-7 relative, tests use 1e-5.
TOLERANCE = 1e-5


@dataclass
class Timing:
    backend: str
    forward_ms: float
    forward_backward_ms: float
    tokens: int

    @property
    def mtokens_per_s_forward(self) -> float:
        return self.tokens / self.forward_ms / 1e3


@dataclass
class SelfCheckReport:
    device: str
    threads: int
    torch_version: str
    raster: str
    tokens: int
    width: int
    state: int
    checked_backend: str
    output_error: float
    gradient_error: float
    timings: List[Timing] = field(default_factory=list)
    mamba_ssm: str = "not checked"  # ``mamba_ssm_status()``: why a CUDA run does or does not get the fast scan

    @property
    def passed(self) -> bool:
        return self.output_error <= TOLERANCE and self.gradient_error <= TOLERANCE

    def lines(self) -> List[str]:
        verdict = "PASS" if self.passed else "FAIL"
        out = [
            f"device: {self.device}  threads: {self.threads}  torch: {self.torch_version}",
            f"raster: {self.raster}  ({self.tokens} pixels = scan length L, d={self.width}, n={self.state})",
            f"self-check [{verdict}] backend {self.checked_backend}: output rel. error {self.output_error:.2e}, "
            f"gradient rel. error {self.gradient_error:.2e} vs float64 reference (tolerance {TOLERANCE:.0e})",
            f"mamba-ssm (CUDA scan kernel): {self.mamba_ssm}",
            f"{'backend':<10}{'L':>9}{'forward ms':>12}{'fwd+bwd ms':>12}{'M tok/s fwd':>13}",
        ]
        out += [f"{t.backend:<10}{t.tokens:>9}{t.forward_ms:>12.1f}{t.forward_backward_ms:>12.1f}"
                f"{t.mtokens_per_s_forward:>13.2f}" for t in self.timings]
        return out


def pixel_tokens(raster: str, max_tokens: Optional[int] = None) -> np.ndarray:
    """Standardised pixel spectra (L, bands) in raster order; pixels that are no-data (per the
    raster's own no-data values) or non-finite in any band become zeros."""
    from osgeo import gdal

    gdal.UseExceptions()
    if not os.path.exists(raster):
        raise ValueError(f"raster {raster} does not exist: check the path")
    try:
        ds = gdal.Open(raster)
    except RuntimeError as exc:
        raise ValueError(f"GDAL cannot read {raster} as a raster: {exc}") from exc
    cube = ds.ReadAsArray().astype(np.float32)
    if cube.ndim == 2:
        cube = cube[None]
    pixels = cube.reshape(cube.shape[0], -1).T
    if max_tokens:
        pixels = pixels[:max_tokens]
    valid = np.isfinite(pixels).all(axis=1)
    for band_index in range(ds.RasterCount):
        nodata = ds.GetRasterBand(band_index + 1).GetNoDataValue()
        if nodata is not None:
            valid &= pixels[:, band_index] != np.float32(nodata)
    mean = pixels[valid].mean(0) if valid.any() else 0.0
    std = pixels[valid].std(0) + 1e-6 if valid.any() else 1.0
    return np.where(valid[:, None], (pixels - mean) / std, 0.0).astype(np.float32)


def scan_inputs(tokens: np.ndarray, width: int, state: int, seed: int = 0) -> Dict[str, torch.Tensor]:
    """Mamba-like scan inputs from pixel tokens: u, delta, B, C, z by fixed random projections."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(tokens)                                      # (L, bands)
    bands = x.shape[1]

    def project(out: int, scale: float) -> torch.Tensor:
        w = torch.randn(bands, out, generator=gen) * scale / bands ** 0.5
        return (x @ w).T.unsqueeze(0).contiguous()                    # (1, out, L)

    dt = torch.exp(torch.rand(width, generator=gen) * (np.log(0.1) - np.log(1e-3)) + np.log(1e-3))
    return {
        "u": project(width, 1.0),
        "delta": project(width, 0.5),
        "A": -torch.arange(1, state + 1).float().repeat(width, 1) * (1 + 0.1 * torch.rand(width, state, generator=gen)),
        "B": project(state, 1.0),
        "C": project(state, 1.0),
        "D": torch.ones(width),
        "z": project(width, 1.0),
        "delta_bias": dt + torch.log(-torch.expm1(-dt)),               # softplus^-1(dt)
    }


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / max(float(b.abs().max()), 1e-12))


def check_against_reference(inputs: Dict[str, torch.Tensor], prefix: int, backend: str) -> tuple:
    """Max relative error of output and of all gradients vs the float64 reference."""
    cut = {k: (v[..., :prefix] if v.dim() == 3 else v) for k, v in inputs.items()}
    probe = torch.randn_like(cut["u"], dtype=torch.float64)
    results = []
    for dtype, fn in ((torch.float32, lambda **kw: selective_scan(backend=backend, **kw)),
                      (torch.float64, selective_scan_reference)):
        leaves = {k: v.detach().to(dtype).clone().requires_grad_(True) for k, v in cut.items()}
        out = fn(delta_softplus=True, **leaves)
        (out.double() * probe).sum().backward()
        results.append((out.detach(), {k: v.grad for k, v in leaves.items()}))
    (out32, grads32), (out64, grads64) = results
    checked = last_backend()
    return _relative(out32, out64), max(_relative(grads32[k], grads64[k]) for k in grads64), checked


def _best_ms(fn: Callable[[], None], repeats: int) -> float:
    fn()  # warm-up: page faults, lazy initialisation
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def time_backend(inputs: Dict[str, torch.Tensor], backend: str, repeats: int = 3) -> Timing:
    def forward() -> None:
        with torch.no_grad():
            selective_scan(backend=backend, delta_softplus=True, **inputs)

    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in inputs.items()}
    probe = torch.randn_like(inputs["u"])

    def forward_backward() -> None:
        (selective_scan(backend=backend, delta_softplus=True, **leaves) * probe).sum().backward()

    return Timing(backend, _best_ms(forward, repeats), _best_ms(forward_backward, repeats), inputs["u"].shape[-1])


def available_backends(device: torch.device) -> List[str]:
    """The scan backends worth timing on this device (the compiled CPU kernel only if it builds)."""
    if device.type == "cuda":
        return ["torch", "auto"]
    return ["torch"] + (["cpp"] if cpu_kernel.is_available() else [])


def run_selfcheck(
    raster: str,
    device: str = "auto",
    width: int = 64,
    state: int = 16,
    check_tokens: int = 2048,
    repeats: int = 3,
    progress: Optional[Progress] = None,
) -> SelfCheckReport:
    """Check the default scan against the float64 oracle on the raster, then time each backend."""
    progress = progress or (lambda fraction, text="": None)
    target = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                          ("cpu" if device == "auto" else device))
    if target.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but torch.cuda.is_available() is False: use --device cpu")
    tokens = pixel_tokens(raster)
    inputs = scan_inputs(tokens, width, state)
    progress(0.1, f"checking the scan on the first {min(check_tokens, len(tokens))} pixels against float64")
    out_err, grad_err, checked = check_against_reference(inputs, check_tokens, "auto")
    inputs = {k: v.to(target) for k, v in inputs.items()}
    timings = []
    backends = available_backends(target)
    for i, backend in enumerate(backends):
        progress(0.2 + 0.8 * i / len(backends), f"timing backend {backend} on L = {len(tokens)}")
        timings.append(time_backend(inputs, backend, repeats))
    progress(1.0, "")
    name = torch.cuda.get_device_name(target) if target.type == "cuda" else "cpu"
    return SelfCheckReport(name, torch.get_num_threads(), torch.__version__, raster, len(tokens), width, state,
                           checked, out_err, grad_err, timings, mamba_ssm=mamba_ssm_status())
