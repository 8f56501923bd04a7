"""Whole-image training from sparse labels (MODELS.md §3.3 and §4.10), with windows for large scenes.

The models see the whole scene at batch 1; only the training pixels carry a label (cross-entropy with
ignore index -1) and the model's own auxiliary loss (CSSMamba's cluster loss) is added. Each epoch is
scored by the overall accuracy on the validation pixels of the full image; the state of the best epoch is
kept (val OA >= best, so the later epoch wins ties), optionally with early stopping.

Whole-scene training reads that score from the next epoch's training forward instead of running an
extra validation forward: the forward sees the whole image with the weights the previous epoch left,
and the models compute the same logits in training mode as in eval mode (HSIClassifier's contract).
That saves one full-image forward per epoch (about a fifth of CSSMamba's epoch on CPU) and gives the
same scores and the same chosen epoch; only the last epoch needs its own validation forward.

A scene whose training step does not fit the memory budget is cut into a grid of overlapping windows
(``plan_windows``), generalising MambaHSI's split into two halves that overlap by 10 rows and CSSMamba's
four quadrants with a 5 px margin. Each window that holds training pixels takes part in one optimizer
step per epoch (``windows_per_step`` windows per step: gradient accumulation, or one window per process
under torchrun, engine/distributed.py); validation then runs tiled through ``engine.tiling.predict_array``.

No GDAL here: this module also runs on GPU machines without it.
"""

from __future__ import annotations

import logging
import math
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data.splits import Split
from . import distributed
from .device import resolve_device
from .memory import physical_memory_bytes
from .precision import PRECISIONS, Precision, choose_precision
from .models.base import HSIClassifier, ModelOutput
from .ssm import scan

__all__ = ["TrainConfig", "TrainResult", "TrainingCancelled", "Window", "plan_windows", "seed_everything",
           "estimate_training_bytes_per_pixel", "estimate_epoch_seconds", "default_memory_budget_mb", "EpochBook",
           "optimizer_step", "train_model", "whole_scene_fits"]

_log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
WINDOW_MARGIN = 5                # px of context beyond each window's share (MambaHSI's halves, CSSMamba's quadrants)
PROBE_SIZE = 48                  # side of the window the memory probe trains on
CPU_BUDGET_FRACTION = 0.5        # default budget: this share of physical RAM ...
CUDA_BUDGET_FRACTION = 0.8       # ... or of the GPU memory free at the start
FALLBACK_BUDGET_MB = 4096        # when physical RAM cannot be read
CPU_BACKWARD_FACTOR = 1.75       # saved activations x this = estimated peak of a training step on CPU

Progress = Callable[..., None]   # progress(fraction, text="")
Cancelled = Callable[[], bool]


@dataclass
class TrainConfig:
    """Training settings; the defaults are the MambaHSI/CSSMamba protocol (Adam 3e-4, 200 epochs).

    patience: stop after this many epochs without a strictly higher val OA (None: run every epoch).
    memory_budget_mb: memory a training step may use (None: ``default_memory_budget_mb``); scenes that
    exceed it train on overlapping windows. threads: torch CPU threads (None: leave torch's setting).
    precision: "auto" (bf16 on GPUs that have it, else fp16 with gradient scaling, fp32 on the CPU;
    engine/precision.py), or "bf16", "fp16", "fp32"; weights stay fp32 in every case.
    windows_per_step: training windows whose gradients one optimizer step averages (gradient
    accumulation; the scene is cut into at least that many windows). Under torchrun it is the number of
    processes, each computing one window of the step (engine/distributed.py).
    """

    epochs: int = 200
    lr: float = 3e-4
    device: str = "auto"
    seed: int = 0
    patience: Optional[int] = None
    memory_budget_mb: Optional[float] = None
    threads: Optional[int] = None
    precision: str = "auto"
    windows_per_step: int = 1
    class_ids: Optional[Tuple[int, ...]] = None   # the user's class ids in the model's order, for the log

    def class_label(self, index: int) -> str:
        """How the log names class ``index``: the user's class id where known ('class 3'), else 'index 2'."""
        if self.class_ids is not None and index < len(self.class_ids):
            return f"class {self.class_ids[index]}"
        return f"index {index}"

    def __post_init__(self) -> None:
        if int(self.epochs) != self.epochs or self.epochs < 1:
            raise ValueError(f"epochs must be a whole number >= 1, got {self.epochs}")
        if not self.lr > 0:
            raise ValueError(f"learning rate must be > 0, got {self.lr}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 epoch or None (no early stopping), got {self.patience}")
        if self.memory_budget_mb is not None and not self.memory_budget_mb > 0:
            raise ValueError(f"memory_budget_mb must be > 0, got {self.memory_budget_mb}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {self.threads}")
        if isinstance(self.windows_per_step, bool) or not isinstance(self.windows_per_step, int) \
                or self.windows_per_step < 1:
            raise ValueError(f"windows_per_step must be a whole number >= 1, got {self.windows_per_step!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")


class Window(NamedTuple):
    """A training window: rows [row0, row1) x cols [col0, col1) of the scene."""

    row0: int
    row1: int
    col0: int
    col1: int

    @property
    def pixels(self) -> int:
        return (self.row1 - self.row0) * (self.col1 - self.col0)

    @property
    def slices(self) -> Tuple[slice, slice]:
        return slice(self.row0, self.row1), slice(self.col0, self.col1)


@dataclass
class TrainResult:
    """What training produced. ``state_dict`` is a CPU copy of the best epoch's weights and persistent
    buffers; ``history`` holds one dict per epoch run (epoch, loss, aux_loss, val_oa, steps, seconds).
    ``best_val_oa`` is NaN when there were no validation pixels (the last epoch is then kept)."""

    state_dict: Dict[str, Tensor]
    best_epoch: int
    best_val_oa: float
    history: List[dict]
    device: str
    backend: str
    threads: int
    seconds: float
    windows: List[Window] = field(default_factory=list)
    precision: str = "fp32"              # what the run computed in, with the reason (Precision.describe)
    estimated_epoch_seconds: float = math.nan  # the estimate logged before epoch 1 (estimate_epoch_seconds)
    # predict_array's tiling for this scene ({} = one pass): what validation used, and what assessing
    # the model on the same scene should use, since one pass may not fit the memory budget
    validation_tiling: Dict[str, int] = field(default_factory=dict)


class TrainingCancelled(Exception):
    """Raised when ``cancelled()`` returned True; no state is returned and nothing may be saved."""


# ------------------------------------------------------------------------------------------------
# Windows


def _spans(length: int, parts: int, margin: int) -> List[Tuple[int, int]]:
    """Split [0, length) at floor(k·length/parts) and widen every share by ``margin`` on both sides
    (clipped to the axis): parts=2 gives MambaHSI's [0, ⌊L/2⌋+m) and [⌊L/2⌋−m, L)."""
    cuts = [k * length // parts for k in range(parts + 1)]
    return [(max(cuts[k] - margin, 0), min(cuts[k + 1] + margin, length)) for k in range(parts)]


def _max_span(length: int, parts: int, margin: int) -> int:
    return max(stop - start for start, stop in _spans(length, parts, margin))


def plan_windows(rows: int, cols: int, max_pixels: int, margin: int = WINDOW_MARGIN,
                 multiple_of: int = 1) -> List[Window]:
    """The fewest overlapping windows, in a grid, that cover a rows x cols scene with at most
    ``max_pixels`` pixels each, their count a multiple of ``multiple_of`` (the windows of one optimizer
    step, e.g. one per torchrun process); row-major order.

    Each axis is cut into equal shares (at floor(k·L/n)) widened by ``margin`` px on each interior side,
    so neighbouring windows overlap by exactly 2·margin px and every pixel is covered. The whole scene
    is one window when it fits. Among grids with the fewest windows the one with the smallest largest
    window wins, then the one that cuts rows rather than columns, as MambaHSI does. Raises ValueError
    when not even windows of one share plus margins fit.
    """
    if rows < 1 or cols < 1:
        raise ValueError(f"cannot plan windows on an empty scene of {rows} x {cols} px")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    best: Optional[Tuple[int, int, int, int]] = None          # (count, largest window, n_cols, n_rows)
    for n_rows in range(1, rows + 1):
        if best is not None and n_rows > best[0]:
            break                                             # every later grid has more windows
        row_span = _max_span(rows, n_rows, margin)
        col_cap = max_pixels // row_span
        if col_cap < 1:
            continue
        if cols <= col_cap:
            n_cols = 1
        else:
            # A share of c px needs c + 2·margin <= col_cap in the interior: start just below that count.
            n_cols = max(1, -(-cols // max(col_cap - 2 * margin, 1)) - 1)
            while n_cols <= cols and _max_span(cols, n_cols, margin) > col_cap:
                n_cols += 1
            if n_cols > cols:
                continue
        while n_cols <= cols and (n_rows * n_cols) % multiple_of:
            n_cols += 1
        if n_cols > cols:
            continue
        candidate = (n_rows * n_cols, row_span * _max_span(cols, n_cols, margin), n_cols, n_rows)
        if best is None or candidate < best:
            best = candidate
    if best is None:
        raise ValueError(f"the memory budget allows training windows of only {max_pixels} px, too few for a "
                         f"{rows} x {cols} px scene with a {margin} px margin; raise the memory budget")
    _, _, n_cols, n_rows = best
    return [Window(r0, r1, c0, c1) for r0, r1 in _spans(rows, n_rows, margin) for c0, c1 in _spans(cols, n_cols, margin)]


# ------------------------------------------------------------------------------------------------
# Memory


def default_memory_budget_mb(device: torch.device) -> float:
    """Half of physical RAM on CPU (QGIS and the raster need the rest); 80 % of the GPU memory free now on CUDA."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return CUDA_BUDGET_FRACTION * free / 2**20
    total = physical_memory_bytes()
    return FALLBACK_BUDGET_MB if total is None else CPU_BUDGET_FRACTION * total / 2**20


def probe_origin(valid: Optional[np.ndarray], rows: int, cols: int) -> Tuple[int, int]:
    """Top-left corner of the rows x cols crop of ``valid`` (H, W) holding the most valid pixels (the first
    such crop in raster order); (0, 0) without a mask. A satellite scene's corners are often nodata, and a
    probe there would measure a model that routes no token."""
    if valid is None:
        return 0, 0
    table = np.zeros((valid.shape[0] + 1, valid.shape[1] + 1), np.int64)
    table[1:, 1:] = valid.astype(np.int64).cumsum(0).cumsum(1)
    counts = table[rows:, cols:] - table[:-rows, cols:] - table[rows:, :-cols] + table[:-rows, :-cols]
    row0, col0 = np.unravel_index(int(counts.argmax()), counts.shape)
    return int(row0), int(col0)


def estimate_training_bytes_per_pixel(model: HSIClassifier, x: Tensor, guide: Optional[Tensor],
                                      precision: Precision, valid: Optional[np.ndarray] = None) -> float:
    """Memory of one training step per pixel, measured on a PROBE_SIZE² crop of ``x`` (1, Nb, H, W), the
    one with the most ``valid`` pixels (``probe_origin``).

    Why measured: the models' memory is linear in the pixel count (the scans and per-pixel layers
    dominate) but its slope depends on the architecture and config, so a formula would be one more
    thing to keep in sync. CUDA: the peak of ``torch.cuda.max_memory_allocated`` over one forward and
    backward. CPU (no resettable peak counter): the bytes of the distinct non-parameter tensors that
    autograd saves for the backward, counted with ``saved_tensors_hooks`` during one forward, times
    CPU_BACKWARD_FACTOR for the gradients that coexist with them during the backward (measured peak RSS
    of a forward + backward over the saved bytes: 1.16 for CSSMamba, 1.49 for MambaHSI, at width 32 on
    32² and 64² crops of 218 bands; the per-pixel figure was the same at both sizes). Both include the
    fixed parts of a small crop, so the per-pixel figure errs on the safe side. The model's buffers
    (e.g. CSSMamba's EMA prototypes, updated in a training forward) are restored afterwards.
    """
    crop, guide_crop = _probe_crop(x, guide, valid)
    params = {p.data_ptr() for p in model.parameters()}
    with _state_restored(model):
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
            torch.cuda.reset_peak_memory_stats(x.device)
            base = torch.cuda.memory_allocated(x.device)
            with precision.autocast(x.device):
                out = model(crop, guide_crop)
                loss = out.logits.float().square().mean() + (0 if out.aux_loss is None else out.aux_loss)
            loss.backward()
            torch.cuda.synchronize(x.device)
            used = torch.cuda.max_memory_allocated(x.device) - base
        else:
            seen: Dict[Tuple[int, int], int] = {}

            def pack(t: Tensor) -> Tensor:
                if t.data_ptr() not in params:
                    seen[(t.data_ptr(), t.numel())] = t.numel() * t.element_size()
                return t

            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                out = model(crop, guide_crop)
            used = CPU_BACKWARD_FACTOR * (sum(seen.values()) + out.logits.numel() * out.logits.element_size())
        del out
    return max(float(used), 1.0) / (crop.shape[2] * crop.shape[3])


def _probe_crop(x: Tensor, guide: Optional[Tensor], valid: Optional[np.ndarray]) -> Tuple[Tensor, Optional[Tensor]]:
    """The PROBE_SIZE² crop of ``x`` (and of ``guide``) with the most valid pixels (``probe_origin``)."""
    rows, cols = min(x.shape[2], PROBE_SIZE), min(x.shape[3], PROBE_SIZE)
    row0, col0 = probe_origin(valid, rows, cols)
    window = (slice(None), slice(None), slice(row0, row0 + rows), slice(col0, col0 + cols))
    return x[window], None if guide is None else guide[window]


@contextmanager
def _state_restored(model: nn.Module) -> Iterator[None]:
    """Run probe steps on ``model`` and leave it as it was: buffers (EMA prototypes) restored, no gradients."""
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    try:
        yield
    finally:
        model.zero_grad(set_to_none=True)
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])


# ------------------------------------------------------------------------------------------------
# Reproducibility and devices


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all CUDA devices too). Weights are initialised when a model is
    built, so call this before ``build_model`` as well for a reproducible run; train_model calls it."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


@contextmanager
def deterministic(device: torch.device, threads: Optional[int]) -> Iterator[None]:
    """Deterministic kernels and the thread count for the run; the process-wide settings are restored.

    CPU: ``torch.use_deterministic_algorithms`` (warn-only, so an op without a deterministic variant does
    not stop training; measured on CSSMamba at width 32: no cost, and bit-identical weights run to run). CUDA: cuDNN deterministic with benchmark off, as the reference;
    scatter/index atomics may still make CUDA runs differ in the last bits.
    """
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
             torch.utils.deterministic.fill_uninitialized_memory)
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        if device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
            # Filling every torch.empty with NaN only catches reads of uninitialised memory; it costs a
            # memset per allocation and does not change the results of correct code.
            torch.utils.deterministic.fill_uninitialized_memory = False
        else:
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[3], saved[4]
        torch.utils.deterministic.fill_uninitialized_memory = saved[5]


# ------------------------------------------------------------------------------------------------
# Per-epoch bookkeeping


def state_copy(model: nn.Module, buffers: Optional[Dict[str, Tensor]] = None) -> Dict[str, Tensor]:
    """A CPU copy of ``model.state_dict()``; entries in ``buffers`` replace the model's own (the buffers
    as they were before a training forward changed them, e.g. CSSMamba's EMA prototypes)."""
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    state.update(buffers or {})
    return state


def buffer_copy(model: nn.Module) -> Dict[str, Tensor]:
    """CPU copies of the persistent buffers: the part of the state that a training forward may change."""
    names = {name for name, _ in model.named_buffers()}
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items() if k in names}


class EpochBook:
    """The trainers' per-epoch bookkeeping: history, the best epoch and its state, early stopping, progress.

    ``record`` takes one finished epoch; the best is the highest val OA with ties going to the later
    epoch (MambaHSI's rule), or the last epoch when there are no validation pixels (val OA NaN).
    ``state`` is called only when the epoch becomes the best, so copying weights costs nothing otherwise.
    """

    def __init__(self, epochs: int, patience: Optional[int], report: Progress, log: logging.Logger) -> None:
        self.epochs, self.patience, self.report, self.log = epochs, patience, report, log
        self.history: List[dict] = []
        self.best_state: Optional[Dict[str, Tensor]] = None
        self.best_oa, self.best_epoch, self.since_best = -math.inf, 0, 0

    def record(self, epoch: int, loss: float, aux_loss: Optional[float], val_oa: float, steps: int,
               seconds: float, state: Callable[[], Dict[str, Tensor]]) -> bool:
        """Book one epoch; True when early stopping ends the run here."""
        scored = not math.isnan(val_oa)
        improved = not scored or val_oa > self.best_oa
        if not scored or val_oa >= self.best_oa:
            self.best_oa, self.best_epoch, self.best_state = val_oa, epoch, state()
        self.since_best = 0 if improved else self.since_best + 1
        self.history.append({"epoch": epoch, "loss": loss, "aux_loss": aux_loss, "val_oa": val_oa,
                             "steps": steps, "seconds": seconds})
        if epoch == 1:
            self.log.info("first epoch took %.2f s (%d optimizer step(s))", seconds, steps)
        self.log.debug("epoch %d: loss %.4f, val OA %.4f, %.2f s", epoch, loss, val_oa, seconds)
        self.report(epoch / self.epochs, f"epoch {epoch}/{self.epochs}: loss {loss:.4f}, val OA {val_oa:.4f} "
                                         f"(best {self.best_oa:.4f} at epoch {self.best_epoch})")
        if self.patience is not None and self.since_best >= self.patience:
            self.log.info("early stop after epoch %d: no better val OA for %d epochs", epoch, self.patience)
            return True
        return False

    def finish(self, model: nn.Module, started: float, device: torch.device, backend: str,
               **extra) -> TrainResult:
        """Leave ``model`` holding the best state, on the CPU, in eval mode, and return the run's result
        (``extra``: further TrainResult fields). Call it inside the run's thread settings, whose thread
        count the result records."""
        assert self.best_state is not None                     # at least one epoch ran
        model.to("cpu").load_state_dict(self.best_state)
        model.eval()
        total = time.perf_counter() - started
        self.log.info("trained %d epochs in %.1f s (%.2f s/epoch); best epoch %d, val OA %.4f",
                      len(self.history), total, total / len(self.history), self.best_epoch, self.best_oa)
        return TrainResult(state_dict=self.best_state, best_epoch=self.best_epoch, best_val_oa=float(self.best_oa),
                           history=self.history, device=str(device), backend=backend,
                           threads=torch.get_num_threads(), seconds=total, **extra)


# ------------------------------------------------------------------------------------------------
# Training


def _check_inputs(image: np.ndarray, raw: np.ndarray, valid: np.ndarray, split: Split) -> np.ndarray:
    """Validate shapes and values; return the training label map restricted to valid pixels."""
    if image.ndim != 3:
        raise ValueError(f"image must be (bands, rows, cols), got shape {image.shape}")
    if raw.shape != image.shape:
        raise ValueError(f"raw spectra have shape {raw.shape} but the normalised image has {image.shape}")
    grid = image.shape[1:]
    for name, array in (("valid mask", valid), ("training labels", split.train),
                        ("validation labels", split.validation)):
        if array.shape != grid:
            raise ValueError(f"{name} have shape {array.shape} but the image is {grid[0]} x {grid[1]} px")
    if not np.isfinite(image).all():
        raise ValueError("the normalised image contains NaN or Inf; normalise with apply_stretch, "
                         "which sets invalid pixels to 0")
    train = np.where(valid, split.train, -1).astype(np.int64)
    if not (train >= 0).any():
        raise ValueError("there are no training pixels on valid (non-nodata) pixels; check that the labels "
                         "or ROIs overlap the raster's data")
    return train


def _validation_tiling(max_pixels: int) -> Dict[str, int]:
    """Tiles that fit the training window budget (they fit without gradients all the more)."""
    from .tiling import DEFAULT_OVERLAP  # lazy: only large scenes need it

    tile = max(math.isqrt(max_pixels), 2)
    return {"tile": tile, "overlap": min(DEFAULT_OVERLAP, tile // 4)}


def _validation_oa(model: HSIClassifier, x: Tensor, image: np.ndarray,
                   valid: np.ndarray, val: np.ndarray, val_mask: np.ndarray, device: torch.device,
                   precision: Precision, tiling: Dict[str, int]) -> float:
    """Overall accuracy on the validation pixels, predicted on the full image (``tiling`` empty, one pass)
    or through predict_array's overlapping tiles when one pass would exceed the memory budget. Like
    prediction, it needs no labels: no guide is passed."""
    model.eval()
    try:
        with torch.no_grad(), precision.autocast(device):
            if not tiling:
                predicted = model(x).logits[0].argmax(0).cpu().numpy()
            else:
                from .tiling import predict_array  # lazy: only large scenes need it

                probabilities, _ = predict_array(model, image, valid, device=device, **tiling)
                predicted = probabilities.argmax(0)
    finally:
        model.train()
    return _score(predicted, val, val_mask)


def _score(predicted: np.ndarray, val: np.ndarray, val_mask: np.ndarray) -> float:
    """Overall accuracy of the (H, W) class map on the validation pixels."""
    return float((predicted[val_mask] == val[val_mask]).mean())


def _plan(model: HSIClassifier, x: Tensor, guide: Optional[Tensor], config: TrainConfig, precision: Precision,
          valid: np.ndarray, min_windows: int = 1) -> Tuple[List[Window], int]:
    """Training windows within the memory budget (a multiple of ``min_windows``: the windows of one
    optimizer step), and the most pixels a window may hold.

    The budget pays for the weights, their gradients and Adam's two moments (4x the parameters), the
    scene itself on a GPU, and then a measured number of bytes per pixel of the window.
    """
    device = x.device
    budget_mb = config.memory_budget_mb or default_memory_budget_mb(device)
    per_pixel = estimate_training_bytes_per_pixel(model, x, guide, precision, valid)
    fixed = 4 * sum(p.numel() * p.element_size() for p in model.parameters())
    if device.type == "cuda":
        fixed += x.numel() * x.element_size()
    max_pixels = int((budget_mb * 2**20 - fixed) // per_pixel)
    if max_pixels < 1:
        raise ValueError(f"the memory budget of {budget_mb:.0f} MB does not even hold the model's weights and "
                         f"optimizer state ({fixed / 2**20:.0f} MB); raise the memory budget")
    rows, cols = x.shape[2:]
    windows = plan_windows(rows, cols, max_pixels, multiple_of=min_windows)
    _log.info("estimated training memory %.0f MB for the whole scene (%.0f bytes per pixel; budget %.0f MB): "
              "%d window(s)", (rows * cols * per_pixel + fixed) / 2**20, per_pixel, budget_mb, len(windows))
    return windows, max_pixels


def estimate_epoch_seconds(model: HSIClassifier, x: Tensor, guide: Optional[Tensor], precision: Precision,
                           valid: np.ndarray, step_pixels: int, validation_pixels: int) -> float:
    """Seconds an epoch will take, from one timed training step (forward, backward) on the probe crop.

    The models' cost is linear in the pixel count (MODELS.md: scans and per-pixel layers), so the crop's
    seconds per pixel scale to ``step_pixels`` (the training windows' pixels) plus a third of it for
    ``validation_pixels`` (a forward without the backward). A first, untimed step absorbs one-off costs
    (the compiled scan kernel's loading, allocator warm-up). The small crop's fixed costs make this
    err on the slow side; the log compares it with the measured time at the end. The model's buffers
    and gradients are restored."""
    crop, guide_crop = _probe_crop(x, guide, valid)
    with _state_restored(model):
        for timed in (False, True):
            if timed:
                _synchronize(x.device)
                started = time.perf_counter()
            with precision.autocast(x.device):
                out = model(crop, guide_crop)
                loss = out.logits.float().square().mean() + (0 if out.aux_loss is None else out.aux_loss.float())
            loss.backward()
            _synchronize(x.device)
        seconds = time.perf_counter() - started
    return seconds / (crop.shape[2] * crop.shape[3]) * (step_pixels + validation_pixels / 3)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _duration(seconds: float) -> str:
    """'42 s', '7.5 min', '2.3 h' for the log."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def whole_scene_fits(model: HSIClassifier, image: np.ndarray, guide: Optional[Tensor], valid: np.ndarray,
                     config: TrainConfig) -> bool:
    """Whether one training step of ``model`` on the whole scene fits the memory budget of
    ``config``'s device (the same estimate as the trainer's window plan); used to size a model for a GPU.
    ``guide``: the model's ``make_guide`` (it depends on the classes and clusters, not on the width, so
    the caller computes it once for every size it tries). The model is left on the CPU."""
    device = resolve_device(config.device)
    precision = choose_precision(device, config.precision)
    try:
        model.to(device).train()
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None].to(device)
        g = None if guide is None else guide.to(device=device, dtype=torch.int64)[None]
        _, max_pixels = _plan(model, x, g, config, precision, valid)
        return image.shape[1] * image.shape[2] <= max_pixels
    except (ValueError, torch.cuda.OutOfMemoryError):
        return False
    finally:
        model.to("cpu")
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _forward(model: HSIClassifier, x: Tensor, y: Tensor, guide: Optional[Tensor], window: Window,
             n_labels: int, device: torch.device, precision: Precision) -> Tuple[Tensor, ModelOutput]:
    """The training forward on one window: (CE on its training pixels + the model's auxiliary loss, output)."""
    crop = (slice(None), slice(None)) + window.slices
    with precision.autocast(device):
        out = model(x[crop], None if guide is None else guide[crop])
        if out.logits.shape[1] < n_labels:
            raise ValueError(f"the model predicts {out.logits.shape[1]} classes but the labels hold {n_labels}; "
                             f"build it with n_classes={n_labels}")
        loss = F.cross_entropy(out.logits.float(), y[(slice(None),) + window.slices], ignore_index=-1)
        if out.aux_loss is not None:
            loss = loss + out.aux_loss.float()
    return loss, out


def optimizer_step(optimizer: torch.optim.Optimizer, loss: Tensor, scaler: Optional["torch.amp.GradScaler"]) -> None:
    """One optimizer step; with fp16's GradScaler the loss is scaled and a step with inf/NaN gradients skipped."""
    optimizer.zero_grad(set_to_none=True)
    _backward(loss, scaler)
    _step(optimizer, scaler)


def _backward(loss: Tensor, scaler: Optional["torch.amp.GradScaler"]) -> None:
    (loss if scaler is None else scaler.scale(loss)).backward()


def _step(optimizer: torch.optim.Optimizer, scaler: Optional["torch.amp.GradScaler"]) -> None:
    if scaler is None:
        optimizer.step()
        return
    scaler.step(optimizer)
    scaler.update()


def _windows_of_this_process(batch: List[Window], group: Optional[distributed.Group]) -> List[Tuple[Window, float]]:
    """(window, loss weight) pairs this process computes for one optimizer step over ``batch``: all of them,
    each weighted 1/len(batch), in a single process (gradient accumulation); its own under DDP, weighted so
    that DDP's mean over ranks is the same mean over the batch (a rank without a window of its own runs
    the first one at weight 0, since every rank must take part in each step)."""
    if group is None:
        return [(w, 1.0 / len(batch)) for w in batch]
    if group.rank < len(batch):
        return [(batch[group.rank], group.world_size / len(batch))]
    return [(batch[0], 0.0)]


def train_model(model: HSIClassifier, image: np.ndarray, raw: np.ndarray, valid: np.ndarray, split: Split,
                config: Optional[TrainConfig] = None, progress: Optional[Progress] = None,
                cancelled: Optional[Cancelled] = None) -> TrainResult:
    """Train ``model`` on one scene and return the best epoch's state.

    image: (Nb, H, W) float32 normalised (apply_stretch); raw: (Nb, H, W) float32 spectra as read, for
    ``model.make_guide``; valid: (H, W) bool, False under nodata; split: label maps (class index, -1 =
    none). progress(fraction, text) is called after every epoch (and every window when there are
    several); cancelled() is polled before every optimizer step and every validation and raises
    TrainingCancelled. On return the model holds the best state, on the CPU, in eval mode.
    """
    config = config or TrainConfig()
    image = np.ascontiguousarray(image, dtype=np.float32)
    valid = np.asarray(valid, dtype=bool)
    train = _check_inputs(image, raw, valid, split)
    val = np.asarray(split.validation, dtype=np.int64)
    val_mask = (val >= 0) & valid
    group = distributed.current()
    device = resolve_device(config.device)
    if group is not None:
        device = group.device(device)
    per_step = config.windows_per_step if group is None else group.world_size
    report = progress or (lambda fraction, text="": None)
    stop = cancelled or (lambda: False)
    rows, cols = image.shape[1:]
    start = time.perf_counter()

    def check_cancel(where: str) -> None:
        if stop():
            raise TrainingCancelled(f"training cancelled {where}")

    def cancel_requested() -> bool:
        """This process's cancel, or under torchrun any rank's, so that every rank stops at the same step."""
        return stop() if group is None else distributed.any_rank(stop(), device)

    with deterministic(device, config.threads):
        seed_everything(config.seed)
        check_cancel("before it started")
        report(0.0, "preparing training")
        guide = model.make_guide(np.asarray(raw, dtype=np.float32), train, valid)
        check_cancel("while preparing")
        model.to(device).train()
        x = torch.from_numpy(image)[None].to(device)
        y = torch.from_numpy(train)[None].to(device)
        g = None if guide is None else guide.to(device=device, dtype=torch.int64)[None]

        counts = np.bincount(train[train >= 0])
        _log.info("training on %s with %d torch threads; model %s with %s parameters; %d x %d px, %d bands",
                  device, torch.get_num_threads(), model.name or type(model).__name__,
                  f"{sum(p.numel() for p in model.parameters()):,}", rows, cols, image.shape[0])
        _log.info("training pixels per class: %s; validation pixels: %d",
                  ", ".join(f"{config.class_label(c)}: {n}" for c, n in enumerate(counts)), int(val_mask.sum()))
        missing = [config.class_label(c) for c in range(int(model.config.get("n_classes", len(counts))))
                   if c >= len(counts) or counts[c] == 0]
        if missing:
            _log.warning("no training pixels for %s: the model cannot learn them", ", ".join(missing))
        precision = choose_precision(device, config.precision)
        _log.info("precision: %s", precision.describe())
        windows, max_pixels = _plan(model, x, g, config, precision, valid, min_windows=per_step)
        if group is not None:                                 # the probe's estimate may differ a little by rank
            windows, max_pixels = distributed.broadcast_object((windows, max_pixels))
        steps = [w for w in windows if (train[w.slices] >= 0).any()]
        val_tiling = {} if len(windows) == 1 else _validation_tiling(max_pixels)
        per_process = sum(w.pixels for w in steps) / (1 if group is None else group.world_size)
        estimate = estimate_epoch_seconds(model, x, g, precision, valid, int(per_process),
                                          0 if len(windows) == 1 or not val_mask.any() else rows * cols)
        _log.info("estimated time: %.1f s per epoch, %s for %d epochs (from a timed step on a %d px crop)",
                  estimate, _duration(estimate * config.epochs), config.epochs,
                  min(rows, PROBE_SIZE) * min(cols, PROBE_SIZE))
        if not val_mask.any():
            _log.warning("no validation pixels: the last epoch is kept instead of the best one")

        seed_everything(config.seed)                          # the probe ran the model once
        trained = model if group is None else distributed.wrap(model, device)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        scaler = precision.scaler(device)
        book = EpochBook(config.epochs, config.patience, report, _log)
        # Whole scene: epoch k's val OA comes from epoch k+1's training forward (module docstring).
        from_forward = len(windows) == 1 and bool(val_mask.any())
        batches = [steps[k:k + per_step] for k in range(0, len(steps), per_step)]
        backend = "none"
        pending: Optional[dict] = None                        # the finished epoch still waiting for its score
        stopped = False
        for epoch in range(1, config.epochs + 1):
            t0 = time.perf_counter()
            totals = np.zeros(4)                              # sums of window losses, aux losses; windows, aux windows
            for i, batch in enumerate(batches):
                if cancel_requested():
                    raise TrainingCancelled(f"training cancelled in epoch {epoch}")
                optimizer.zero_grad(set_to_none=True)
                step = np.zeros(4)
                for w, weight in _windows_of_this_process(batch, group):
                    # The state the previous epoch left, before this forward moves the buffers (EMA prototypes).
                    before = buffer_copy(model) if from_forward and pending else None
                    loss, out = _forward(trained, x, y, g, w, len(counts), device, precision)
                    if before is not None:
                        val_oa = _score(out.logits.detach()[0].argmax(0).cpu().numpy(), val, val_mask)
                        if book.record(**pending, val_oa=val_oa, state=lambda: state_copy(model, before)):
                            stopped = True
                            break
                        pending = None
                    _backward(loss * weight, scaler)
                    if weight:
                        aux = out.aux_loss is not None
                        step += [float(loss.detach()), float(out.aux_loss.detach()) if aux else 0.0, 1, aux]
                if stopped:
                    break
                _step(optimizer, scaler)
                totals += step if group is None else np.asarray(distributed.sum_over_ranks(list(step), device))
                if not math.isfinite(totals[0]):
                    raise ValueError(f"training diverged: the loss is {totals[0]} in epoch {epoch}; "
                                     f"lower the learning rate (now {config.lr})")
                if len(batches) > 1:
                    report((epoch - 1 + (i + 1) / len(batches)) / config.epochs,
                           f"epoch {epoch}/{config.epochs}: step {i + 1}/{len(batches)}")
            if stopped:
                break
            if epoch == 1:
                backend = scan.last_backend()
                _log.info("selective scan backend: %s", backend)
            pending = {"epoch": epoch, "loss": float(totals[0] / totals[2]),
                       "aux_loss": float(totals[1] / totals[3]) if totals[3] else None, "steps": len(batches)}
            if from_forward and epoch < config.epochs:
                pending["seconds"] = time.perf_counter() - t0
                continue
            if cancel_requested():
                raise TrainingCancelled(f"training cancelled before validating epoch {epoch}")
            val_oa = math.nan
            if val_mask.any() and (group is None or group.rank == 0):
                val_oa = _validation_oa(model, x, image, valid, val, val_mask, device, precision, val_tiling)
            if group is not None:
                val_oa = distributed.broadcast_object(val_oa)   # one score, so every rank decides alike
            if book.record(**pending, val_oa=val_oa, seconds=time.perf_counter() - t0, state=lambda: state_copy(model)):
                break
            pending = None
        result = book.finish(model, start, device, backend, windows=windows, validation_tiling=val_tiling,
                             precision=precision.describe(), estimated_epoch_seconds=estimate)
        measured = sum(h["seconds"] for h in result.history) / len(result.history)
        _log.info("time per epoch: estimated %.1f s before training, measured %.1f s (%.2fx the estimate)",
                  estimate, measured, measured / estimate if estimate > 0 else math.nan)
        return result
