"""The one trainer of every model (``train_patches``): patches of a scene in, the best epoch's weights out.

Patches are the whole scene or the label windows around its labelled pixels (``engine.training.sampler.label_windows``;
``pipeline`` decides which, by cost), with the auxiliary bands of a multi-modal scene. Each model declares
its recipe; the epochs, validation, best-epoch bookkeeping, progress, cancel and time estimate are shared:

- Whole-window models (CSSMamba, MambaHSI; MODELS.md §3.3 and §4.10) see a patch at batch 1. Only the
  training pixels carry a label (cross-entropy with ignore index -1) and the model's own auxiliary loss
  (CSSMamba's cluster loss) is added; Adam, one optimizer step per epoch over all patches.
- Crop models (M3amba, MODELS.md §5.5-5.6: a ``crop`` size, ``configure_optimizers`` and
  ``training_loss``) see fixed crops: every crop of a patch's stride-8 grid that holds a training pixel
  (``crops.CropBatches``), shuffled into minibatches each epoch, with the model's optimizer, schedule
  (stepped after every minibatch) and loss; validation predicts like classification, from averaged
  overlapping crops.
- Classical models (``fit_pixels``: RF, SVM) are fitted once on the training pixels' spectra.

Each epoch is scored by the overall accuracy on the validation pixels; the state of the best epoch is
kept (val OA >= best, so the later epoch wins ties), optionally with early stopping.

Whole-scene training reads that score from the next epoch's training forward instead of running an
extra validation forward: the forward sees the whole image with the weights the previous epoch left,
and the models compute the same logits in training mode as in eval mode (HSIClassifier's contract).
That saves one full-image forward per epoch (about a fifth of CSSMamba's epoch on CPU) and gives the
same scores and the same chosen epoch; only the last epoch needs its own validation forward.

A patch whose training step does not fit the memory budget is cut into a grid of overlapping windows
(``plan_windows``), generalising MambaHSI's split into two halves that overlap by 10 rows and CSSMamba's
four quadrants with a 5 px margin. For the whole scene each window that holds training pixels takes
part in one optimizer step per epoch (``windows_per_step`` windows per step: gradient accumulation, or
one window per process under torchrun, engine/training/distributed.py); label windows share one step per epoch
(``train_patches``). Validation then runs tiled through ``engine.inference.tiling.predict_array``.

No GDAL here: this module also runs on GPU machines without it.
"""

from __future__ import annotations

import logging
import math
import random
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Tuple, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits
from torch import Tensor, nn

from ..data.splits import Split
from . import distributed
from ..device import resolve_device
from ..memory import physical_memory_bytes
from ..precision import PRECISIONS, Precision, choose_precision
from .crops import PREDICT_STRIDE, CropBatch, CropBatches, crops_covering, plan_crops, predict_at
from .sampler import Patch, Window, plan_windows
from ..models.base import HSIClassifier, ModelOutput
from ..ssm import scan

__all__ = ["TrainConfig", "TrainResult", "TrainingCancelled", "Window", "Patch", "plan_windows", "seed_everything",
           "estimate_training_bytes_per_pixel", "estimate_epoch_seconds", "default_memory_budget_mb", "EpochBook",
           "optimizer_step", "train_model", "train_patches", "is_crop_model", "whole_scene_patch", "make_guides",
           "whole_scene_fits"]

_log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
PROBE_SIZE = 48                  # side of the window the memory probe trains on
CPU_BUDGET_FRACTION = 0.5        # default budget: this share of physical RAM ...
CUDA_BUDGET_FRACTION = 0.8       # ... or of the GPU memory free at the start
FALLBACK_BUDGET_MB = 4096        # when physical RAM cannot be read
CPU_BACKWARD_FACTOR = 1.75       # saved activations x this = estimated peak of a training step on CPU
# Most pixels of label windows stacked into one forward on the CPU: a larger batch is no faster there
# (bench/results/label_windows.md) and peak memory follows it (CSSMamba: about 0.1 MB per pixel).
CPU_UNIT_PIXELS = 12_288

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
    windows_per_step: training windows whose gradients one optimizer step averages when the whole scene
    is cut into a memory grid (gradient accumulation; the scene is cut into at least that many windows).
    Under torchrun it is the number of processes, each computing one window of the step
    (engine/training/distributed.py). Label windows always make one step per epoch (``train_patches``).
    augment: every training forward sees its window in one of the 8 orientations of the square (rotations
    by 90° and mirror images), drawn per epoch, and its logits are turned back before the loss. Whole-image
    models can otherwise learn where the training pixels lie in the scan and label their surroundings by
    place, which a spatially disjoint split exposes; each epoch is then validated by an extra forward in
    the orientation classification uses.
    label_smoothing: the cross-entropy's label smoothing (0: none, as in the papers' protocol; issue 13,
    lead 7: the training regime); the crop models' (M3amba) losses are their own.
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
    augment: bool = False
    label_smoothing: float = 0.0

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
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


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
    crop, guide_crop, valid_crop = _probe_crop(x, guide, valid)
    params = {p.data_ptr() for p in model.parameters()}
    with _state_restored(model):
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
            torch.cuda.reset_peak_memory_stats(x.device)
            base = torch.cuda.memory_allocated(x.device)
            with precision.autocast(x.device):
                out = model(crop, guide_crop, valid_crop)
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
                out = model(crop, guide_crop, valid_crop)
            used = CPU_BACKWARD_FACTOR * (sum(seen.values()) + out.logits.numel() * out.logits.element_size())
        del out
    return max(float(used), 1.0) / (crop.shape[2] * crop.shape[3])


def _probe_crop(x: Tensor, guide: Optional[Tensor],
                valid: Optional[np.ndarray]) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    """The PROBE_SIZE² crop of ``x`` (1, Nb, H, W), of ``guide`` and of ``valid`` (H, W) (as the model's (1, h, w)
    mask) with the most valid pixels (``probe_origin``)."""
    rows, cols = min(x.shape[2], PROBE_SIZE), min(x.shape[3], PROBE_SIZE)
    row0, col0 = probe_origin(valid, rows, cols)
    window = (slice(None), slice(None), slice(row0, row0 + rows), slice(col0, col0 + cols))
    mask = None if valid is None else _mask(valid[window[2:]], x.device)
    return x[window], None if guide is None else guide[window], mask


def _mask(valid: np.ndarray, device: torch.device) -> Tensor:
    """A valid mask (h, w) as the models take it: (1, h, w) bool on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(valid, bool))[None].to(device)


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


def whole_scene_patch(image: np.ndarray, raw: np.ndarray, valid: np.ndarray, split: Split) -> Patch:
    """The whole scene as the one patch."""
    rows, cols = np.shape(valid)
    return Patch(Window(0, rows, 0, cols), image, raw, valid, split.train, split.validation, split.test)


def _check_patch(patch: Patch) -> None:
    """Validate shapes and values of one patch."""
    image = patch.image
    if image.ndim != 3:
        raise ValueError(f"image must be (bands, rows, cols), got shape {image.shape}")
    if patch.raw.shape != image.shape:
        raise ValueError(f"raw spectra have shape {patch.raw.shape} but the normalised image has {image.shape}")
    grid = image.shape[1:]
    for name, array in (("valid mask", patch.valid), ("training labels", patch.train),
                        ("validation labels", patch.validation)):
        if np.shape(array) != grid:
            raise ValueError(f"{name} have shape {np.shape(array)} but the image is {grid[0]} x {grid[1]} px")
    if not np.isfinite(image).all():
        raise ValueError("the normalised image contains NaN or Inf; normalise with apply_stretch, "
                         "which sets invalid pixels to 0")


def make_guides(model: HSIClassifier, patches: List[Patch], train_maps: List[np.ndarray]) -> List[Optional[Tensor]]:
    """``model.make_guide`` for every patch at once. A guide is per pixel (HSIClassifier.make_guide), so it
    is computed on the patches' pixels laid side by side in one row: CSSMamba's cluster prior then sees the
    pixels of every window together, as it sees the whole scene when the scene is the one patch."""
    if len(patches) == 1:
        return [model.make_guide(np.asarray(patches[0].raw, dtype=np.float32), train_maps[0], patches[0].valid)]
    raw = np.concatenate([p.raw.reshape(p.raw.shape[0], -1) for p in patches], axis=1)[:, None]
    train = np.concatenate([t.reshape(-1) for t in train_maps])[None]
    valid = np.concatenate([np.asarray(p.valid, bool).reshape(-1) for p in patches])[None]
    guide = model.make_guide(raw.astype(np.float32, copy=False), train, valid)
    if guide is None:
        return [None] * len(patches)
    guides, start = [], 0
    for p in patches:
        rows, cols = p.valid.shape
        guides.append(guide[:, 0, start:start + rows * cols].reshape(guide.shape[0], rows, cols))
        start += rows * cols
    return guides


def _validation_tiling(max_pixels: int) -> Dict[str, int]:
    """Tiles that fit the training window budget (they fit without gradients all the more)."""
    from ..inference.tiling import DEFAULT_OVERLAP  # lazy: only large scenes need it

    tile = max(math.isqrt(max_pixels), 2)
    return {"tile": tile, "overlap": min(DEFAULT_OVERLAP, tile // 4)}


def _predicted_validation(model: HSIClassifier, image: np.ndarray, valid: np.ndarray, val_mask: np.ndarray,
                          device: torch.device, precision: Precision, tiling: Dict[str, int]) -> np.ndarray:
    """Predicted class index at the validation pixels of a patch cut by its memory grid (1-D, in raster
    order), through predict_array's overlapping ``tiling`` (it restores the model's mode). Like prediction,
    it needs no labels: no guide is passed."""
    from ..inference.tiling import predict_array  # lazy: only large scenes need it

    with torch.no_grad(), precision.autocast(device):
        probabilities, _ = predict_array(model, image, valid, device=device, **tiling)
    return probabilities.argmax(0)[val_mask]


def _score(predicted: np.ndarray, val: np.ndarray, val_mask: np.ndarray) -> float:
    """Overall accuracy of the (H, W) class map on the validation pixels."""
    return float((predicted[val_mask] == val[val_mask]).mean())


def _max_pixels(model: HSIClassifier, x: Tensor, guide: Optional[Tensor], config: TrainConfig, precision: Precision,
                valid: np.ndarray, resident_bytes: int) -> Tuple[int, float, float, float]:
    """The most pixels a training window may hold within the memory budget: (max_pixels, bytes per pixel,
    fixed bytes, budget MB).

    The budget pays for the weights, their gradients and Adam's two moments (4x the parameters), the
    patches themselves on a GPU (``resident_bytes``), and then a measured number of bytes per pixel of
    the window (``estimate_training_bytes_per_pixel`` on ``x``)."""
    device = x.device
    budget_mb = config.memory_budget_mb or default_memory_budget_mb(device)
    per_pixel = estimate_training_bytes_per_pixel(model, x, guide, precision, valid)
    fixed = 4 * sum(p.numel() * p.element_size() for p in model.parameters())
    if device.type == "cuda":
        fixed += resident_bytes
    max_pixels = int((budget_mb * 2**20 - fixed) // per_pixel)
    if max_pixels < 1:
        raise ValueError(f"the memory budget of {budget_mb:.0f} MB does not even hold the model's weights and "
                         f"optimizer state ({fixed / 2**20:.0f} MB); raise the memory budget")
    return max_pixels, per_pixel, fixed, budget_mb


def estimate_epoch_seconds(model: HSIClassifier, x: Tensor, guide: Optional[Tensor], precision: Precision,
                           valid: np.ndarray, step_pixels: int, validation_pixels: int) -> float:
    """Seconds an epoch will take, from one timed training step (forward, backward) on the probe crop.

    The models' cost is linear in the pixel count (MODELS.md: scans and per-pixel layers), so the crop's
    seconds per pixel scale to ``step_pixels`` (the training windows' pixels) plus a third of it for
    ``validation_pixels`` (a forward without the backward). A first, untimed step absorbs one-off costs
    (the compiled scan kernel's loading, allocator warm-up). The small crop's fixed costs make this
    err on the slow side; the log compares it with the measured time at the end. The model's buffers
    and gradients are restored."""
    crop, guide_crop, valid_crop = _probe_crop(x, guide, valid)
    with _state_restored(model):
        for timed in (False, True):
            if timed:
                _synchronize(x.device)
                started = time.perf_counter()
            with precision.autocast(x.device):
                out = model(crop, guide_crop, valid_crop)
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
    """Whether one training step of ``model`` on the whole of ``image`` (the scene, or its largest patch)
    fits the memory budget of ``config``'s device (the same estimate as the trainer's window plan); used to
    size a model for a GPU. ``guide``: the model's guide for ``image`` (it depends on the classes and
    clusters, not on the width, so the caller computes it once for every size it tries). The model is
    left on the CPU."""
    device = resolve_device(config.device)
    precision = choose_precision(device, config.precision)
    try:
        model.to(device).train()
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None].to(device)
        g = None if guide is None else guide.to(device=device, dtype=torch.int64)[None]
        max_pixels = _max_pixels(model, x, g, config, precision, valid, x.numel() * x.element_size())[0]
        return image.shape[1] * image.shape[2] <= max_pixels
    except (ValueError, torch.cuda.OutOfMemoryError):
        return False
    finally:
        model.to("cpu")
        if device.type == "cuda":
            torch.cuda.empty_cache()


ORIENTATIONS = 8   # rotations by 0, 90, 180, 270 degrees, each also mirrored


def orient(t: Tensor, k: int) -> Tensor:
    """Orientation ``k`` (0..7) of the last two dims of ``t``: rotation by k·90°, mirrored when k >= 4."""
    t = torch.rot90(t, k % 4, dims=(-2, -1))
    return t.flip(-1) if k >= 4 else t


def unorient(t: Tensor, k: int) -> Tensor:
    """The inverse of ``orient(·, k)``."""
    t = t.flip(-1) if k >= 4 else t
    return torch.rot90(t, -(k % 4), dims=(-2, -1))


def _forward(model: HSIClassifier, x: Tensor, y: Tensor, guide: Optional[Tensor], valid: Tensor, window: Window,
             n_labels: int, device: torch.device, precision: Precision, turn: int = 0,
             label_smoothing: float = 0.0) -> Tuple[Tensor, ModelOutput]:
    """The training forward on one window: (CE on its training pixels + the model's auxiliary loss, output).
    ``turn``: the orientation (``orient``) the model sees the window in; the output is turned back."""
    crop = (slice(None), slice(None)) + window.slices
    with precision.autocast(device):
        image, hint = x[crop], None if guide is None else guide[crop]
        out = model(orient(image, turn), None if hint is None else orient(hint, turn),
                    orient(valid[(slice(None),) + window.slices], turn))
        if turn:
            out = ModelOutput(logits=unorient(out.logits, turn), aux_loss=out.aux_loss,
                              clusters=None if out.clusters is None else unorient(out.clusters, turn))
        if out.logits.shape[1] < n_labels:
            raise ValueError(f"the model predicts {out.logits.shape[1]} classes but the labels hold {n_labels}; "
                             f"build it with n_classes={n_labels}")
        loss = F.cross_entropy(out.logits.float(), y[(slice(None),) + window.slices], ignore_index=-1,
                               label_smoothing=label_smoothing)
        if out.aux_loss is not None:
            loss = loss + out.aux_loss.float()
    return loss, out


def _defer_buffer_updates(model: nn.Module, several: bool) -> List[nn.Module]:
    """When one optimizer step runs ``several`` forwards, the modules whose training forward updates a
    buffer by a moving average (CSSMamba's EMA prototypes: ``deferring`` and ``flush``) sum their updates
    over the step and take them once at its end, as one forward over the whole scene would; returned so
    the step can flush them."""
    if not several:
        return []
    modules = [m for m in model.modules() if hasattr(m, "deferring") and hasattr(m, "flush")]
    for m in modules:
        m.deferring = True
    return modules


def _end_deferral(modules: List[nn.Module]) -> None:
    """Take the step's deferred buffer updates and stop deferring (also when the step failed)."""
    for m in modules:
        m.flush()
        m.deferring = False


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


T = TypeVar("T")


def _windows_of_this_process(batch: List[T], group: Optional[distributed.Group],
                             shares: Optional[List[float]] = None) -> List[Tuple[T, float]]:
    """(window, loss weight) pairs this process computes for one optimizer step over ``batch``, so that the
    step's gradient is the ``shares``-weighted mean over the batch (None: equal shares; the trainer passes
    each window's training pixels, so that the step's loss is the CE over all of them). In a single process:
    all windows (gradient accumulation). Under DDP, which averages the ranks' gradients: every
    world_size-th window from the rank's own on, its weight times world_size; a rank without a window runs
    the first one at weight 0, since every rank must take part in each step."""
    shares = [1.0] * len(batch) if shares is None else [float(s) for s in shares]
    total = sum(shares)
    if group is None:
        return [(w, s / total) for w, s in zip(batch, shares)]
    mine = [(batch[k], group.world_size * shares[k] / total) for k in range(group.rank, len(batch), group.world_size)]
    return mine or [(batch[0], 0.0)]


@dataclass
class _Unit:
    """What one training forward sees: ``window`` of ``x`` (B, Nb, h, w), with its labels, guide and mask. A
    patch cut by its memory grid gives one unit per grid window (B = 1); uncut patches of one shape are
    stacked into units of at most max_pixels pixels, so that many small label windows run as one batch
    (CSSMamba on 42 windows of 37 x 37 px: 6.5 s as a batch against 21.5 s one by one, forward and
    backward on 2 threads; MambaHSI 0.7 s against 1.5 s)."""

    patches: List[int]               # the patches in x, in batch order
    x: Tensor
    y: Tensor                        # (B, h, w) training class index, -1 = none
    g: Optional[Tensor]
    v: Tensor                        # (B, h, w) bool, False under nodata
    window: Window                   # the part of x the forward sees
    stacked: bool                    # the patches whole, stacked (False: one grid window of a cut patch)

    @property
    def train_pixels(self) -> int:
        return int((self.y[(slice(None),) + self.window.slices] >= 0).sum())

    @property
    def pixels(self) -> int:
        return self.x.shape[0] * self.window.pixels


def _units(plans: List[List[Window]], xs: List[Tensor], ys: List[Tensor], gs: List[Optional[Tensor]],
           vs: List[Tensor], max_pixels: int) -> List[_Unit]:
    """The forwards of an epoch (``_Unit``): the grid windows of cut patches, then the uncut patches stacked
    by shape, in patch order."""
    units: List[_Unit] = []
    by_shape: Dict[Tuple[int, int], List[int]] = {}
    for k, plan in enumerate(plans):
        if len(plan) > 1:
            units += [_Unit([k], xs[k], ys[k], gs[k], vs[k], w, stacked=False) for w in plan]
        else:
            by_shape.setdefault(tuple(xs[k].shape[2:]), []).append(k)
    for (rows, cols), members in by_shape.items():
        per_unit = max(1, max_pixels // (rows * cols))
        for i in range(0, len(members), per_unit):
            chunk = members[i:i + per_unit]
            units.append(_Unit(chunk, _stack([xs[k] for k in chunk]), _stack([ys[k] for k in chunk]),
                               None if gs[chunk[0]] is None else _stack([gs[k] for k in chunk]),
                               _stack([vs[k] for k in chunk]), Window(0, rows, 0, cols), stacked=True))
    return units


def _stack(tensors: List[Tensor]) -> Tensor:
    """The tensors concatenated along the batch; one tensor as it is (no copy of a whole scene)."""
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)


def _unit_validation(unit: _Unit, classes: np.ndarray, vals: List[np.ndarray],
                     val_masks: List[np.ndarray]) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """(predicted, true) class index at the validation pixels of a stacked unit, from its classes (B, h, w)."""
    predicted, truth = [], []
    for b, k in enumerate(unit.patches):
        if val_masks[k].any():
            predicted.append(classes[b][val_masks[k]])
            truth.append(vals[k][val_masks[k]])
    return predicted, truth


def _validate(model: HSIClassifier, units: List[_Unit], plans: List[List[Window]], images: List[np.ndarray], patches: List[Patch], vals: List[np.ndarray], val_masks: List[np.ndarray],
              device: torch.device, precision: Precision,
              tilings: List[Dict[str, int]]) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """(predicted, true) class index at the validation pixels of ``units`` (stacked units in one eval
    forward each) and of the cut patches in ``plans`` (through predict_array's tiles), as lists of arrays."""
    predicted: List[np.ndarray] = []
    truth: List[np.ndarray] = []
    for unit in units:
        if unit.stacked and any(val_masks[k].any() for k in unit.patches):
            model.eval()
            try:
                with torch.no_grad(), precision.autocast(device):
                    classes = model(unit.x, valid=unit.v).logits.argmax(1).cpu().numpy()
            finally:
                model.train()
            more = _unit_validation(unit, classes, vals, val_masks)
            predicted += more[0]
            truth += more[1]
    for k, plan in enumerate(plans):
        if len(plan) > 1 and val_masks[k].any():
            predicted.append(_predicted_validation(model, images[k], patches[k].valid, val_masks[k], device, precision,
                                                   tilings[k]))
            truth.append(vals[k][val_masks[k]])
    return predicted, truth


def _oa(predicted: List[np.ndarray], truth: List[np.ndarray]) -> float:
    """Overall accuracy over the validation pixels gathered patch by patch."""
    truth_all = np.concatenate(truth)
    return _score(np.concatenate(predicted), truth_all, np.ones(truth_all.shape, bool))


LARGE_FIT_PIXELS = 20_000   # classical models: above it, say that fitting may take long


def _fit_pixels(model: HSIClassifier, patches: List[Patch], trains: List[np.ndarray], config: TrainConfig,
                progress: Optional[Progress], cancelled: Optional[Cancelled]) -> TrainResult:
    """A classical model (models/classical.py): fitted once on the spectra of the training pixels, its
    settings chosen on the validation pixels; the result reads as a run of one epoch."""
    if cancelled is not None and cancelled():
        raise TrainingCancelled("training cancelled before it started")
    report = progress or (lambda fraction, text="": None)
    report(0.0, f"fitting {model.name}")
    started = time.perf_counter()

    def pixels(maps: List[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        x = np.concatenate([p.image[:, m >= 0].T for p, m in zip(patches, maps)]).astype(np.float64)
        return x, np.concatenate([m[m >= 0] for m in maps])

    x_train, y_train = pixels(trains)
    x_val, y_val = pixels([np.where(p.valid, p.validation, -1) for p in patches])
    missing = sorted(set(range(int(model.config["n_classes"]))) - set(np.unique(y_train).tolist()))
    if missing:
        raise ValueError(f"{model.name} needs training pixels of every class; none for "
                         f"{', '.join(config.class_label(c) for c in missing)}")
    if len(y_train) > LARGE_FIT_PIXELS:
        _log.warning("%s fits on %d training pixels: a random forest grows large and an SVM's fit grows with the "
                     "square of the pixels (minutes to hours); the 30/10 split or fewer ROI pixels keep it quick",
                     model.name, len(y_train))

    def check_cancel() -> None:
        if cancelled is not None and cancelled():
            raise TrainingCancelled(f"fitting {model.name} cancelled")

    with threadpool_limits(limits=config.threads):
        info = model.fit_pixels(x_train, y_train, x_val, y_val, seed=config.seed, threads=config.threads,
                                check_cancel=check_cancel)
    _log.info("%s fitted on %d training pixels in %.1f s: %s, validation OA %.4f", model.name, len(y_train),
              info["seconds"], ", ".join(f"{k} {v}" for k, v in info["settings"].items()), info["validation_oa"])
    model.eval()
    history = [{"epoch": 1, "loss": math.nan, "aux_loss": None, "val_oa": info["validation_oa"], "steps": 1,
                "seconds": info["seconds"]}]
    report(1.0, f"{model.name} fitted: validation OA {info['validation_oa']:.4f}")
    return TrainResult(state_dict=state_copy(model), best_epoch=1, best_val_oa=float(info["validation_oa"]),
                       history=history, device="cpu", backend="scikit-learn", threads=config.threads or 1,
                       seconds=time.perf_counter() - started, windows=[p.window for p in patches])


# ------------------------------------------------------------------------------------------------
# The crop recipe (models with ``crop``, ``configure_optimizers`` and ``training_loss``: M3amba)


def is_crop_model(model: nn.Module) -> bool:
    """Whether ``model`` trains and predicts on fixed crops (module docstring: ``crop``, ``configure_optimizers``,
    ``training_loss``)."""
    return hasattr(model, "training_loss")


def _check_crop_run(model: nn.Module, patches: List[Patch], config: TrainConfig,
                    group: Optional[distributed.Group]) -> None:
    """Refuse what the crop recipe does not do, before any work."""
    if group is not None:
        raise ValueError(f"{model.name} trains in one process (its crop minibatches have no DistributedDataParallel "
                         f"split yet); run it without torchrun")
    if config.augment or config.windows_per_step != 1 or config.label_smoothing:
        raise ValueError(f"{model.name} trains on minibatches of {model.crop} px crops with its own loss: orientation "
                         f"augmentation, windows per step and label smoothing are for the whole-window models")
    if any(p.aux is None or p.aux.shape[1:] != p.valid.shape for p in patches):
        raise ValueError(f"{model.name} needs the auxiliary bands (LiDAR, SAR) of every patch on its grid")


def _crop_forward(model: nn.Module, batch: CropBatch, device: torch.device, precision: Precision) -> Tensor:
    """The model's own loss (``training_loss``) on one minibatch of crops."""
    with precision.autocast(device):
        outputs = model(batch.hsi.to(device), batch.aux.to(device))
        return model.training_loss(outputs, batch.labels.to(device))


def _validate_crops(model: nn.Module, patches: List[Patch], vals: List[np.ndarray], val_masks: List[np.ndarray],
                    device: torch.device, precision: Precision,
                    check_cancel: Callable[[], None]) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """(predicted, true) class index at the validation pixels of each patch, predicted as classification
    predicts a crop model: averaged overlapping crops (``crops.predict_at``)."""
    predicted, truth = [], []
    for p, v, m in zip(patches, vals, val_masks):
        if m.any():
            index = predict_at(model, p.image, p.aux, m, device=device, autocast=lambda: precision.autocast(device),
                               check_cancel=check_cancel, origin=(p.window.row0, p.window.col0), scene=p.scene_shape)
            predicted.append(index[m])
            truth.append(v[m])
    return predicted, truth


def _estimate_crop_epoch_seconds(model: nn.Module, crops: CropBatches, val_masks: List[np.ndarray],
                                 precision: Precision, device: torch.device) -> float:
    """Seconds an epoch of the crop recipe will take: one timed step on the first minibatch (after an
    untimed one) times the steps, plus a third of a step's time per crop for the validation's forwards.
    The model's buffers and gradients are restored."""
    batch = crops.batch(list(range(min(crops.batch_size, len(crops)))))
    with _state_restored(model):
        for timed in (False, True):
            if timed:
                _synchronize(device)
                started = time.perf_counter()
            _crop_forward(model, batch, device, precision).backward()
            _synchronize(device)
        seconds = time.perf_counter() - started
    per_crop = seconds / batch.hsi.shape[0]
    validation_crops = sum(len(crops_covering(plan_crops(*m.shape, crops.crop, PREDICT_STRIDE), m, crops.crop))
                           for m in val_masks if m.any())
    return per_crop * (len(crops) + validation_crops / 3)


def train_model(model: HSIClassifier, image: np.ndarray, raw: np.ndarray, valid: np.ndarray, split: Split,
                config: Optional[TrainConfig] = None, progress: Optional[Progress] = None,
                cancelled: Optional[Cancelled] = None) -> TrainResult:
    """Train ``model`` on one whole scene in memory and return the best epoch's state (``train_patches``
    with the scene as the one patch).

    image: (Nb, H, W) float32 normalised (apply_stretch); raw: (Nb, H, W) float32 spectra as read, for
    ``model.make_guide``; valid: (H, W) bool, False under nodata; split: label maps (class index, -1 =
    none)."""
    return train_patches(model, [whole_scene_patch(image, raw, valid, split)], config, progress, cancelled)


def train_patches(model: HSIClassifier, patches: List[Patch], config: Optional[TrainConfig] = None,
                  progress: Optional[Progress] = None, cancelled: Optional[Cancelled] = None) -> TrainResult:
    """Train ``model`` on the patches of one scene (the whole scene, or its label windows) and return the
    best epoch's state.

    One patch (the whole scene): one optimizer step per epoch, or, when a step does not fit the memory
    budget, one per ``windows_per_step`` windows of the patch's memory grid (as MambaHSI's halves).
    Several patches (label windows): one optimizer step per epoch over all of them, each window's loss
    weighted by its share of the training pixels, so that the step descends the CE over every training
    pixel as a whole-scene step does and 200 epochs mean what they mean in the papers' protocol; a
    patch too large for the budget is cut into its memory grid inside that step. A crop model (M3amba)
    steps over minibatches of its crops instead, with its own optimizer, schedule and loss; a classical
    model is fitted once (module docstring). Validation runs over the patches holding validation
    pixels. progress(fraction, text) is called after every epoch (and
    every step when there are several); cancelled() is polled before every optimizer step and every
    validation and raises TrainingCancelled. On return the model holds the best state, on the CPU, in
    eval mode.
    """
    config = config or TrainConfig()
    if not patches:
        raise ValueError("there is nothing to train on: no patch of the scene holds a labelled pixel")
    for p in patches:
        _check_patch(p)
    trains = [np.where(p.valid, p.train, -1).astype(np.int64) for p in patches]
    if not any((t >= 0).any() for t in trains):
        raise ValueError("there are no training pixels on valid (non-nodata) pixels; check that the labels "
                         "or ROIs overlap the raster's data")
    if hasattr(model, "fit_pixels"):
        return _fit_pixels(model, patches, trains, config, progress, cancelled)
    crop_model = is_crop_model(model)
    vals = [np.asarray(p.validation, dtype=np.int64) for p in patches]
    val_masks = [(v >= 0) & p.valid for v, p in zip(vals, patches)]
    n_val = sum(int(m.sum()) for m in val_masks)
    images = [np.ascontiguousarray(p.image, dtype=np.float32) for p in patches]
    group = distributed.current()
    if crop_model:
        _check_crop_run(model, patches, config, group)
    device = resolve_device(config.device)
    if group is not None:
        device = group.device(device)
    whole = len(patches) == 1
    per_step = config.windows_per_step if group is None else group.world_size
    report = progress or (lambda fraction, text="": None)
    stop = cancelled or (lambda: False)
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
        model.to(device).train()
        counts = np.bincount(np.concatenate([t[t >= 0] for t in trains]))
        where = (f"{patches[0].window.shape[0]} x {patches[0].window.shape[1]} px" if whole else
                 f"{len(patches)} label windows of {sum(p.window.pixels for p in patches):,} px in all")
        _log.info("training on %s with %d torch threads; model %s with %s trainable parameters; %s, %d bands%s",
                  device, torch.get_num_threads(), model.name or type(model).__name__,
                  f"{sum(p.numel() for p in model.parameters() if p.requires_grad):,}", where, images[0].shape[0],
                  f" + {patches[0].aux.shape[0]} auxiliary" if patches[0].aux is not None else "")
        _log.info("training pixels per class: %s; validation pixels: %d",
                  ", ".join(f"{config.class_label(c)}: {n}" for c, n in enumerate(counts)), n_val)
        missing = [config.class_label(c) for c in range(int(model.config.get("n_classes", len(counts))))
                   if c >= len(counts) or counts[c] == 0]
        if missing:
            _log.warning("no training pixels for %s: the model cannot learn them", ", ".join(missing))
        precision = choose_precision(device, config.precision)
        _log.info("precision: %s", precision.describe())
        if crop_model:
            crops = CropBatches(images, [p.aux for p in patches], trains, model.crop,
                                [(p.window.row0, p.window.col0) for p in patches], patches[0].scene_shape)
            plans = [[Window(0, p.window.shape[0], 0, p.window.shape[1])] for p in patches]
            # No memory grid, no whole-window units: the epoch's minibatches come from ``crops``.
            units, steps, shares, batches, from_forward, max_pixels = [], [], [], [], False, 0
            tilings = [{} for _ in patches]
            _log.info("%d crops of %d px hold training pixels: %d minibatches of up to %d per epoch", len(crops),
                      model.crop, crops.steps, crops.batch_size)
            estimate = _estimate_crop_epoch_seconds(model, crops, val_masks, precision, device)
        else:
            crops = None
            guides = make_guides(model, patches, trains)
            check_cancel("while preparing")
            xs = [torch.from_numpy(image)[None].to(device) for image in images]
            ys = [torch.from_numpy(t)[None].to(device) for t in trains]
            gs = [None if g is None else g.to(device=device, dtype=torch.int64)[None] for g in guides]
            vs = [_mask(p.valid, device) for p in patches]
            probe = max(range(len(patches)), key=lambda k: int(patches[k].valid.sum()))
            max_pixels, per_pixel, fixed, budget_mb = _max_pixels(
                model, xs[probe], gs[probe], config, precision, patches[probe].valid,
                sum(x.numel() * x.element_size() for x in xs))
            plans = [plan_windows(*p.valid.shape, max_pixels, multiple_of=per_step if whole else 1) for p in patches]
            if group is not None:                                 # the probe's estimate may differ a little by rank
                plans, max_pixels = distributed.broadcast_object((plans, max_pixels))
            _log.info("estimated training memory %.0f MB for %s (%.0f bytes per pixel; budget %.0f MB): %d window(s)",
                      (max(p.window.pixels for p in patches) * per_pixel + fixed) / 2**20,
                      "the whole scene" if whole else "the largest label window", per_pixel, budget_mb,
                      sum(len(plan) for plan in plans))
            if not whole and any(len(plan) > 1 for plan in plans):
                _log.warning("label windows of up to %d px a side do not fit the memory budget of %.0f MB, so they "
                             "are cut into smaller windows: training no longer sees the tiles that classification "
                             "repeats. Choose a smaller training window size (CLI: --label-tile; toolbox: Training "
                             "window size) or a larger memory budget", max(max(p.window.shape) for p in patches),
                             budget_mb)
            units = _units(plans, xs, ys, gs, vs,
                           max_pixels if device.type == "cuda" else min(max_pixels, CPU_UNIT_PIXELS))
            steps = [u for u in units if u.train_pixels]
            shares = [u.train_pixels for u in steps]
            tilings = [{} if len(plan) == 1 else _validation_tiling(max_pixels) for plan in plans]
            order = list(range(len(steps)))
            batches = [order[k:k + per_step] for k in range(0, len(order), per_step)] if whole else [order]
            # One optimizer step per epoch over uncut patches: epoch k's val OA comes from epoch k+1's training
            # forwards (module docstring); units with validation but no training pixels get an eval forward.
            from_forward = (group is None and n_val > 0 and len(batches) == 1
                            and all(len(plan) == 1 for plan in plans) and not config.augment)
            per_process = sum(u.pixels for u in steps) / (1 if group is None else group.world_size)
            validation_pixels = (sum(u.pixels for u in units if not u.train_pixels and any(val_masks[k].any()
                                                                                         for k in u.patches))
                                 if from_forward else
                                 sum(p.window.pixels for p, m in zip(patches, val_masks) if m.any()))
            estimate = estimate_epoch_seconds(model, xs[probe], gs[probe], precision, patches[probe].valid,
                                              int(per_process), validation_pixels)
        val_only = [u for u in units if not u.train_pixels and any(val_masks[k].any() for k in u.patches)]
        _log.info("estimated time: %.1f s per epoch, %s for %d epochs (from a timed training step)",
                  estimate, _duration(estimate * config.epochs), config.epochs)
        if not n_val:
            _log.warning("no validation pixels: the last epoch is kept instead of the best one")

        seed_everything(config.seed)                          # the probe ran the model once
        trained = model if group is None else distributed.wrap(model, device)
        if crop_model:
            optimizer, schedule = model.configure_optimizers(config.lr, config.epochs * crops.steps)
        else:
            optimizer, schedule = torch.optim.Adam(model.parameters(), lr=config.lr), None
        scaler = precision.scaler(device)
        book = EpochBook(config.epochs, config.patience, report, _log)
        backend = "none"
        turns = torch.Generator().manual_seed(config.seed)    # the same orientations on every rank
        shuffle = torch.Generator().manual_seed(config.seed)  # the crops' order, epoch by epoch
        pending: Optional[dict] = None                        # the finished epoch still waiting for its score
        stopped = False
        for epoch in range(1, config.epochs + 1):
            t0 = time.perf_counter()
            turn = int(torch.randint(ORIENTATIONS, (1,), generator=turns)) if config.augment else 0
            totals = np.zeros(4)                              # weighted sums of losses, aux losses; their weights
            epoch_batches = crops.epoch(shuffle) if crop_model else batches
            for i, batch in enumerate(epoch_batches):
                if cancel_requested():
                    raise TrainingCancelled(f"training cancelled in epoch {epoch}")
                optimizer.zero_grad(set_to_none=True)
                step = np.zeros(4)
                scoring = from_forward and pending is not None
                if scoring:
                    # The state the previous epoch left, before the forwards move the buffers (EMA prototypes).
                    before = buffer_copy(model)
                    predicted, truth = _validate(model, val_only, [], images, patches, vals, val_masks, device,
                                                 precision, tilings)
                mine = ([(crops.batch(batch), 1.0)] if crop_model else
                        _windows_of_this_process([steps[j] for j in batch], group, [shares[j] for j in batch]))
                deferring = _defer_buffer_updates(model, len(mine) > 1)
                try:
                    for n, (unit, weight) in enumerate(mine):
                        # DDP averages gradients at a rank's last backward of the step only.
                        with trained.no_sync() if group is not None and n < len(mine) - 1 else nullcontext():
                            if crop_model:
                                loss, out = _crop_forward(trained, unit, device, precision), None
                            else:
                                loss, out = _forward(trained, unit.x, unit.y, unit.g, unit.v, unit.window, len(counts),
                                                     device, precision, turn, config.label_smoothing)
                            if scoring:
                                classes = out.logits.detach().argmax(1).cpu().numpy()
                                more = _unit_validation(unit, classes, vals, val_masks)
                                predicted += more[0]
                                truth += more[1]
                            _backward(loss * weight, scaler)
                        if weight:
                            aux = out is not None and out.aux_loss is not None
                            step += [weight * float(loss.detach()),
                                     weight * float(out.aux_loss.detach()) if aux else 0.0, weight, weight * aux]
                finally:
                    _end_deferral(deferring)
                if scoring:
                    if book.record(**pending, val_oa=_oa(predicted, truth), state=lambda: state_copy(model, before)):
                        stopped = True
                        break
                    pending = None
                _step(optimizer, scaler)
                if schedule is not None:
                    schedule.step()
                totals += step if group is None else np.asarray(distributed.sum_over_ranks(list(step), device))
                if not math.isfinite(totals[0]):
                    raise ValueError(f"training diverged: the loss is {totals[0]} in epoch {epoch}; "
                                     f"lower the learning rate (now {config.lr})")
                if len(epoch_batches) > 1:
                    report((epoch - 1 + (i + 1) / len(epoch_batches)) / config.epochs,
                           f"epoch {epoch}/{config.epochs}: step {i + 1}/{len(epoch_batches)}")
            if stopped:
                break
            if epoch == 1:
                backend = scan.last_backend()
                _log.info("selective scan backend: %s", backend)
            pending = {"epoch": epoch, "loss": float(totals[0] / totals[2]),
                       "aux_loss": float(totals[1] / totals[3]) if totals[3] else None, "steps": len(epoch_batches)}
            if from_forward and epoch < config.epochs:
                pending["seconds"] = time.perf_counter() - t0
                continue
            if cancel_requested():
                raise TrainingCancelled(f"training cancelled before validating epoch {epoch}")
            val_oa = math.nan
            if n_val and (group is None or group.rank == 0):
                if crop_model:
                    val_oa = _oa(*_validate_crops(model, patches, vals, val_masks, device, precision,
                                                  lambda: check_cancel(f"while validating epoch {epoch}")))
                else:
                    val_oa = _oa(*_validate(model, units, plans, images, patches, vals, val_masks, device, precision,
                                            tilings))
            if group is not None:
                val_oa = distributed.broadcast_object(val_oa)   # one score, so every rank decides alike
            if book.record(**pending, val_oa=val_oa, seconds=time.perf_counter() - t0, state=lambda: state_copy(model)):
                break
            pending = None
        windows = [w.shifted(p.window.row0, p.window.col0) for p, plan in zip(patches, plans) for w in plan]
        result = book.finish(model, start, device, backend, windows=windows,
                             validation_tiling=_validation_tiling(max_pixels) if any(tilings) else {},
                             precision=precision.describe(), estimated_epoch_seconds=estimate)
        measured = sum(h["seconds"] for h in result.history) / len(result.history)
        _log.info("time per epoch: estimated %.1f s before training, measured %.1f s (%.2fx the estimate)",
                  estimate, measured, measured / estimate if estimate > 0 else math.nan)
        return result
