#!/usr/bin/env python3
"""The prepared GPU check (issue 14 §5): what a CUDA machine does with this engine, in one command.

No GPU has run the plugin on our own machines, so a lent GPU must be used well in a few minutes. This
measures, on synthetic data of EnMAP-like size (224 bands, 192 × 160 px; M3amba on batches of 16 crops
of 32 × 32 px with 2 auxiliary bands):

* the selective scan per backend (mamba-ssm's kernel if it imports, the chunked torch scan) on the
  scan shapes the models produce at the plugin's and the papers' widths, forward and forward+backward;
* per model (CSSMamba, MambaHSI, M3amba without CLIP) at the plugin's widths
  (``engine.models.registry.PLUGIN_DEFAULTS``) and the papers' (the constructors' defaults): one
  training step (forward, loss, backward, optimizer step) and one whole-image classification forward,
  in the precision the engine picks for the device (engine/precision.py: bf16 autocast on GPUs with
  native bf16, fp16 with gradient scaling on older ones, fp32 on the CPU);
* per model the bf16-autocast vs fp32 agreement of that classification: the largest absolute logit
  difference and the share of pixels whose class (argmax) is the same.

Weights are random apart from the timed training steps, so the agreement is a check of the numerics,
not of a trained model's accuracy. Reports are rewritten after every row, so a run that is stopped
keeps what it measured. Rows still to run when ``--budget-s`` is spent are skipped, with the reason.

    bench/gpu.sh                                              # CUDA; bench/results/gpu.{md,json}
    python bench/gpu.py --device cpu --quick --out /tmp/gpu.json   # tiny sizes in seconds (the CI test)
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import json
import os
import platform
import shlex
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from bench.scan import Shape, make_inputs, projection  # noqa: E402
from engine.training.crops import (  # noqa: E402
    PREDICT_STRIDE, TRAIN_STRIDE, average_logits, crops_covering, cut, pad, plan_crops)
from engine.models.m3amba import m3amba_loss  # noqa: E402
from engine.models.registry import (MODEL_NAMES, MULTIMODAL_NAMES, PLUGIN_DEFAULTS, build_model,  # noqa: E402
                                    build_multimodal_model, paper_config)
from engine.precision import Precision, choose_precision  # noqa: E402
from engine.ssm.scan import mamba_ssm_status, selective_scan  # noqa: E402
from engine.training.train import optimizer_step  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results"
MODELS = MODEL_NAMES + MULTIMODAL_NAMES
WIDTHS = ("plugin", "paper")
LEARNING_RATE = 1e-3
# M3amba steps with its own recipe's AdamW (M3amba.configure_optimizers); the HSI models with plain Adam.


@dataclasses.dataclass(frozen=True)
class Sizes:
    """The synthetic scene, the scan shapes and, for --quick, the tiny model options."""

    bands: int
    rows: int
    cols: int
    classes: int
    aux_bands: int
    crop_batch: int
    train_pixels_per_class: int
    scan_shapes: Tuple[Tuple[str, Shape], ...]
    model_overrides: Dict[str, Dict[str, Any]] = dataclasses.field(default_factory=dict)


# The scan shapes the models produce (Mamba's inner width is 2 × the model width): MambaHSI/CSSMamba's
# spatial scan over all pixels, MambaHSI's spectral scan (4 channel groups per pixel), and M3amba's
# Cross-SS2D (4 directions batched on channels: 4 × 2 × 384; B/C here ungrouped).
FULL = Sizes(
    bands=224, rows=192, cols=160, classes=10, aux_bands=2, crop_batch=16, train_pixels_per_class=30,
    scan_shapes=(
        ("spatial, EnMAP 192x160, width 32", Shape(1, 64, 30_720)),
        ("spatial, EnMAP 192x160, width 128", Shape(1, 256, 30_720)),
        ("spatial, PaviaU 610x340, width 128", Shape(1, 256, 207_400)),
        ("spectral, EnMAP pixels, width 128", Shape(30_720, 64, 4)),
        ("Cross-SS2D, 16 crops 32x32, width 384", Shape(16, 3072, 1024)),
    ),
)
QUICK = Sizes(
    bands=8, rows=24, cols=20, classes=3, aux_bands=2, crop_batch=2, train_pixels_per_class=5,
    scan_shapes=(("spatial, tiny", Shape(1, 8, 64)), ("spectral, tiny", Shape(32, 8, 4))),
    model_overrides={"cssmamba": {"dim": 8, "stages": 1, "clusters_per_class": 1}, "mambahsi": {"dim": 8},
                     "m3amba": {"dim": 8, "depth": 1, "d_state": 4, "crop": 16}},
)


# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(step: Callable[[], object], device: torch.device, repeats: int) -> Dict[str, float]:
    """Best and median milliseconds of ``step`` over ``repeats`` calls after one untimed warm-up (lazy
    initialisation, cuDNN's algorithm search, the allocator), synchronised on CUDA on both sides."""
    step()
    times = []
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        step()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return {"best_ms": 1e3 * min(times), "median_ms": 1e3 * statistics.median(times)}


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mb(device: torch.device) -> Optional[float]:
    """Peak GPU memory allocated since the last reset; None on the CPU (no comparable counter)."""
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


# --------------------------------------------------------------------------------------------------
# (a) scan backends
# --------------------------------------------------------------------------------------------------


def scan_backends(device: torch.device) -> List[Tuple[str, Optional[str], str]]:
    """(label, engine backend or None when it cannot run, why not) for the scan rows of this device."""
    torch_label = "chunked torch (CUDA)" if device.type == "cuda" else "chunked torch (CPU)"
    if device.type != "cuda":
        return [(torch_label, "torch", ""), ("mamba-ssm", None, "needs CUDA")]
    status = mamba_ssm_status()
    mamba_ssm = ("mamba-ssm", "cuda", "") if status == "available" else ("mamba-ssm", None, status)
    return [(torch_label, "torch", ""), mamba_ssm]


def bench_scan(shape: Shape, backend: str, device: torch.device, repeats: int) -> Dict[str, Any]:
    """Forward (no grad) and forward+backward of ⟨y, R⟩ with all inputs requiring grad, in fp32 (the
    scan's state is fp32 in every backend), on bench/scan.py's seeded inputs."""
    inputs = make_inputs(shape, str(device), seed=0, grad=True)
    r = projection(shape, str(device), seed=0)

    def forward() -> None:
        with torch.no_grad():
            selective_scan(**inputs, delta_softplus=True, backend=backend)

    def forward_backward() -> None:
        for t in inputs.values():
            t.grad = None
        (selective_scan(**inputs, delta_softplus=True, backend=backend) * r).sum().backward()

    fwd = time_ms(forward, device, repeats)
    _reset_peak(device)
    fb = time_ms(forward_backward, device, repeats)
    return {"fwd_ms": fwd["best_ms"], "fb_ms": fb["best_ms"], "fwd_median_ms": fwd["median_ms"],
            "fb_median_ms": fb["median_ms"], "mtok_per_s_fwd": shape.tokens / fwd["best_ms"] / 1e3,
            "peak_mb": _peak_mb(device)}


# --------------------------------------------------------------------------------------------------
# (b), (c) models
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Scene:
    """A synthetic scene: raw (Nb, H, W) positive spectra, x its per-band standardised version,
    aux (Na, H, W) standardised, labels (H, W) class index on training pixels and −1 elsewhere."""

    raw: np.ndarray
    x: np.ndarray
    aux: np.ndarray
    labels: np.ndarray


def synthetic_scene(sizes: Sizes, seed: int = 0) -> Scene:
    """Regions of classes (Voronoi cells of 3 seeds per class), each a smooth mean spectrum plus noise,
    so that models, the cluster prior and the agreement see structure rather than white noise."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:sizes.rows, 0:sizes.cols]
    seeds = rng.uniform((0, 0), (sizes.rows, sizes.cols), size=(3 * sizes.classes, 2))
    distance = (rows[..., None] - seeds[:, 0]) ** 2 + (cols[..., None] - seeds[:, 1]) ** 2
    classes = distance.argmin(-1) % sizes.classes                                    # (H, W)
    wavelength = np.linspace(0, 1, sizes.bands)
    spectra = np.stack([0.3 + 0.2 * np.sin(2 * np.pi * (f + 1) * wavelength + f) for f in range(sizes.classes)])
    raw = (spectra[classes].transpose(2, 0, 1) + 0.02 * rng.standard_normal((sizes.bands, sizes.rows, sizes.cols)))
    raw = raw.astype(np.float32)
    aux = classes[None].astype(np.float32) + 0.1 * rng.standard_normal((sizes.aux_bands, sizes.rows, sizes.cols))
    labels = np.full(classes.shape, -1, dtype=np.int64)
    for c in range(sizes.classes):
        where = np.flatnonzero(classes.ravel() == c)
        labels.flat[rng.choice(where, min(sizes.train_pixels_per_class, where.size), replace=False)] = c
    return Scene(raw, _standardise(raw), _standardise(aux.astype(np.float32)), labels)


def _standardise(a: np.ndarray) -> np.ndarray:
    mean, std = a.mean(axis=(1, 2), keepdims=True), a.std(axis=(1, 2), keepdims=True) + 1e-6
    return ((a - mean) / std).astype(np.float32)


def model_config(name: str, width: str, sizes: Sizes) -> Dict[str, Any]:
    """The options of ``name`` at the plugin's or the paper's width; --quick shrinks both alike."""
    if width == "plugin":
        config = dict(PLUGIN_DEFAULTS.get(name, {}))
    else:
        config = {key: paper_config(name)[key] for key in PLUGIN_DEFAULTS.get(name, {})}
    if name == "m3amba":
        config["use_clip"] = False  # no CLIP weights on a bench machine; the documented ablation
    return {**config, **sizes.model_overrides.get(name, {})}


class Job:
    """One model's training step and classification on the scene: the HSI models over the whole image,
    M3amba over a batch of crops (training) and every crop of the prediction grid (classification)."""

    def __init__(self, name: str, config: Dict[str, Any], scene: Scene, sizes: Sizes, device: torch.device):
        self.name, self.device, self.scene, self.sizes = name, device, scene, sizes
        torch.manual_seed(0)
        if name == "m3amba":
            self.net: nn.Module = build_multimodal_model(name, sizes.bands, sizes.aux_bands, sizes.classes, **config)
            self.optimizer: torch.optim.Optimizer = self.net.configure_optimizers(LEARNING_RATE, 1)[0]
            self._train_batch = self._crop_batch()
        else:
            self.net = build_model(name, sizes.bands, sizes.classes, **config)
            self.optimizer = torch.optim.Adam(self.net.parameters(), lr=LEARNING_RATE)
            valid = np.ones(scene.labels.shape, dtype=bool)          # a generated scene: no nodata
            guide = self.net.make_guide(scene.raw, scene.labels, valid)
            self._x = torch.from_numpy(scene.x)[None].to(device)
            self._valid = torch.from_numpy(valid)[None].to(device)
            self._y = torch.from_numpy(scene.labels)[None].to(device)
            self._guide = None if guide is None else guide[None].to(device)
        self.net.to(device)

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    def _crop_batch(self) -> Tuple[Tensor, Tensor, Tensor]:
        """(hsi, aux, labels) of ``crop_batch`` training crops on the device, chosen as the trainer chooses
        them: crops of the stride-8 grid that hold a training pixel (engine/training/crops.py)."""
        crop, labels = self.net.crop, self.scene.labels
        grid = plan_crops(self.sizes.rows, self.sizes.cols, crop, TRAIN_STRIDE)
        batch = crops_covering(grid, labels >= 0, crop)[:self.sizes.crop_batch]

        def stack(a: np.ndarray, value: float = 0) -> Tensor:
            padded, offset = pad(a, batch, crop, value=value)
            return cut(padded, batch, crop, offset).to(self.device)

        return stack(self.scene.x), stack(self.scene.aux), stack(labels[None], value=-1)[:, 0]

    def train_step(self, precision: Precision, scaler: Optional["torch.amp.GradScaler"]) -> None:
        """Forward and loss under ``precision``'s autocast, then the trainers' ``optimizer_step`` (backward,
        with fp16's gradient scaling): the step of engine/training/train.py without its
        windows and bookkeeping."""
        self.net.train()
        with precision.autocast(self.device):
            if self.name == "m3amba":
                hsi, aux, labels = self._train_batch
                loss = m3amba_loss(self.net(hsi, aux), labels)
            else:
                out = self.net(self._x, self._guide, self._valid)
                loss = F.cross_entropy(out.logits.float(), self._y, ignore_index=-1)
                if out.aux_loss is not None:
                    loss = loss + out.aux_loss.float()
        optimizer_step(self.optimizer, loss, scaler)

    def classify(self, precision: Precision) -> Tensor:
        """(Ncls, H, W) fp32 logits of the whole scene in eval mode under ``precision``, on the CPU."""
        self.net.eval()
        with torch.no_grad(), precision.autocast(self.device):
            if self.name == "m3amba":
                grid = plan_crops(self.sizes.rows, self.sizes.cols, self.net.crop, PREDICT_STRIDE)
                logits, _ = average_logits(self.net, self.scene.x, self.scene.aux, grid, self.net.crop,
                                           batch_size=self.sizes.crop_batch, device=self.device)
                return torch.from_numpy(logits)
            return self.net(self._x, valid=self._valid).logits[0].float().cpu()


def agreement(reduced: Tensor, reference: Tensor) -> Dict[str, float]:
    """Largest |logit difference|, the largest |logit| for scale, and the share of pixels with the same
    argmax class, of a reduced-precision classification against the fp32 one (both (Ncls, H, W))."""
    same = reduced.argmax(0) == reference.argmax(0)
    return {"max_abs_logit_diff": float((reduced - reference).abs().max()),
            "max_abs_logit": float(reference.abs().max()), "argmax_agreement": float(same.float().mean())}


def bench_model(name: str, width: str, scene: Scene, sizes: Sizes, device: torch.device,
                repeats: int) -> Dict[str, Any]:
    """One row: parameters, training-step and classification times with peak memory, and the
    bf16-vs-fp32 agreement of the classification."""
    config = model_config(name, width, sizes)
    job = Job(name, config, scene, sizes, device)
    precision = choose_precision(device)
    scaler = precision.scaler(device)
    row: Dict[str, Any] = {"config": config, "parameters": job.parameters, "precision": precision.name}
    _reset_peak(device)
    train = time_ms(lambda: job.train_step(precision, scaler), device, repeats)
    row.update(train_ms=train["best_ms"], train_median_ms=train["median_ms"], train_peak_mb=_peak_mb(device))
    _reset_peak(device)
    classify = time_ms(lambda: job.classify(precision), device, repeats)
    row.update(classify_ms=classify["best_ms"], classify_median_ms=classify["median_ms"],
               classify_peak_mb=_peak_mb(device))
    row.update(agreement(job.classify(Precision("bf16")), job.classify(Precision("fp32"))))
    return row


# --------------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 3) -> str:
    """Numbers with ``digits`` significant digits (thousands separated), None as '–'."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}g}" if abs(value) < 10 ** digits else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _config_text(config: Dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items())


def render(report: Dict[str, Any]) -> str:
    """The markdown report: environment, the scan table, the model table."""
    env = report["environment"]
    lines = ["# GPU check", "", f"`{env['command']}`", "",
             f"{env['date']} · {env['device']} · torch {env['torch']} (CUDA {env['cuda']}) · "
             f"{env['threads']} CPU threads", "",
             f"mamba-ssm: {env['mamba_ssm']} · causal-conv1d: {env['causal_conv1d']} · "
             f"wall {report.get('wall_s', 0):.0f} s of a {env['budget_s']:.0f} s budget", "",
             f"Scene: synthetic, {env['scene']}. Times are the best of {env['repeats']} after a warm-up "
             "(median in the JSON).", "",
             "## Selective scan (fp32)", "",
             "| shape | B × d × L | backend | fwd ms | f+b ms | M tok/s fwd | peak MB f+b | note |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["scan"]:
        s = r["shape"]
        lines.append(f"| {r['label']} | {s['batch']} × {s['d']} × {s['length']} | {r['backend']} | "
                     f"{_fmt(r.get('fwd_ms'))} | {_fmt(r.get('fb_ms'))} | {_fmt(r.get('mtok_per_s_fwd'))} | "
                     f"{_fmt(r.get('peak_mb'))} | {r.get('note', '')} |")
    lines += ["", "## Models: training step, whole-image classification, bf16 vs fp32", "",
              "Train step: forward + loss + backward + optimizer step (HSI models: the whole image; M3amba: "
              "one batch of crops). Classify: the whole image in eval mode (M3amba: every crop of the "
              f"stride-{PREDICT_STRIDE} grid, averaged). Agreement: the classification under bf16 autocast "
              "against fp32, random weights after the timed steps.", "",
              "| model | width | config | params | precision | train ms | classify ms | peak MB train | "
              "peak MB classify | max \\|Δlogit\\| | max \\|logit\\| | argmax agree % | note |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["models"]:
        agree = r.get("argmax_agreement")
        lines.append(f"| {r['model']} | {r['width']} | {_config_text(r.get('config', {}))} | "
                     f"{_fmt(r.get('parameters'))} | {r.get('precision', '–')} | {_fmt(r.get('train_ms'))} | "
                     f"{_fmt(r.get('classify_ms'))} | {_fmt(r.get('train_peak_mb'))} | "
                     f"{_fmt(r.get('classify_peak_mb'))} | {_fmt(r.get('max_abs_logit_diff'))} | "
                     f"{_fmt(r.get('max_abs_logit'))} | {_fmt(None if agree is None else 100 * agree, 4)} | "
                     f"{r.get('note', '')} |")
    return "\n".join(lines) + "\n"


def write_reports(report: Dict[str, Any], out: Path) -> str:
    """Write the JSON to ``out`` and the markdown beside it; returns the markdown."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    markdown = render(report)
    out.with_suffix(".md").write_text(markdown)
    return markdown


def environment(args: argparse.Namespace, argv: List[str], sizes: Sizes, device: torch.device) -> Dict[str, Any]:
    return {"command": "python bench/gpu.py " + " ".join(shlex.quote(a) for a in argv),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "cuda": torch.version.cuda or "none",
            "mamba_ssm": mamba_ssm_status(),
            "causal_conv1d": "installed" if importlib.util.find_spec("causal_conv1d") else "not installed",
            "scene": f"{sizes.bands} bands, {sizes.rows} x {sizes.cols} px, {sizes.classes} classes, "
                     f"{sizes.train_pixels_per_class} training px per class; M3amba: {sizes.aux_bands} aux bands, "
                     f"batch {sizes.crop_batch}",
            "repeats": args.repeats, "budget_s": args.budget_s, "quick": args.quick}


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------


def _measure(row: Dict[str, Any], work: Callable[[], Dict[str, Any]], deadline: float,
             device: torch.device) -> None:
    """Fill ``row`` from ``work()``, or with why it did not run: over the budget, out of memory, or an
    error (with its traceback on stderr), so that one failure does not lose the rest of a GPU run."""
    if time.monotonic() > deadline:
        row["note"] = "skipped: time budget spent"
        return
    try:
        row.update(work())
    except torch.cuda.OutOfMemoryError as exc:
        row["note"] = f"out of GPU memory: {str(exc).splitlines()[0]}"
    except Exception as exc:  # recorded in the report; the remaining rows still run
        traceback.print_exc()
        row["note"] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()


def run(args: argparse.Namespace, argv: List[str]) -> Dict[str, Any]:
    device = torch.device(args.device)
    sizes = QUICK if args.quick else FULL
    started = time.monotonic()
    deadline = started + args.budget_s
    out = Path(args.out)
    report: Dict[str, Any] = {"environment": environment(args, argv, sizes, device), "scan": [], "models": []}

    def save() -> None:
        report["wall_s"] = time.monotonic() - started
        write_reports(report, out)

    for label, shape in sizes.scan_shapes:
        for backend_label, backend, why_not in scan_backends(device):
            row: Dict[str, Any] = {"label": label, "shape": dataclasses.asdict(shape), "backend": backend_label}
            if backend is None:
                row["note"] = f"skipped: {why_not}"
            else:
                _measure(row, lambda: bench_scan(shape, backend, device, args.repeats), deadline, device)
            report["scan"].append(row)
            print(json.dumps(row), flush=True)
            save()
    scene = synthetic_scene(sizes)
    for width in WIDTHS:                       # every model at the plugin's widths before any paper width
        for name in MODELS:
            row = {"model": name, "width": width}
            _measure(row, lambda: bench_model(name, width, scene, sizes, device, args.repeats), deadline, device)
            report["models"].append(row)
            print(json.dumps(row), flush=True)
            save()
    return report


def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                        help="cuda (default; the point of this check) or cpu (with --quick: the CI test)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny scene, shapes and models: runs in seconds, its numbers mean nothing")
    parser.add_argument("--repeats", type=int, help="timed calls after one warm-up (default 3; --quick 1)")
    parser.add_argument("--budget-s", type=float, default=360.0,
                        help="start no row after this many seconds (default 360, leaving room in 8 minutes)")
    parser.add_argument("--out", default=str(RESULTS / "gpu.json"), help="result JSON (the .md goes beside it)")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch.cuda.is_available() is False: use --device cpu --quick")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    report = run(parse_args(argv), argv)
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
