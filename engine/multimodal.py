"""The multi-modal parts of the one path (MODELS.md §5): auxiliary rasters, CLIP, and crop-model prediction.

M3amba fuses the hyperspectral raster with auxiliary rasters (LiDAR, SAR) on 32×32 crops. It trains and
classifies through the same jobs as every model (``pipeline.train_from_files`` / ``classify_file`` with
``aux``): ``pipeline`` reads the auxiliary rasters with the raster, window by window, into the same patches;
``train.train_patches`` runs its crop recipe (minibatches of the crops that hold a training pixel, its own
optimizer and loss: ``M3amba.configure_optimizers`` / ``training_loss``). What is specific to multi-modal
models lives here: the checks of the auxiliary inputs and of CLIP, the GPU sizing of a crop batch, the model
file's 'modalities' and 'clip' entries, and prediction, which averages the fusion logits of overlapping
crops (``engine.training.crops``) so each pixel gets one prediction, streaming the raster in blocks: every block
reads the HSI and warps the auxiliary rasters for its window only, and the shared writer
(``predict.classify_tiles``) writes the outputs.

CLIP weights cannot be downloaded by the plugin: without a local file, training refuses unless the
documented ablation without the CLIP branch (``use_clip=False``, CLI ``--no-clip``) is chosen.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .bandmatch import open_model_input
from .training.crops import (BATCH_SIZE, PREDICT_STRIDE, TRAIN_STRIDE, average_logits, crops_covering,
                             overlapping_starts, plan_crops)
from .data.auxiliary import DEFAULT_RESAMPLING, AuxRaster, crs_name, open_aux, read_auxes
from .data.normalize import Stretch, apply_stretch
from .data.raster import RasterInfo, read_window
from .device import resolve_device
from .models.clip import KNOWN_CHECKPOINTS, VIT_B_32, config_from_state_dict, read_clip_state_dict
from .models.m3amba import WEIGHT_DECAY
from .models.registry import MULTIMODAL_NAMES
from .precision import choose_precision
from .inference.predict import PredictionCancelled, TilePrediction, classify_tiles
from .inference.tiling import Tile, plan_tiles
from .training.train import TrainConfig, default_memory_budget_mb

__all__ = ["DEFAULT_BLOCK", "EPOCHS", "LEARNING_RATE", "WEIGHT_DECAY", "BATCH_SIZE", "CLIP_MISSING",
           "check_modalities", "clip_config", "crop_batch_fits", "modalities_metadata", "crop_recipe_metadata",
           "predict_multimodal_raster"]

log = logging.getLogger(__name__)

Progress = Callable[..., None]
Cancelled = Callable[[], bool]

# MODELS.md §5.6 (design values: the reference publishes no training script), except the learning rate:
# at the plugin's CPU width (registry.PLUGIN_DEFAULTS) §5.6's 1e-4 barely learns in 20 epochs on the
# MUUFL crop (test OA 0.30 at width 16, depth 1, seed 0), 1e-3 reaches 0.87 with the same budget.
EPOCHS = 100
LEARNING_RATE = 1e-3
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
# Prediction of a raster


def _block_tiles(rows: int, cols: int, crop: int, stride: int, block: int) -> List[Tile]:
    """Output blocks that partition the raster, each with the window its crops read (clipped to the raster)."""
    def window(first: int, size: int, length: int) -> Tuple[int, int]:
        touching = overlapping_starts(length, first, first + size, crop, stride)
        return max(touching[0], 0), min(touching[-1] + crop, length)

    tiles = []
    for t in plan_tiles(rows, cols, block, 0):
        r0, r1 = window(t.row0, t.rows, rows)
        c0, c1 = window(t.col0, t.cols, cols)
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
    reads = read_auxes(auxes, info, valid, t.row0, t.col0, t.rows, t.cols)
    hsi = apply_stretch(hsi, valid, stretches[0])
    aux = np.concatenate([apply_stretch(data, valid, s) for data, s in zip(reads, stretches[1:])])
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
# Training inputs


def crop_batch_fits(net: nn.Module, config: TrainConfig, batch_size: int = BATCH_SIZE) -> bool:
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


def clip_config(clip_weights: Optional[str], use_clip: bool) -> Optional[Dict[str, int]]:
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


def check_modalities(model: str, aux: Optional[Sequence[str]], resampling: Optional[Sequence[str]],
                     overrides: Optional[Dict[str, Any]], windows_per_step: int) -> List[str]:
    """Refuse a multi-modal training request that cannot run, before any data is read; the resampling
    method of each auxiliary raster (one given for all, or one per raster; default bilinear)."""
    if model not in MULTIMODAL_NAMES:
        raise ValueError(f"{model} reads the hyperspectral raster only; auxiliary rasters need a multi-modal model "
                         f"({', '.join(MULTIMODAL_NAMES)})")
    if not aux:
        raise ValueError(f"{model} fuses the raster with auxiliary rasters (LiDAR, SAR) of the same area: give at "
                         "least one (CLI: --aux FILE; toolbox: Auxiliary rasters)")
    if windows_per_step != 1:
        raise ValueError(f"windows per step: for the whole-window models; {model} trains on minibatches of crops")
    methods = list(resampling or [DEFAULT_RESAMPLING])
    if len(methods) == 1:
        methods *= len(aux)
    if len(methods) != len(aux):
        raise ValueError(f"{len(methods)} resampling methods for {len(aux)} auxiliary rasters; give one for all "
                         f"or one per auxiliary raster")
    fixed = sorted({"use_clip", "clip"} & set(overrides or {}))
    if fixed:
        raise ValueError(f"{', '.join(fixed)} cannot be set as model options; use --clip-weights FILE or --no-clip")
    return methods


def modalities_metadata(raster: str, info: RasterInfo, stretch: Stretch, auxes: Sequence[AuxRaster],
                        aux_stretches: Sequence[Stretch]) -> Dict[str, Any]:
    """The model file's 'modalities': the hyperspectral raster, then each auxiliary raster as resampled,
    each with its stretch; classification checks the auxiliary rasters against it."""
    modalities = [{"name": os.path.basename(raster), "role": "hsi", "path": os.path.abspath(raster),
                   "bands": info.bands, "band_names": list(info.band_names), "nodata": list(info.nodata),
                   "resampling": None, "crs": crs_name(info.projection), "reprojected": False}]
    modalities += [source.describe() for source in auxes]
    for entry, s in zip(modalities, [stretch, *aux_stretches]):
        entry["normalisation"] = s.to_dict()
    return {"modalities": modalities}


def crop_recipe_metadata(net: nn.Module) -> Dict[str, Any]:
    """The crop recipe's settings, for the model file's provenance."""
    return {"weight_decay": WEIGHT_DECAY, "batch_size": BATCH_SIZE, "crop": net.crop, "train_stride": TRAIN_STRIDE,
            "predict_stride": PREDICT_STRIDE}
