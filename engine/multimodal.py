"""M3amba end to end: crop-based training, whole-raster prediction, and the file-to-file jobs.

M3amba (MODELS.md §5) fuses the hyperspectral raster with auxiliary rasters (LiDAR, SAR) on 32×32
crops. Training takes the crops of the stride-8 grid that hold a training pixel (§5.5) and minimises
``m3amba_loss`` (masked CE on the three heads + consistency) with AdamW and a cosine schedule (§5.6);
after every epoch the validation pixels are predicted as in classification and the best epoch is kept,
as ``train.py`` does for the whole-image models. Prediction averages the fusion logits of overlapping
crops (``engine.crops``), so each pixel gets one prediction, and streams the raster in blocks: every
block reads the HSI and warps the auxiliary rasters for its window only, so memory does not grow with
the raster. Outputs are those of ``predict.py`` (written by its ``classify_tiles``).

The jobs mirror ``pipeline.train_from_files`` / ``classify_file`` and write the same model-file
layout plus 'modalities' and 'clip' (modelfile.py). CLIP weights cannot be downloaded by the plugin:
without a local file, training refuses unless the documented ablation without the CLIP branch
(``use_clip=False``, CLI ``--no-clip``) is chosen.
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from .crops import PREDICT_STRIDE, TRAIN_STRIDE, average_logits, crop_starts, crops_covering, cut, pad, plan_crops
from .data.auxiliary import DEFAULT_RESAMPLING, AuxRaster, crs_name, open_aux, read_aux
from .data.labels import Color, class_indices, read_reference
from .data.normalize import Stretch, apply_stretch, fit_stretch
from .data.raster import RasterInfo, load_training_raster, read_window
from .data.splits import Split
from .device import resolve_device
from .metrics import accuracy
from .modelfile import FORMAT_VERSION, load_model, save_model
from .models.clip import KNOWN_CHECKPOINTS, VIT_B_32, config_from_state_dict, read_clip_state_dict
from .models.m3amba import m3amba_loss
from .models.registry import build_multimodal_model
from .paths import check_distinct
from .pipeline import (SplitOptions, absolute_or_none, classes_metadata, make_split, phase_progress, pixels_per_class,
                       restyle_classes, training_inputs, training_provenance, utc_now)
from .bandmatch import open_model_input
from .precision import Precision, choose_precision
from .predict import PredictionCancelled, TilePrediction, classify_tiles
from .ssm import scan
from .tiling import Tile, plan_tiles
from .sizing import choose_size
from .train import (EpochBook, TrainConfig, TrainingCancelled, TrainResult, default_memory_budget_mb, deterministic,
                    optimizer_step, seed_everything, state_copy)

__all__ = ["DEFAULT_BLOCK", "EPOCHS", "LEARNING_RATE", "WEIGHT_DECAY", "BATCH_SIZE", "train_on_crops",
           "predict_multimodal_raster", "train_multimodal_from_files", "classify_multimodal_file"]

log = logging.getLogger(__name__)

Progress = Callable[..., None]
Cancelled = Callable[[], bool]

# MODELS.md §5.6 (design values: the reference publishes no training script), except the learning rate:
# at the plugin's CPU width (registry.PLUGIN_DEFAULTS) §5.6's 1e-4 barely learns in 20 epochs on the
# MUUFL crop (test OA 0.30 at width 16, depth 1, seed 0), 1e-3 reaches 0.87 with the same budget.
EPOCHS = 100
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 0.05
BATCH_SIZE = 16
# Output block of prediction. Its window reaches up to a crop beyond the block on each side, and the
# crops that straddle two blocks run twice: about 20 % more crops than one pass at 256 px and stride 16
# (10 % at 512 px), while a 224-band window of 256 px stays near 80 MB.
DEFAULT_BLOCK = 256
_CLIP_URL = "https://openaipublic.azureedge.net/clip/models/{sha}/ViT-B-32.pt"
CLIP_MISSING = (
    "M3amba needs the weights of the CLIP ViT-B/32 image encoder, which the plugin cannot download: get OpenAI's "
    f"ViT-B-32.pt ({_CLIP_URL.format(sha=KNOWN_CHECKPOINTS[VIT_B_32][1])}; an open_clip or safetensors ViT-B/32 "
    "file works too) and pass its local path with --clip-weights FILE (toolbox: CLIP_WEIGHTS), or train the "
    "documented ablation without the CLIP branch with --no-clip (toolbox: NO_CLIP)")


# ------------------------------------------------------------------------------------------------
# Training on crops


def _optimizer(net: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW without decay on biases, norms and the SSM's A_log/D (VMamba's rule); frozen CLIP left out."""
    decay, no_decay = [], []
    for p in net.parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or getattr(p, "_no_weight_decay", False) else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)


def _predict_at(net: nn.Module, hsi: np.ndarray, aux: np.ndarray, mask: np.ndarray, stride: int,
                batch_size: int, device: torch.device, precision: Precision,
                check_cancel: Optional[Callable[[], None]] = None) -> np.ndarray:
    """Predicted class index (H, W) at the ``mask`` pixels (−1 elsewhere) of a scene in memory, from the
    averaged logits of every crop that covers them; the model's train/eval mode is restored."""
    crops = crops_covering(plan_crops(*mask.shape, net.crop, stride), mask, net.crop)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad(), precision.autocast(device):
            logits, _ = average_logits(net, hsi, aux, crops, net.crop, batch_size=batch_size, device=device,
                                       check_cancel=check_cancel)
    finally:
        net.train(was_training)
    return np.where(mask, logits.argmax(0), -1)


def train_on_crops(net: nn.Module, hsi: np.ndarray, aux: np.ndarray, valid: np.ndarray, split: Split,
                   config: Optional[TrainConfig] = None, batch_size: int = BATCH_SIZE,
                   weight_decay: float = WEIGHT_DECAY, predict_stride: int = PREDICT_STRIDE,
                   progress: Optional[Progress] = None, cancelled: Optional[Cancelled] = None) -> TrainResult:
    """Train M3amba on the crops of one scene; returns the best epoch's state (the model holds it, on the
    CPU, in eval mode).

    hsi (C_h, H, W) and aux (C_m, H, W): normalised, 0 at invalid pixels; valid (H, W) bool; split: class
    index maps (−1 = none). Every epoch is one pass over the stride-8 crops holding a training pixel, in
    shuffled batches; the validation OA uses prediction's averaged crops (``predict_stride``).
    ``progress(fraction, text)`` after every batch (no text) and epoch; ``cancelled()`` is polled before
    every batch and validation and raises TrainingCancelled.
    """
    config = config or TrainConfig(epochs=EPOCHS, lr=LEARNING_RATE)
    rows, cols = valid.shape
    if hsi.shape[1:] != valid.shape or aux.shape[1:] != valid.shape:
        raise ValueError(f"hsi {hsi.shape}, aux {aux.shape} and the valid mask {valid.shape} must share one grid")
    train = np.where(valid, split.train, -1).astype(np.int64)
    val_mask = valid & (split.validation >= 0)
    if not (train >= 0).any():
        raise ValueError("there are no training pixels on valid pixels (valid in the HSI and every auxiliary "
                         "raster); check that the labels or ROIs overlap all the rasters' data")
    device = resolve_device(config.device)
    report = progress or (lambda fraction, text="": None)
    stop = cancelled or (lambda: False)
    crop = net.crop
    start = time.perf_counter()

    def check_cancel(where: str) -> None:
        if stop():
            raise TrainingCancelled(f"training cancelled {where}")

    with deterministic(device, config.threads):
        seed_everything(config.seed)
        check_cancel("before it started")
        crops = crops_covering(plan_crops(rows, cols, crop, TRAIN_STRIDE), train >= 0, crop)
        x_hsi, offset = pad(hsi, crops, crop)
        x_aux, _ = pad(aux, crops, crop)
        y, _ = pad(train[None], crops, crop, value=-1)
        steps = math.ceil(len(crops) / batch_size)
        net.to(device).train()
        optimizer = _optimizer(net, config.lr, weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps)
        precision = choose_precision(device, config.precision)
        scaler = precision.scaler(device)
        log.info("precision: %s", precision.describe())
        counts = np.bincount(train[train >= 0])
        log.info("training on %s with %d torch threads; %s with %s trainable parameters; %d x %d px, %d + %d bands; "
                 "%d crops of %d px hold training pixels (%d batches of up to %d)", device, torch.get_num_threads(),
                 net.name, f"{sum(p.numel() for p in net.parameters() if p.requires_grad):,}", rows, cols,
                 hsi.shape[0], aux.shape[0], len(crops), crop, steps, batch_size)
        log.info("training pixels per class: %s; validation pixels: %d",
                 ", ".join(f"{config.class_label(c)}: {n}" for c, n in enumerate(counts)), int(val_mask.sum()))
        if not val_mask.any():
            log.warning("no validation pixels: the last epoch is kept instead of the best one")
        order = torch.Generator().manual_seed(config.seed)
        book = EpochBook(config.epochs, config.patience, report, log)
        backend = "none"
        for epoch in range(1, config.epochs + 1):
            t0 = time.perf_counter()
            losses = []
            permutation = torch.randperm(len(crops), generator=order).tolist()
            for i in range(steps):
                check_cancel(f"in epoch {epoch}")
                batch = [crops[k] for k in permutation[i * batch_size:(i + 1) * batch_size]]
                with precision.autocast(device):
                    outputs = net(cut(x_hsi, batch, crop, offset).to(device), cut(x_aux, batch, crop, offset).to(device))
                    loss = m3amba_loss(outputs, cut(y, batch, crop, offset)[:, 0].to(device))
                optimizer_step(optimizer, loss, scaler)
                schedule.step()
                losses.append(float(loss.detach()))
                if not math.isfinite(losses[-1]):
                    raise ValueError(f"training diverged: the loss is {losses[-1]} in epoch {epoch}; "
                                     f"lower the learning rate (now {config.lr})")
                report((epoch - 1 + (i + 1) / steps) / config.epochs)
            if epoch == 1:
                backend = scan.last_backend()
                log.info("selective scan backend: %s", backend)
            check_cancel(f"before validating epoch {epoch}")
            val_oa = math.nan
            if val_mask.any():
                predicted = _predict_at(net, hsi, aux, val_mask, predict_stride, batch_size, device, precision,
                                        lambda: check_cancel(f"while validating epoch {epoch}"))
                val_oa = float((predicted[val_mask] == split.validation[val_mask]).mean())
            if book.record(epoch, float(np.mean(losses)), None, val_oa, steps, time.perf_counter() - t0,
                           state=lambda: state_copy(net)):
                break
        return book.finish(net, start, device, backend, precision=precision.describe())


# ------------------------------------------------------------------------------------------------
# Prediction of a raster


def _block_tiles(rows: int, cols: int, crop: int, stride: int, block: int) -> List[Tile]:
    """Output blocks that partition the raster, each with the window its crops read (clipped to the raster)."""
    row_starts, col_starts = crop_starts(rows, crop, stride), crop_starts(cols, crop, stride)

    def window(starts: List[int], first: int, size: int, length: int) -> Tuple[int, int]:
        touching = [s for s in starts if s < first + size and s + crop > first]
        return max(touching[0], 0), min(touching[-1] + crop, length)

    tiles = []
    for t in plan_tiles(rows, cols, block, 0):
        r0, r1 = window(row_starts, t.row0, t.rows, rows)
        c0, c1 = window(col_starts, t.col0, t.cols, cols)
        tiles.append(Tile(r0, c0, r1 - r0, c1 - c0, t.row0, t.col0, t.rows, t.cols))
    return tiles


def _open_modalities(metadata: dict, info: RasterInfo, aux_paths: Sequence[str]) -> List[AuxRaster]:
    """The auxiliary rasters, checked against what the model was trained with."""
    expected = metadata["modalities"][1:]
    if len(aux_paths) != len(expected):
        trained = ", ".join(f"{m['name']} ({m['bands']} band{'s' if m['bands'] > 1 else ''})" for m in expected)
        raise ValueError(f"the model was trained with {len(expected)} auxiliary raster(s): {trained}; "
                         f"{len(aux_paths)} given. Give the same kinds of auxiliary rasters in the same order")
    auxes = []
    for i, (path, m) in enumerate(zip(aux_paths, expected), start=1):
        aux = open_aux(path, info, m.get("resampling") or DEFAULT_RESAMPLING)
        if aux.bands != m["bands"]:
            raise ValueError(f"auxiliary raster {i}, {path}, has {aux.bands} band(s) but the model's auxiliary raster "
                             f"{i} ({m['name']}) had {m['bands']}; give the auxiliary rasters in the training order")
        auxes.append(aux)
    return auxes


def _read_block(info: RasterInfo, auxes: Sequence[AuxRaster], stretches: Sequence[Stretch],
                t: Tile) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A block's window: normalised hsi (C_h, h, w), aux (C_m, h, w) and the valid mask (h, w)."""
    hsi, valid = read_window(info, t.row0, t.col0, t.rows, t.cols)
    reads = [read_aux(aux, info, t.row0, t.col0, t.rows, t.cols) for aux in auxes]
    for _, aux_valid in reads:
        valid &= aux_valid
    hsi = apply_stretch(hsi, valid, stretches[0])
    aux = np.concatenate([apply_stretch(data, valid, s) for (data, _), s in zip(reads, stretches[1:])])
    return hsi, aux, valid


def predict_multimodal_raster(net: nn.Module, metadata: dict, raster_path: str, aux_paths: Sequence[str],
                              out_classes: str, out_confidence: Optional[str] = None,
                              out_probabilities: Optional[str] = None, stride: int = PREDICT_STRIDE,
                              block: int = DEFAULT_BLOCK, batch_size: int = BATCH_SIZE, device: str = "auto",
                              bands: Optional[Sequence[int]] = None, inputs: Optional[Dict[str, Any]] = None,
                              progress: Optional[Progress] = None,
                              cancelled: Optional[Cancelled] = None) -> Dict[str, str]:
    """Classify ``raster_path`` with its auxiliary rasters (in the training order); {kind: path written}.

    Each ``block`` × ``block`` px block predicts from the crops of the whole raster's stride grid that
    cover its valid pixels, reading a window one crop wider; a pixel is nodata where the HSI or any
    auxiliary raster is invalid. ValueError for a wrong number of auxiliary rasters, other band counts
    or wavelengths, bad output paths; PredictionCancelled (polled between batches) leaves no file.
    ``bands`` and ``inputs`` as in ``predict.predict_raster``.
    """
    if not metadata.get("modalities"):
        raise ValueError(f"the {metadata['model']['name']} model reads the hyperspectral raster only; classify "
                         f"without auxiliary rasters")
    if not out_classes:
        raise ValueError("no path for the class raster; give one (the other outputs are optional)")
    info = open_model_input(raster_path, metadata, bands)
    auxes = _open_modalities(metadata, info, aux_paths)
    stretches = [Stretch.from_dict(m["normalisation"]) for m in metadata["modalities"]]
    tiles = _block_tiles(info.rows, info.cols, net.crop, stride, block)
    torch_device = resolve_device(device)
    log.info("classifying %s (%d x %d px, %d bands) with %d auxiliary raster(s) on %s: crops of %d px every %d px, "
             "averaged, in %d block(s) of up to %d x %d px", raster_path, info.rows, info.cols, info.bands,
             len(auxes), torch_device, net.crop, stride, len(tiles), block, block)
    grid = plan_crops(info.rows, info.cols, net.crop, stride)

    def check_cancel() -> None:
        if cancelled is not None and cancelled():
            raise PredictionCancelled(f"classification of {raster_path} cancelled; no output written")

    def predict_tile(t: Tile) -> TilePrediction:
        hsi, aux, valid = _read_block(info, auxes, stretches, t)
        keep = valid[t.crop_in_window]
        if not keep.any():
            return keep, None, None
        crops = crops_covering(grid, keep, net.crop, origin=(t.crop_row0, t.crop_col0))
        logits, _ = average_logits(net, hsi, aux, crops, net.crop, origin=(t.row0, t.col0), batch_size=batch_size,
                                   device=torch_device, check_cancel=check_cancel)
        probabilities = torch.softmax(torch.from_numpy(logits[(slice(None),) + t.crop_in_window]), dim=0)
        return keep, probabilities.numpy(), None

    was_training = net.training
    net.to(torch_device).eval()
    try:
        with torch.inference_mode(), choose_precision(torch_device).autocast(torch_device):
            return classify_tiles(metadata, info, [[t] for t in tiles], lambda group: [predict_tile(group[0])],
                                  out_classes, out_confidence=out_confidence, out_probabilities=out_probabilities,
                                  inputs=dict(inputs or {}, **{"auxiliary raster": list(aux_paths)}),
                                  progress=progress, cancelled=cancelled)
    finally:
        net.train(was_training)


# ------------------------------------------------------------------------------------------------
# File-to-file jobs


def _batch_fits(net: nn.Module, batch_size: int, config: TrainConfig) -> bool:
    """Whether one training step on a batch of crops fits the memory budget of ``config``'s CUDA device:
    the measured peak of a forward and backward on random crops, plus the weights' gradients and Adam's
    two moments. Used to size the model for a GPU; the model is left on the CPU."""
    device = resolve_device(config.device)
    budget = (config.memory_budget_mb or default_memory_budget_mb(device)) * 2**20
    precision = choose_precision(device, config.precision)
    try:
        net.to(device).train()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        hsi = torch.rand(batch_size, net.config["hsi_bands"], net.crop, net.crop, device=device)
        aux = torch.rand(batch_size, net.config["aux_bands"], net.crop, net.crop, device=device)
        with precision.autocast(device):
            loss = sum(output.float().mean() for output in net(hsi, aux))
        loss.backward()
        optimizer_state = 3 * sum(p.numel() * p.element_size() for p in net.parameters() if p.requires_grad)
        return torch.cuda.max_memory_allocated(device) - base + optimizer_state <= budget
    except torch.cuda.OutOfMemoryError:
        return False
    finally:
        net.zero_grad(set_to_none=True)
        net.to("cpu")
        torch.cuda.empty_cache()


def _clip_config(clip_weights: Optional[str], use_clip: bool) -> Optional[Dict[str, int]]:
    """The CLIP architecture of the weights file, checked before any data is read; None without CLIP."""
    if not use_clip:
        if clip_weights:
            raise ValueError("CLIP weights were given together with the ablation without CLIP (--no-clip); "
                             "choose one of them")
        return None
    if not clip_weights:
        raise ValueError(CLIP_MISSING)
    state, _ = read_clip_state_dict(clip_weights)
    return config_from_state_dict(state, source=clip_weights).to_dict()


def _read_scene(raster: str, aux: Sequence[str], resampling: Sequence[str]) -> Tuple[RasterInfo, np.ndarray,
                                                                                       List[AuxRaster], List[np.ndarray],
                                                                                       np.ndarray]:
    """(HSI info, HSI data, auxiliary rasters, their data on the HSI grid, valid mask of all modalities)."""
    info, hsi, valid = load_training_raster(raster)
    auxes = [open_aux(path, info, method) for path, method in zip(aux, resampling)]
    aux_data = []
    for source in auxes:
        data, aux_valid = read_aux(source, info)
        aux_data.append(data)
        valid &= aux_valid
    if not valid.any():
        raise ValueError(f"no pixel is valid in the hyperspectral raster and every auxiliary raster together; check "
                         f"their nodata values and that {', '.join(aux)} cover {raster}")
    log.info("%d of %d pixels are valid in every modality", int(valid.sum()), valid.size)
    return info, hsi, auxes, aux_data, valid


def _assess(net: nn.Module, hsi: np.ndarray, aux: np.ndarray, split: Split, ids: List[int], names: List[str],
            result: TrainResult, batch_size: int) -> Tuple[str, Dict[str, Any]]:
    """Metrics of the kept model on the test pixels (on the validation pixels when there is no test set)."""
    evaluated_on = "test" if (split.test >= 0).any() else "validation"
    index = split.test if evaluated_on == "test" else split.validation
    device = torch.device(result.device)
    predicted = _predict_at(net.to(device), hsi, aux, index >= 0, PREDICT_STRIDE, batch_size, device,
                            choose_precision(device))
    net.to("cpu")
    class_ids = np.asarray(ids, dtype=np.int64)
    reference = np.where(index >= 0, class_ids[np.maximum(index, 0)], 0)
    metrics = accuracy(reference, np.where(index >= 0, class_ids[np.maximum(predicted, 0)], 0), ids)
    return evaluated_on, metrics.as_dict(dict(zip(ids, names)))


def train_multimodal_from_files(raster: str, aux: Sequence[str], out_model: str, labels: Optional[str] = None,
                                rois: Optional[str] = None, class_field: Optional[str] = None,
                                name_field: Optional[str] = None, clip_weights: Optional[str] = None,
                                use_clip: bool = True, model: str = "m3amba", epochs: int = EPOCHS,
                                device: str = "auto", seed: int = 0, lr: float = LEARNING_RATE,
                                aux_resampling: Optional[Sequence[str]] = None,
                                overrides: Optional[Dict[str, Any]] = None, split: Optional[SplitOptions] = None,
                                patience: Optional[int] = None, threads: Optional[int] = None,
                                batch_size: int = BATCH_SIZE,
                                class_style: Optional[Dict[int, Tuple[Optional[str], Color]]] = None,
                                other_outputs: Optional[Dict[str, Optional[str]]] = None,
                                progress: Optional[Progress] = None,
                                cancelled: Optional[Cancelled] = None) -> Tuple[Dict[str, Any], TrainResult]:
    """Train M3amba on an HSI ``raster`` and auxiliary rasters ``aux`` with labels or ROIs; save ``out_model``.

    Each auxiliary raster is resampled onto the HSI grid (``aux_resampling``: one method for all or one
    per raster; default bilinear) and stretched on its own; all auxiliary bands form the auxiliary
    modality, in the given order. ``clip_weights``: a local CLIP ViT image-encoder file (required unless
    ``use_clip`` is False, the documented ablation). ``class_style``: {class id: (name or None, (r, g, b))},
    the ROI layer's colours (and names where the labels carry none) as in ``pipeline.train_from_files``.
    Returns (metadata, TrainResult) as ``pipeline.train_from_files``; the model file is written only when
    training finished (a cancel, TrainingCancelled, leaves none). ValueError for bad input, before the
    data is read where possible; ``other_outputs`` as in ``pipeline.train_from_files``.
    """
    split = split or SplitOptions()
    started = utc_now()
    aux = list(aux)
    if not aux:
        raise ValueError(f"{model} needs at least one auxiliary raster (LiDAR, SAR) beside the hyperspectral raster")
    methods = list(aux_resampling or [DEFAULT_RESAMPLING])
    if len(methods) == 1:
        methods *= len(aux)
    if len(methods) != len(aux):
        raise ValueError(f"{len(methods)} resampling methods for {len(aux)} auxiliary rasters; give one for all "
                         f"or one per auxiliary raster")
    fixed = sorted({"use_clip", "clip"} & set(overrides or {}))
    if fixed:
        raise ValueError(f"{', '.join(fixed)} cannot be set as model options; use --clip-weights FILE or --no-clip")
    inputs = training_inputs(raster, labels, rois, split, **{"auxiliary raster": aux, "CLIP weights": clip_weights})
    check_distinct(inputs, dict(other_outputs or {}, **{"model file": out_model}))
    clip = _clip_config(clip_weights, use_clip)
    load = phase_progress(progress, 0.0, 0.05)
    load(0.0, f"reading {raster} and {len(aux)} auxiliary raster(s)")
    with threadpool_limits(limits=threads):
        info, hsi_raw, auxes, aux_raw, valid = _read_scene(raster, aux, methods)
        ids, table = read_reference(info, labels, rois, class_field, name_field, valid=valid)
        if class_style:
            table = restyle_classes(table, class_style, keep_names=name_field is not None)
        split = split.resolved(class_indices(ids, table), valid)
        scene_split = make_split(info, class_indices(ids, table), table, valid, seed, split, class_field)
        counts = {name: pixels_per_class(getattr(scene_split, name), len(table.ids)) for name in ("train", "validation", "test")}
        for cid, name, n_train, n_val, n_test in zip(table.ids, table.names, *counts.values()):
            log.info("class %s %-20s train %5d  validation %5d  test %6d", cid, name, n_train, n_val, n_test)
        if not any(counts["validation"]):
            raise ValueError("the split left no validation pixel (every class is too small); label more pixels or "
                             "give validation ROIs")
        stretches = [fit_stretch(hsi_raw, valid)] + [fit_stretch(data, valid) for data in aux_raw]
        hsi = apply_stretch(hsi_raw, valid, stretches[0])
        aux_image = np.concatenate([apply_stretch(data, valid, s) for data, s in zip(aux_raw, stretches[1:])])
        del hsi_raw, aux_raw
        config = TrainConfig(epochs=epochs, lr=lr, device=device, seed=seed, patience=patience, threads=threads,
                             class_ids=tuple(table.ids))
        overrides = dict(overrides or {})

        def build(size: Dict[str, Any]) -> nn.Module:
            return build_multimodal_model(model, info.bands, aux_image.shape[0], len(table.ids), use_clip=use_clip,
                                          clip=clip, **{**size, **overrides})

        size, why = choose_size(model, resolve_device(device), overrides,
                                lambda candidate: _batch_fits(build(candidate), batch_size, config))
        seed_everything(seed)  # model initialisation is part of the seeded run
        net = build(size)
        log.info("model %s at width %s, depth %s (%s)", model, net.config["dim"], net.config["depth"], why)
        checkpoint = net.load_clip_weights(clip_weights) if use_clip else None
        load(1.0, f"{model}: {sum(p.numel() for p in net.parameters() if p.requires_grad):,} trainable parameters, "
                  f"{info.bands} + {aux_image.shape[0]} bands, {len(table.ids)} classes, "
                  f"{sum(counts['train'])} training pixels, CLIP {'on' if use_clip else 'off (ablation)'}")
        result = train_on_crops(net, hsi, aux_image, valid, scene_split, config, batch_size=batch_size,
                                progress=phase_progress(progress, 0.05, 0.95), cancelled=cancelled)
        assess = phase_progress(progress, 0.95, 1.0)
        assess(0.0, "assessing the kept model")
        evaluated_on, metrics = _assess(net, hsi, aux_image, scene_split, table.ids, table.names, result, batch_size)

    modalities = [{"name": os.path.basename(raster), "role": "hsi", "path": os.path.abspath(raster),
                   "bands": info.bands, "band_names": list(info.band_names), "nodata": list(info.nodata),
                   "resampling": None, "crs": crs_name(info.projection), "reprojected": False}]
    modalities += [source.describe() for source in auxes]
    for entry, stretch in zip(modalities, stretches):
        entry["normalisation"] = stretch.to_dict()
    metadata = {
        "format_version": FORMAT_VERSION,
        "model": {"name": model, "config": dict(net.config)},
        "bands": {"indices": list(info.band_indices), "names": list(info.band_names),
                  "wavelengths": None if info.wavelengths is None else list(info.wavelengths),
                  "nodata": list(info.nodata), "file_count": info.file_bands},
        "normalisation": stretches[0].to_dict(),
        "classes": classes_metadata(table),
        "modalities": modalities,
        "clip": None if checkpoint is None else {"sha256": checkpoint.sha256, "path": checkpoint.path,
                                                 "known_as": checkpoint.known_as},
        "provenance": dict(training_provenance(
            result, {"raster": os.path.abspath(raster), "aux": [os.path.abspath(p) for p in aux],
                     "labels": absolute_or_none(labels), "rois": absolute_or_none(rois),
                     "class_field": class_field, "name_field": name_field},
            split, counts, seed, epochs, lr, evaluated_on, metrics, started),
            weight_decay=WEIGHT_DECAY, batch_size=batch_size, crop=net.crop, train_stride=TRAIN_STRIDE,
            predict_stride=PREDICT_STRIDE),
    }
    save_model(out_model, net, metadata)
    assess(1.0, f"model written to {out_model}: {evaluated_on} OA {metrics['overall_accuracy']:.4f}")
    return metadata, result


def classify_multimodal_file(model_path: str, raster: str, aux: Sequence[str], out: str,
                             confidence: Optional[str] = None, probabilities: Optional[str] = None,
                             stride: int = PREDICT_STRIDE, block: int = DEFAULT_BLOCK, device: str = "auto",
                             threads: Optional[int] = None, bands: Optional[Sequence[int]] = None,
                             progress: Optional[Progress] = None,
                             cancelled: Optional[Cancelled] = None) -> Dict[str, str]:
    """Classify ``raster`` with a multi-modal model file and the auxiliary rasters ``aux`` (same kinds and
    order as in training); {output kind: path written}. As ``pipeline.classify_file``: ValueError before
    any work for mismatching inputs or bad paths; PredictionCancelled leaves no output behind."""
    net, metadata = load_model(model_path)
    with threadpool_limits(limits=threads):
        return predict_multimodal_raster(net, metadata, raster, list(aux), out, out_confidence=confidence,
                                         out_probabilities=probabilities, stride=stride, block=block, device=device,
                                         bands=bands, inputs={"model file": model_path}, progress=progress,
                                         cancelled=cancelled)
