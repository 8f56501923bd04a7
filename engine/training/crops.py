"""Crops for crop-based models (M3amba, MODELS.md §5.5): the crop grid, which crops to use, and
prediction by averaging the logits of overlapping crops.

M3amba only sees fixed 32×32 crops. Crops are centred on a stride grid (centres 0, s, 2s, … along each
axis), so they reach crop/2 px beyond the raster, where the input is zero as in the reference's
zero-padding. Training uses the crops that hold at least one training pixel; prediction averages, at
every pixel, the logits of all crops that cover it, so each pixel gets exactly one prediction and is
counted once in the metrics. Restricting prediction to the crops that cover some pixel of interest
(validation pixels, valid pixels of a block) leaves those pixels' averages unchanged, since every crop
covering such a pixel is kept.

Crops are given by their top-left corner (row0, col0) in raster coordinates (negative at the top and
left edges). ``CropBatches`` is the training side of the trainer's crop recipe (engine/training/train.py): the
crops of every patch that hold a training pixel, shuffled into minibatches each epoch; ``predict_at``
its validation and assessment. No GDAL here.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["CROP", "TRAIN_STRIDE", "PREDICT_STRIDE", "BATCH_SIZE", "Crop", "crop_starts", "plan_crops",
           "overlapping_starts", "grid_crops", "crops_covering", "pad", "cut", "average_logits", "predict_at",
           "CropBatch", "CropBatches"]

CROP = 32            # M3amba's crop side (its adapter is tied to crop² tokens)
TRAIN_STRIDE = 8     # MODELS.md §5.5
# Prediction: centres 16 px apart, so each pixel is covered by 2 x 2 crops and none sits at a crop border
# in all of them; a quarter of the crops of stride 8 (§5.5's test stride 32 covers each pixel once).
PREDICT_STRIDE = 16
BATCH_SIZE = 16      # crops per optimizer step and per prediction forward (MODELS.md §5.6)

Crop = Tuple[int, int]  # (row0, col0) of a crop's top-left pixel


def crop_starts(length: int, crop: int = CROP, stride: int = TRAIN_STRIDE) -> List[int]:
    """First pixels of the crops along one axis of ``length`` px: centres 0, stride, … below ``length``,
    plus one more when needed to reach the last pixel (stride > crop/2), so every pixel is covered."""
    if length < 1 or crop < 1:
        raise ValueError(f"cannot place {crop} px crops on {length} px")
    if not 1 <= stride <= crop:
        raise ValueError(f"the crop stride must lie in 1..{crop} (the crop size) so that crops leave no gap, "
                         f"got {stride}")
    starts = list(range(-(crop // 2), length - crop // 2, stride))
    while starts[-1] + crop < length:
        starts.append(starts[-1] + stride)
    return starts


def plan_crops(rows: int, cols: int, crop: int = CROP, stride: int = TRAIN_STRIDE) -> List[Crop]:
    """Every crop of the grid, row-major."""
    return [(r, c) for r in crop_starts(rows, crop, stride) for c in crop_starts(cols, crop, stride)]


def overlapping_starts(length: int, first: int, stop: int, crop: int = CROP, stride: int = TRAIN_STRIDE) -> List[int]:
    """The starts of the crops along an axis of ``length`` px (``crop_starts``) that overlap [first, stop)."""
    return [s for s in crop_starts(length, crop, stride) if s < stop and s + crop > first]


def grid_crops(window: Tuple[int, int, int, int], scene: Tuple[int, int], crop: int = CROP,
               stride: int = TRAIN_STRIDE) -> List[Crop]:
    """The crops of the whole scene's grid (``plan_crops(*scene)``) that overlap ``window`` (row0, row1,
    col0, col1), row-major: a window of the scene sees the very crops the whole scene would give there."""
    row0, row1, col0, col1 = window
    return [(r, c) for r in overlapping_starts(scene[0], row0, row1, crop, stride)
            for c in overlapping_starts(scene[1], col0, col1, crop, stride)]


def crops_covering(crops: Sequence[Crop], mask: np.ndarray, crop: int = CROP, origin: Crop = (0, 0)) -> List[Crop]:
    """The crops that hold at least one True pixel of ``mask`` (h, w), whose top-left pixel is raster
    pixel ``origin``; counted with a summed-area table, so any number of crops costs O(h·w + crops)."""
    table = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), np.int64)
    table[1:, 1:] = np.asarray(mask, bool).cumsum(0).cumsum(1)
    h, w = mask.shape

    def count(r0: int, c0: int) -> int:
        r, c = r0 - origin[0], c0 - origin[1]
        r1, c1 = min(max(r + crop, 0), h), min(max(c + crop, 0), w)
        r, c = min(max(r, 0), h), min(max(c, 0), w)
        return int(table[r1, c1] - table[r, c1] - table[r1, c] + table[r, c])

    return [k for k in crops if count(*k) > 0]


def _padding(crops: Sequence[Crop], shape: Tuple[int, int], crop: int, origin: Crop) -> Tuple[int, int, int, int]:
    """Zero padding (top, bottom, left, right) that puts every crop inside an (h, w) window at ``origin``."""
    rows = [r - origin[0] for r, _ in crops]
    cols = [c - origin[1] for _, c in crops]
    return (max(0, -min(rows)), max(0, max(rows) + crop - shape[0]),
            max(0, -min(cols)), max(0, max(cols) + crop - shape[1]))


def cut(padded: Tensor, crops: Sequence[Crop], crop: int, offset: Crop) -> Tensor:
    """Stack crops of a padded (C, H', W') tensor into (B, C, crop, crop); raster pixel (r, c) is
    ``padded[:, r + offset[0], c + offset[1]]`` (``pad`` returns the offset)."""
    return torch.stack([padded[:, r + offset[0]:r + offset[0] + crop, c + offset[1]:c + offset[1] + crop]
                        for r, c in crops])


def pad(array: Union[np.ndarray, Tensor], crops: Sequence[Crop], crop: int, origin: Crop = (0, 0),
        value: float = 0) -> Tuple[Tensor, Crop]:
    """(C, h, w) window at raster pixel ``origin`` → (padded tensor, offset for ``cut``): every crop fits,
    the padding holds ``value``."""
    if not crops:
        raise ValueError("no crops to place")
    x = torch.as_tensor(array)
    top, bottom, left, right = _padding(crops, tuple(x.shape[-2:]), crop, origin)
    padded = torch.nn.functional.pad(x, (left, right, top, bottom), value=value)
    return padded, (top - origin[0], left - origin[1])


def average_logits(model: nn.Module, hsi: np.ndarray, aux: np.ndarray, crops: Sequence[Crop], crop: int = CROP,
                   origin: Crop = (0, 0), batch_size: int = 16, device: Union[str, torch.device] = "cpu",
                   check_cancel: Optional[Callable[[], None]] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Mean fusion logits M_f over the given crops at each pixel of a window: (Ncls, h, w) float32 and the
    number of crops that covered each pixel (h, w) int32 (0: no prediction, logits 0 there).

    hsi (C_h, h, w) and aux (C_m, h, w) are normalised inputs of the window whose top-left is raster
    pixel ``origin``; the parts of crops outside the window are zero. The caller puts the model on
    ``device`` in eval mode under no-grad. ``check_cancel()`` runs before every batch; it stops the work
    by raising the caller's exception.
    """
    x_hsi, offset = pad(hsi, crops, crop, origin)
    x_aux, _ = pad(aux, crops, crop, origin)
    h, w = hsi.shape[1:]
    total: Optional[Tensor] = None
    count = torch.zeros(x_hsi.shape[1:], dtype=torch.int32)
    for i in range(0, len(crops), batch_size):
        if check_cancel is not None:
            check_cancel()
        batch = crops[i:i + batch_size]
        _, fused, _ = model(cut(x_hsi, batch, crop, offset).to(device), cut(x_aux, batch, crop, offset).to(device))
        fused = fused.float().cpu()
        if total is None:
            total = torch.zeros((fused.shape[1],) + tuple(x_hsi.shape[1:]), dtype=torch.float32)
        for (r, c), logits in zip(batch, fused):
            r, c = r + offset[0], c + offset[1]
            total[:, r:r + crop, c:c + crop] += logits
            count[r:r + crop, c:c + crop] += 1
    top, left = offset[0] + origin[0], offset[1] + origin[1]
    count = count[top:top + h, left:left + w]
    mean = total[:, top:top + h, left:left + w] / count.clamp(min=1)
    return mean.numpy(), count.numpy()


def predict_at(model: nn.Module, hsi: np.ndarray, aux: np.ndarray, mask: np.ndarray, stride: int = PREDICT_STRIDE,
               batch_size: int = BATCH_SIZE, device: Union[str, torch.device] = "cpu",
               autocast: Optional[Callable[[], object]] = None, check_cancel: Optional[Callable[[], None]] = None,
               origin: Crop = (0, 0), scene: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Predicted class index (h, w) at the ``mask`` pixels (−1 elsewhere) of a window in memory whose top-left
    is scene pixel ``origin`` (the scene is ``scene`` rows x cols, None: the window itself), from the averaged
    logits of every crop of the scene's stride grid that covers them, as classification predicts; the
    model's train/eval mode is restored. ``autocast()``: the precision context (None: none)."""
    crop = model.crop
    h, w = mask.shape
    window = (origin[0], origin[0] + h, origin[1], origin[1] + w)
    crops = crops_covering(grid_crops(window, scene or (h, w), crop, stride), mask, crop, origin)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), (autocast() if autocast is not None else nullcontext()):
            logits, _ = average_logits(model, hsi, aux, crops, crop, origin=origin, batch_size=batch_size,
                                       device=device, check_cancel=check_cancel)
    finally:
        model.train(was_training)
    return np.where(mask, logits.argmax(0), -1)


class CropBatch(NamedTuple):
    """One optimizer step's crops: hsi (B, C_h, crop, crop), aux (B, C_m, crop, crop), labels (B, crop, crop)."""

    hsi: Tensor
    aux: Tensor
    labels: Tensor


class CropBatches:
    """The training crops of a crop model (MODELS.md §5.5): every crop of the scene's stride grid that holds
    one of a patch's training pixels (−1 in ``trains`` elsewhere), in patch order, cut from the patches when
    a minibatch needs them (zeros, labels −1, beyond a patch: no padded copy of the patches is kept). A
    patch is a window of the scene at ``origins`` (row0, col0) of a scene of ``scene`` rows x cols; with a
    crop of context around the pixels it owns (``sampler.crop_label_tiling``) its crops hold what the whole
    scene's would. ``epoch(generator)`` shuffles them into minibatches."""

    def __init__(self, images: Sequence[np.ndarray], auxes: Sequence[np.ndarray], trains: Sequence[np.ndarray],
                 crop: int, origins: Sequence[Crop], scene: Tuple[int, int], stride: int = TRAIN_STRIDE,
                 batch_size: int = BATCH_SIZE) -> None:
        self.crop, self.batch_size = crop, batch_size
        self.sources = [(image, aux, np.asarray(train, np.int64)[None], origin)
                        for image, aux, train, origin in zip(images, auxes, trains, origins)]
        self.crops: List[Tuple[int, Crop]] = []          # (patch, crop) in patch order
        for k, (train, origin) in enumerate(zip(trains, origins)):
            h, w = train.shape
            window = (origin[0], origin[0] + h, origin[1], origin[1] + w)
            self.crops += [(k, c) for c in crops_covering(grid_crops(window, scene, crop, stride), train >= 0, crop,
                                                          origin)]

    def __len__(self) -> int:
        return len(self.crops)

    @property
    def steps(self) -> int:
        """Optimizer steps an epoch makes."""
        return math.ceil(len(self.crops) / self.batch_size)

    def batch(self, picks: Sequence[int]) -> CropBatch:
        """The crops ``picks`` (indices into the crop list), stacked."""
        parts: List[List[np.ndarray]] = [[], [], []]
        for k in picks:
            patch, (r, c) = self.crops[k]
            *arrays, origin = self.sources[patch]
            for part, source, fill in zip(parts, arrays, (0, 0, -1)):
                part.append(_crop_of(source, r - origin[0], c - origin[1], self.crop, fill))
        hsi, aux, labels = (torch.from_numpy(np.stack(part)) for part in parts)
        return CropBatch(hsi, aux, labels[:, 0])

    def epoch(self, generator: torch.Generator) -> List[List[int]]:
        """This epoch's minibatches: a fresh permutation of the crops cut into runs of ``batch_size``."""
        order = torch.randperm(len(self.crops), generator=generator).tolist()
        return [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]


def _crop_of(array: np.ndarray, row0: int, col0: int, crop: int, fill: float) -> np.ndarray:
    """The crop x crop window at (row0, col0) of a (C, h, w) array; ``fill`` where it reaches beyond it."""
    out = np.full((array.shape[0], crop, crop), fill, array.dtype)
    h, w = array.shape[1:]
    r0, c0, r1, c1 = max(row0, 0), max(col0, 0), min(row0 + crop, h), min(col0 + crop, w)
    if r0 < r1 and c0 < c1:
        out[:, r0 - row0:r1 - row0, c0 - col0:c1 - col0] = array[:, r0:r1, c0:c1]
    return out
