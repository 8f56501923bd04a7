#!/usr/bin/env python3
"""Selective-scan benchmark: the protocol of SCAN.md §6.

Times the scan variants side by side on the same seeded inputs (sequential reference, Blelloch
pscan, the chunked torch path, the optional C++ kernel, and on CUDA the chunked path and
mamba-ssm), forward under no_grad and forward+backward, each (variant, shape, mode) cell in a
fresh subprocess so that allocator state, page faults and the RSS high-water mark of one cell
cannot leak into the next. Memory and time guards skip cells that would not fit or would take too
long, and every skip is recorded with its reason. Results go to a markdown table and a JSON file.

    python bench/scan.py                      # full CPU run (the lead runs it on a quiet machine)
    python bench/scan.py --quick --out-dir /tmp/x
    python bench/scan.py --dry-run            # plan and time estimate only
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402  (after the sys.path fix so `python bench/scan.py` finds the engine)

N_STATE = 16
DEFAULT_D = (64, 256, 512)
DEFAULT_L = (4096, 32768, 207_400)
SPECTRAL_BATCH, SPECTRAL_L, SPECTRAL_D = 51_850, 4, 64
QUICK_D, QUICK_L, QUICK_SPECTRAL_BATCH = (16,), (100,), 64
UNTILED = 0  # Shape.tile value: one m-tile over the whole batch
# The chunked scan's batch tile is set through its per-step temporary budget (bytes per m-tile).
TILE_KNOB = "_CPU_STEP_BYTES"
MODES = ("fwd", "fb")

# Floor references (SCAN.md §4): the fused C++ forward kernel's measured rates, and its f+b time
# at L = 207,400, d = 64, scaled linearly in L·d; plus the torch.exp rate of that machine, used to
# rescale the time priors below to the machine at hand.
FUSED_FWD_RATE, FUSED_FWD_RATE_SHORT, SHORT_L = 2.6e9, 4.3e9, 4096
FUSED_FB_SECONDS, FUSED_FB_TOKENS_D = 0.25, 207_400 * 64
SCAN_MD_EXP_RATE = 2.38e9
EXP_ELEMENTS = 64 * 2**20

# A chunked reference run on more state elements than this uses a prefix of the inputs instead.
DIFF_ELEMENTS = 2**27
MEMORY_SAFETY = 0.8


@dataclasses.dataclass(frozen=True)
class Variant:
    """One scan implementation; memory and prior are (fwd, fb) pairs.

    memory: peak extra bytes in units of one full (b, L, d, n) fp32 tensor: SCAN.md §4's RSS table
    at L = 207,400 (pscan pads to 2^18), cpp from this bench at L = 32768; CUDA ones are guesses.
    prior_ns: ns per state element, 2 threads, L = 207,400 (SCAN.md §2; cpp fwd is §4's fused
    floor, the rest of cpp and CUDA are guesses), only used until the same variant and mode has a
    measured cell to extrapolate from.
    """

    name: str
    device: str
    backend: Optional[str]
    memory: Tuple[float, float]
    prior_ns: Tuple[float, float]


VARIANTS: Dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("sequential", "cpu", None, (3.0, 9.0), (20.0, 135.0)),
        Variant("pscan", "cpu", None, (4.4, 8.8), (16.5, 82.0)),
        Variant("chunked", "cpu", "torch", (0.5, 2.0), (3.1, 11.8)),
        Variant("cpp", "cpu", "cpp", (0.6, 1.2), (0.5, 3.0)),
        Variant("chunked-cuda", "cuda", "torch", (0.5, 2.0), (0.1, 0.5)),
        Variant("mamba-ssm", "cuda", "cuda", (0.1, 0.3), (0.01, 0.03)),
    )
}
CPU_VARIANTS = ("sequential", "pscan", "chunked", "cpp")
CUDA_VARIANTS = ("chunked-cuda", "mamba-ssm")
CHUNKED = {"cpu": "chunked", "cuda": "chunked-cuda"}


@dataclasses.dataclass(frozen=True)
class Shape:
    """Problem size; tile is the chunked scan's m-tile width (None: its default; UNTILED)."""

    batch: int
    d: int
    length: int
    n: int = N_STATE
    tile: Optional[int] = None

    @property
    def tokens(self) -> int:
        return self.batch * self.length

    @property
    def elements(self) -> int:
        """State elements B·L·d·N: the work unit, and one full tensor is 4 bytes each."""
        return self.tokens * self.d * self.n

    @property
    def label(self) -> str:
        tile = {None: "", UNTILED: " untiled"}.get(self.tile, f" tile={self.tile}")
        return f"B={self.batch} d={self.d} L={self.length}{tile}"


@dataclasses.dataclass
class Cell:
    """One (variant, shape, mode) measurement and everything derived from it."""

    variant: str
    shape: Shape
    mode: str
    status: str = "pending"
    result: Dict[str, object] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def best_s(self) -> float:
        return float(self.result["best_ms"]) / 1e3

    @property
    def median_s(self) -> float:
        return float(self.result["median_ms"]) / 1e3


# --------------------------------------------------------------------------------------------
# Cell subprocess: inputs, timing, memory, accuracy.
# --------------------------------------------------------------------------------------------


def make_inputs(shape: Shape, device: str, seed: int, grad: bool) -> Dict[str, torch.Tensor]:
    """Seeded inputs from SCAN.md's measurement distribution, identical for every variant.

    Δ enters as pre-activation 0.5·N(0,1) plus a delta_bias whose softplus is log-uniform in
    [1e-3, 0.1] (Mamba's dt init), with delta_softplus=True; A = −(1..N)·(1 + 0.1·U); D = 1.
    """
    g = torch.Generator().manual_seed(seed)
    b, d, length, n = shape.batch, shape.d, shape.length, shape.n

    def normal(*size: int, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(*size, generator=g).mul_(scale)

    dt = torch.exp(torch.rand(d, generator=g) * math.log(0.1 / 1e-3) + math.log(1e-3))
    inputs = {
        "u": normal(b, d, length),
        "delta": normal(b, d, length, scale=0.5),
        "A": -torch.arange(1, n + 1, dtype=torch.float32) * (1 + 0.1 * torch.rand(d, n, generator=g)),
        "B": normal(b, n, length),
        "C": normal(b, n, length),
        "D": torch.ones(d),
        "z": normal(b, d, length),
        "delta_bias": dt + torch.log(-torch.expm1(-dt)),  # inverse softplus
    }
    return {k: v.to(device).requires_grad_(grad) for k, v in inputs.items()}


def projection(shape: Shape, device: str, seed: int) -> torch.Tensor:
    """The fixed random R of the f+b mode, whose loss is ⟨y, R⟩ (b, d, l)."""
    g = torch.Generator().manual_seed(seed + 1)
    return torch.randn(shape.batch, shape.d, shape.length, generator=g).to(device)


def scan_function(variant: Variant, shape: Shape) -> Callable[..., torch.Tensor]:
    """The callable for a variant, taking make_inputs' keywords plus delta_softplus.

    A shape with a tile sets the chunked scan's tile for the rest of this (fresh) process.
    """
    if variant.name == "pscan":
        from bench.pscan import selective_scan_pscan

        return selective_scan_pscan
    from engine.ssm import scan as ssm_scan

    if variant.backend is None:
        return ssm_scan.selective_scan_reference
    if shape.tile is not None:
        width = shape.tokens if shape.tile == UNTILED else shape.tile
        setattr(ssm_scan, TILE_KNOB, width * shape.d * shape.n * 4)

    def run(**kwargs: object) -> torch.Tensor:
        return ssm_scan.selective_scan(**kwargs, backend=variant.backend)

    return run


def default_tile(d: int, n: int = N_STATE) -> Optional[int]:
    """The chunked scan's default CPU m-tile width at this d, or None if it exposes no tile knob."""
    from engine.ssm import scan as ssm_scan

    budget = getattr(ssm_scan, TILE_KNOB, None)
    return None if budget is None else max(1, budget // (d * n * 4))


def scan_settings(lengths: Sequence[int], d_values: Sequence[int]) -> Dict[str, object]:
    """Chunk sizes Q per L and default tile widths per d, as the scan module reports them."""
    from engine.ssm import scan as ssm_scan

    settings: Dict[str, object] = {"Q (cpu)": {L: ssm_scan.chunk_size(L) for L in lengths}}
    if torch.cuda.is_available():
        settings["Q (cuda)"] = {L: ssm_scan.chunk_size(L, "cuda") for L in lengths}
    settings["default m-tile (cpu)"] = {d: default_tile(d) for d in d_values}
    return settings


def _proc_status_kb(field: str) -> int:
    """A 'kB' field of /proc/self/status (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class PeakMemory:
    """Peak extra memory from construction on: RSS high-water mark on CPU, allocator peak on CUDA.

    On CPU the high-water mark is reset (clear_refs 5) so input creation does not count; where the
    kernel refuses, VmHWM still starts from an RSS that already holds the inputs.
    """

    def __init__(self, device: str) -> None:
        self.device = device
        if device == "cuda":
            torch.cuda.synchronize()
            self.base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        self.base = _proc_status_kb("VmRSS") * 1024

    def extra_mb(self) -> float:
        if self.device == "cuda":
            return (torch.cuda.max_memory_allocated() - self.base) / 2**20
        return (_proc_status_kb("VmHWM") * 1024 - self.base) / 2**20


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _timed(step: Callable[[], object], device: str) -> Tuple[float, object]:
    """Seconds for one call of step (synchronised on CUDA) and its return value."""
    _synchronize(device)
    start = time.perf_counter()
    out = step()
    _synchronize(device)
    return time.perf_counter() - start, out


def _steps(fn: Callable[..., torch.Tensor], inputs: Dict[str, torch.Tensor], mode: str,
           r: Optional[torch.Tensor]) -> Tuple[Callable[[], object], Callable[[], None]]:
    """(the timed step, an untimed reset between steps) for a mode."""
    if mode == "fwd":
        def forward() -> torch.Tensor:
            with torch.no_grad():
                return fn(**inputs, delta_softplus=True)

        return forward, lambda: None

    def forward_backward() -> None:
        torch.sum(fn(**inputs, delta_softplus=True) * r).backward()

    def clear_grads() -> None:
        for t in inputs.values():
            t.grad = None

    return forward_backward, clear_grads


def reference_slice(shape: Shape) -> Tuple[int, int]:
    """(batch, length) prefix on which the chunked reference is cheap.

    The scan is causal in L and independent across the batch, so a prefix of the inputs gives
    exactly the prefix of the output.
    """
    if shape.elements <= DIFF_ELEMENTS:
        return shape.batch, shape.length
    per_token = shape.d * shape.n
    length = min(shape.length, max(1, DIFF_ELEMENTS // (shape.batch * per_token)))
    return min(shape.batch, max(1, DIFF_ELEMENTS // (length * per_token))), length


def relative_difference(y: torch.Tensor, inputs: Dict[str, torch.Tensor], shape: Shape,
                        device: str) -> Tuple[float, str]:
    """max|y − y_chunked| / max|y_chunked| over a prefix, and a note saying which prefix."""
    batch, length = reference_slice(shape)
    sub = {k: v.detach() for k, v in inputs.items()}
    for key in ("u", "delta", "B", "C", "z"):
        sub[key] = sub[key][:batch, :, :length]
    with torch.no_grad():
        ref = scan_function(VARIANTS[CHUNKED[device]], Shape(batch, shape.d, length))(**sub, delta_softplus=True)
        ref = ref.double()
        err = (y[:batch, :, :length].double() - ref).abs().max() / ref.abs().max()
    on = "full" if (batch, length) == (shape.batch, shape.length) else f"B={batch} L={length}"
    return float(err), on


def run_cell(spec: Dict[str, object]) -> Dict[str, object]:
    """Measure one cell in this process; returns the JSON-able result."""
    torch.set_num_threads(int(spec["threads"]))
    variant, mode = VARIANTS[str(spec["variant"])], str(spec["mode"])
    shape = Shape(**spec["shape"])  # type: ignore[arg-type]
    fn = scan_function(variant, shape)
    inputs = make_inputs(shape, variant.device, int(spec["seed"]), grad=mode == "fb")
    r = projection(shape, variant.device, int(spec["seed"])) if mode == "fb" else None
    step, reset = _steps(fn, inputs, mode, r)
    peak = PeakMemory(variant.device)
    times, out = [], None
    for _ in range(1 + int(spec["reps"])):  # the first call is the warm-up (page faults, caches)
        seconds, out = _timed(step, variant.device)
        times.append(seconds * 1e3)
        reset()
    result: Dict[str, object] = {
        "status": "ok",
        "warmup_ms": times[0],
        "times_ms": times[1:],
        "best_ms": min(times[1:]),
        "median_ms": statistics.median(times[1:]),
        "peak_mb": peak.extra_mb(),
    }
    if variant.backend is not None:
        from engine.ssm.scan import last_backend

        result["backend"] = last_backend()  # proves e.g. that 'cpp' did not fall back
    if mode == "fwd" and variant.name != CHUNKED[variant.device]:
        result["rel_diff"], result["diff_on"] = relative_difference(out, inputs, shape, variant.device)
    return result


# --------------------------------------------------------------------------------------------
# Parent: plan, guards, subprocesses.
# --------------------------------------------------------------------------------------------


def exp_rate(device: str, threads: int) -> float:
    """torch.exp elements/s on a 64M-element fp32 tensor: the in-run floor (SCAN.md §4)."""
    torch.set_num_threads(threads)
    x = torch.rand(EXP_ELEMENTS, device=device)
    out = torch.empty_like(x)
    best = min(_timed(lambda: torch.exp(x, out=out), device)[0] for _ in range(4))
    return EXP_ELEMENTS / best


def mem_available_bytes(device: str) -> int:
    """Memory a cell may use now: MemAvailable on CPU, free device memory on CUDA."""
    if device == "cuda":
        return torch.cuda.mem_get_info()[0]
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/meminfo has no MemAvailable line")


def cpu_model() -> str:
    """The 'model name' of /proc/cpuinfo, falling back to platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def unavailable_reason(variant: Variant) -> Optional[str]:
    """Why a variant cannot run on this machine, or None (may build the C++ kernel once)."""
    if variant.device == "cuda" and not torch.cuda.is_available():
        return "torch.cuda.is_available() is False"
    if variant.name == "cpp":
        from engine.ssm import cpu_kernel

        return None if cpu_kernel.is_available() else f"C++ kernel unavailable: {cpu_kernel.build_error()}"
    if variant.name == "mamba-ssm":
        inputs = make_inputs(Shape(1, 2, 8, 2), "cuda", 0, grad=False)
        try:
            scan_function(variant, Shape(1, 2, 8, 2))(**inputs)
        except RuntimeError as exc:  # an explicit backend='cuda' that cannot run names the missing piece
            return str(exc)
    return None


def plan_shapes(d_values: Sequence[int], l_values: Sequence[int], spectral_batch: int,
                spectral_d: int) -> List[Shape]:
    """Spatial shapes (B = 1), plus the spectral one if its d is requested: with the scan's default
    tile and, if the scan has a tile knob, untiled."""
    shapes = [Shape(1, d, length) for d in d_values for length in l_values]
    if spectral_batch > 0 and spectral_d in d_values:
        shapes.append(Shape(spectral_batch, spectral_d, SPECTRAL_L))
        if default_tile(spectral_d) is not None:
            shapes.append(Shape(spectral_batch, spectral_d, SPECTRAL_L, tile=UNTILED))
    return shapes


def size_order(cell: Cell) -> Tuple[int, int, bool]:
    """Sort key: work B·L·d·N first; spatial before spectral, the default tile before untiled."""
    return cell.shape.elements, cell.shape.batch, cell.shape.tile is not None


def plan_cells(variants: Sequence[str], shapes: Sequence[Shape], modes: Sequence[str]) -> List[Cell]:
    """All cells, smallest first, so each can be extrapolated from a measured smaller one.

    The untiled spectral shape only concerns the chunked scan on CPU, whose tile knob it sets.
    """
    cells = [Cell(v, s, m) for s in shapes for v in variants for m in modes if s.tile is None or v == "chunked"]
    return sorted(cells, key=size_order)


def predicted_bytes(cell: Cell) -> float:
    """Peak extra memory: the variant's multiple of one full fp32 state tensor."""
    return VARIANTS[cell.variant].memory[MODES.index(cell.mode)] * cell.shape.elements * 4


def prior_seconds(variant: Variant, mode: str, elements: int, rates: Dict[str, float]) -> float:
    """SCAN.md's per-element time for a variant, rescaled by this machine's torch.exp rate (CPU)."""
    speed = SCAN_MD_EXP_RATE / rates[variant.device] if variant.device == "cpu" else 1.0
    return variant.prior_ns[MODES.index(mode)] * 1e-9 * elements * speed


def estimate_seconds(cell: Cell, done: Sequence[Cell], rates: Dict[str, float]) -> float:
    """Seconds per call, linear in B·L·d from the largest measured cell of the same variant/mode.

    The largest (= nearest, as cells run smallest first) is used because the cost per element
    grows once tensors leave the caches. With nothing measured yet, the SCAN.md prior is rescaled
    by this machine's torch.exp rate.
    """
    basis = [c for c in done if c.ok and (c.variant, c.mode) == (cell.variant, cell.mode)]
    if basis:
        ref = max(basis, key=lambda c: c.shape.elements)
        return ref.median_s * cell.shape.elements / ref.shape.elements
    return prior_seconds(VARIANTS[cell.variant], cell.mode, cell.shape.elements, rates)


def guard(cell: Cell, done: Sequence[Cell], rates: Dict[str, float], reps: int,
          max_cell_seconds: float) -> Optional[str]:
    """A skip reason if the cell would not fit in memory or would run too long, else None."""
    need, have = predicted_bytes(cell), mem_available_bytes(VARIANTS[cell.variant].device)
    if need > MEMORY_SAFETY * have:
        return f"skipped: predicted {need / 1e9:.1f} GB > {MEMORY_SAFETY:.0%} of {have / 1e9:.1f} GB available"
    per_call = estimate_seconds(cell, done, rates)
    if (1 + reps) * per_call > max_cell_seconds:
        return (f"skipped: predicted {(1 + reps) * per_call:.3g} s ({1 + reps} × {per_call:.3g} s)"
                f" > --max-cell-seconds {max_cell_seconds:g}")
    return None


def overhead_seconds(cell: Cell, rates: Dict[str, float]) -> float:
    """Process start, torch import, input generation and (fwd) the chunked reference run."""
    s = cell.shape
    seconds = 2.0 + s.tokens * (3 * s.d + 2 * s.n) / 150e6
    if cell.mode == "fwd" and cell.variant not in CHUNKED.values():
        chunked = VARIANTS[CHUNKED[VARIANTS[cell.variant].device]]
        seconds += prior_seconds(chunked, "fwd", min(s.elements, DIFF_ELEMENTS), rates)
    return seconds


def estimate_total(cells: Sequence[Cell], rates: Dict[str, float], reps: int, max_cell_seconds: float,
                   verbose: bool) -> Tuple[float, int]:
    """(seconds, number of cells to run) for the plan from the priors; verbose lists every cell."""
    total, count = 0.0, 0
    for cell in cells:
        reason = cell.status if cell.status != "pending" else guard(cell, [], rates, reps, max_cell_seconds)
        seconds = (1 + reps) * estimate_seconds(cell, [], rates) + overhead_seconds(cell, rates)
        if verbose:
            print(f"  {cell.variant} {cell.mode} {cell.shape.label}: {reason or f'~{seconds:.0f} s'}")
        if not reason:
            total, count = total + seconds, count + 1
    return total, count


def run_subprocess(cell: Cell, args: argparse.Namespace) -> Tuple[str, Dict[str, object]]:
    """Run one cell in a fresh interpreter; (status, result)."""
    spec = {"variant": cell.variant, "mode": cell.mode, "shape": dataclasses.asdict(cell.shape),
            "threads": args.threads, "reps": args.reps, "seed": args.seed}
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    timeout = 4 * args.max_cell_seconds + 120
    try:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--cell", json.dumps(spec)],
                              capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO_ROOT)
    except subprocess.TimeoutExpired:
        return f"failed: timed out after {timeout:g} s", {}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return f"failed: {last}", {}
    result = json.loads(lines[-1])
    return str(result.pop("status")), result


def run_plan(cells: Sequence[Cell], args: argparse.Namespace, rates: Dict[str, float]) -> None:
    """Run the pending cells in order, applying the guards with what has been measured so far."""
    done: List[Cell] = []
    for i, cell in enumerate(cells, 1):
        if cell.status == "pending":
            reason = guard(cell, done, rates, args.reps, args.max_cell_seconds)
            predicted = estimate_seconds(cell, done, rates)
            cell.status, cell.result = (reason, {}) if reason else run_subprocess(cell, args)
            cell.result["predicted_ms"] = predicted * 1e3
        done.append(cell)
        summary = f"{cell.result['median_ms']:.1f} ms median" if cell.ok else cell.status
        print(f"[{i}/{len(cells)}] {cell.variant} {cell.mode} {cell.shape.label}: {summary}", flush=True)


# --------------------------------------------------------------------------------------------
# Derived metrics and reports.
# --------------------------------------------------------------------------------------------


def fused_floor_seconds(cell: Cell) -> Optional[float]:
    """The measured fused-kernel time (SCAN.md §4) for this cell; None for CUDA cells (a CPU floor)."""
    s = cell.shape
    if VARIANTS[cell.variant].device != "cpu":
        return None
    if cell.mode == "fb":
        return FUSED_FB_SECONDS * s.tokens * s.d / FUSED_FB_TOKENS_D
    rate = FUSED_FWD_RATE_SHORT if s.batch == 1 and s.length <= SHORT_L else FUSED_FWD_RATE
    return s.elements / rate


def derive(cells: Sequence[Cell], rates: Dict[str, float]) -> None:
    """Add throughput, speed-ups and floor ratios to every measured cell."""
    best = {(c.variant, c.shape.batch, c.shape.d, c.shape.length, c.mode): c.best_s for c in cells if c.ok}
    for c in cells:
        if not c.ok:
            continue
        s, t = c.shape, c.best_s
        key = (s.batch, s.d, s.length, c.mode)
        floor = fused_floor_seconds(c)
        c.result.update(
            mtok_s=s.tokens / t / 1e6,
            gelem_s=s.elements / t / 1e9,
            speedup_vs_sequential=best[("sequential",) + key] / t if ("sequential",) + key in best else None,
            speedup_vs_pscan=best[("pscan",) + key] / t if ("pscan",) + key in best else None,
            x_fused_floor=t / floor if floor else None,
            x_exp_bound=t / (s.elements / rates[VARIANTS[c.variant].device]),
        )


COLUMNS = (("variant", None), ("shape", None), ("mode", None), ("best ms", "best_ms"),
           ("median ms", "median_ms"), ("M tok/s", "mtok_s"), ("G elem/s", "gelem_s"),
           ("peak MB", "peak_mb"), ("rel diff", "rel_diff"), ("× seq", "speedup_vs_sequential"),
           ("× pscan", "speedup_vs_pscan"), ("/ fused floor", "x_fused_floor"), ("/ exp bound", "x_exp_bound"))


def _fmt(value: object) -> str:
    """Three significant digits, scientific for small numbers, '–' for missing."""
    if value is None:
        return "–"
    v = float(value)  # type: ignore[arg-type]
    if v != 0 and abs(v) < 0.01:
        return f"{v:.1e}"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def table(cells: Sequence[Cell]) -> str:
    """The markdown results table; skipped and failed cells show their reason."""
    head = "| " + " | ".join(name for name, _ in COLUMNS) + " | note |"
    rows = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for c in sorted(cells, key=lambda c: (*size_order(c), MODES.index(c.mode))):
        values = [c.variant, c.shape.label, c.mode]
        values += [_fmt(c.result.get(key)) for _, key in COLUMNS[3:]]
        note = c.result.get("diff_on", "") if c.ok else c.status
        note = "" if note == "full" else note
        rows.append("| " + " | ".join(values + [str(note)]) + " |")
    return "\n".join(rows)


def header(meta: Dict[str, object]) -> str:
    """The markdown header: where, when, how, and what was skipped."""
    lines = [f"# Selective-scan benchmark ({meta['date']})", ""]
    for key in ("device", "cpu_model", "threads", "torch", "reps", "max_cell_seconds", "exp_rate_g_per_s",
                "scan_settings", "command", "wall_seconds"):
        lines.append(f"- **{key}**: `{meta[key]}`" if key == "command" else f"- **{key}**: {meta[key]}")
    skipped = meta["skipped"]
    lines += ["", f"Skipped or failed cells: {len(skipped)}"]  # type: ignore[arg-type]
    lines += [f"- {s['cell']}: {s['reason']}" for s in skipped]  # type: ignore[index, union-attr]
    return "\n".join(lines)


def metadata(args: argparse.Namespace, argv: Sequence[str], rates: Dict[str, float],
             cells: Sequence[Cell], wall_seconds: float) -> Dict[str, object]:
    """Run metadata for the JSON and the markdown header."""
    device = "cpu" if args.device == "cpu" else f"cpu + cuda ({torch.cuda.get_device_name(0)})"
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "device": device,
        "cpu_model": cpu_model(),
        "threads": args.threads,
        "torch": torch.__version__,
        "reps": args.reps,
        "max_cell_seconds": args.max_cell_seconds,
        "exp_rate_g_per_s": {k: round(v / 1e9, 3) for k, v in rates.items()},
        "scan_settings": scan_settings(sorted({c.shape.length for c in cells}), args.d),
        "command": shlex.join([sys.executable, sys.argv[0], *argv]),
        "wall_seconds": round(wall_seconds),
        "skipped": [{"cell": f"{c.variant} {c.mode} {c.shape.label}", "reason": c.status}
                    for c in cells if not c.ok],
    }


def write_reports(out_dir: Path, meta: Dict[str, object], cells: Sequence[Cell]) -> str:
    """Write scan.json and scan.md into out_dir; returns the markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    records = [{"variant": c.variant, "mode": c.mode, "device": VARIANTS[c.variant].device,
                **dataclasses.asdict(c.shape), "status": c.status, **c.result} for c in cells]
    (out_dir / "scan.json").write_text(json.dumps({"meta": meta, "cells": records}, indent=1) + "\n")
    markdown = header(meta) + "\n\n" + table(cells) + "\n"
    (out_dir / "scan.md").write_text(markdown)
    return markdown


# --------------------------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------------------------


def _int_list(text: str) -> List[int]:
    return [int(x.replace("_", "")) for x in text.split(",") if x]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny shapes and 1 rep (for the test)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda adds the chunked-cuda and mamba-ssm variants to the CPU ones (default cpu)")
    p.add_argument("--variants", help=f"comma list from {','.join(VARIANTS)} (default: all for --device)")
    p.add_argument("--d", type=_int_list, help=f"channel counts (default {DEFAULT_D}; quick {QUICK_D})")
    p.add_argument("--L", type=_int_list, help=f"spatial lengths (default {DEFAULT_L}; quick {QUICK_L})")
    p.add_argument("--spectral-batch", type=int,
                   help=f"batch of the L={SPECTRAL_L} spectral shape, 0 = off (default {SPECTRAL_BATCH}, "
                        f"run at d={SPECTRAL_D} when that d is requested; quick {QUICK_SPECTRAL_BATCH})")
    p.add_argument("--modes", type=lambda s: s.split(","), default=list(MODES), help="fwd,fb (default both)")
    p.add_argument("--threads", type=int, default=2, help="torch threads in every cell (default 2)")
    p.add_argument("--reps", type=int, help="timed repetitions after the warm-up (default 3; quick 1)")
    p.add_argument("--max-cell-seconds", type=float, default=90.0,
                   help="skip a cell whose predicted (1 + reps) calls take longer (default 90)")
    p.add_argument("--seed", type=int, default=0, help="input seed, the same for every variant (default 0)")
    p.add_argument("--out-dir", type=Path, default=REPO_ROOT / "bench" / "results",
                   help="where scan.json and scan.md go (default bench/results)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and its time estimate only")
    p.add_argument("--cell", help=argparse.SUPPRESS)  # internal: one cell's JSON spec
    args = p.parse_args(argv)
    _fill_defaults(p, args)
    return args


def _fill_defaults(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Defaults that depend on --quick and --device, and validation."""
    args.d = args.d or list(QUICK_D if args.quick else DEFAULT_D)
    args.L = args.L or list(QUICK_L if args.quick else DEFAULT_L)
    if args.spectral_batch is None:
        args.spectral_batch = QUICK_SPECTRAL_BATCH if args.quick else SPECTRAL_BATCH
    args.spectral_d = QUICK_D[0] if args.quick else SPECTRAL_D
    if args.reps is None:
        args.reps = 1 if args.quick else 3
    default = CPU_VARIANTS + (CUDA_VARIANTS if args.device == "cuda" else ())
    args.variants = args.variants.split(",") if args.variants else list(default)
    unknown = [v for v in args.variants if v not in VARIANTS] + [m for m in args.modes if m not in MODES]
    if args.reps < 1 or args.threads < 1:
        p.error("--reps and --threads must be at least 1")
    if unknown:
        p.error(f"unknown variant or mode {unknown}; choose from {list(VARIANTS)} and {list(MODES)}")
    if args.device == "cuda" and not args.cell and not torch.cuda.is_available():
        p.error("--device cuda, but torch.cuda.is_available() is False")


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if args.cell:
        print(json.dumps(run_cell(json.loads(args.cell))))
        return 0
    devices = sorted({VARIANTS[v].device for v in args.variants})
    rates = {dev: exp_rate(dev, args.threads) for dev in devices}
    shapes = plan_shapes(args.d, args.L, args.spectral_batch, args.spectral_d)
    cells = plan_cells(args.variants, shapes, args.modes)
    reasons = {v: unavailable_reason(VARIANTS[v]) for v in args.variants}
    for cell in cells:
        cell.status = f"skipped: {reasons[cell.variant]}" if reasons[cell.variant] else cell.status
    seconds, count = estimate_total(cells, rates, args.reps, args.max_cell_seconds, verbose=args.dry_run)
    print(f"{len(cells)} cells, {count} expected to run; estimated total {seconds / 60:.1f} min "
          f"(torch.exp: {', '.join(f'{k} {v / 1e9:.2f} G/s' for k, v in rates.items())})", flush=True)
    if args.dry_run:
        return 0
    start = time.perf_counter()
    run_plan(cells, args, rates)
    derive(cells, rates)
    meta = metadata(args, argv, rates, cells, time.perf_counter() - start)
    print(write_reports(args.out_dir, meta, cells))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
