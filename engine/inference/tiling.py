"""Overlapping tiles stitched by centre-crop, and prediction of an in-memory image through them.

Why tiles: MambaHSI and CSSMamba are whole-image models (their scans span the whole input), so a
large scene does not fit in memory at once. Each tile is read with ``overlap`` pixels of context on
every side that touches another tile; only its centre part is kept. Every pixel is written exactly
once, by the tile in which it lies farthest from an interior tile edge (the crop boundary between
two neighbouring tiles is the middle of their shared strip). Tiles on the raster border extend to the
border, where there is no context to miss. All tiles along an axis have the same size, spread
evenly: at most ``tile``, and as small as the fewest tiles allow (a 1000 px axis with tile 512 and
overlap 32 gets three 376 px windows, not three of 512), so no time goes into surplus overlap and
the scan length, which changes results a little, is the same for every tile of a raster.

Because the scan spans the tile, tiled and untiled results differ slightly for these models; a
per-pixel model gives identical results for every tile plan (tests/test_tiling.py checks that).

Invalid pixels (``valid`` False, under nodata) get all-zero probabilities and cluster -1 in
``predict_array``: they have no prediction, and zero probabilities can never win an argmax against a
valid pixel's. The model still sees them (as the 0 that ``apply_stretch`` puts there) and gets the
mask (``valid``), exactly as during training, so their neighbours are predicted as in training.

No GDAL here: this module also runs on GPU machines without it.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np
import torch

from ..models.base import HSIClassifier
from ..training.sampler import Tile, plan_tiles

__all__ = ["DEFAULT_TILE", "DEFAULT_OVERLAP", "Tile", "plan_tiles", "predict_window", "predict_windows", "predict_array"]

# Defaults for predicting rasters. The Mamba scans span the whole tile, so the tile size changes the
# results a little and the speed a lot. Measured (bench/results/speed_classify.md, 1000 x 1000 x 224,
# default CSSMamba, 2-core CPU): tile 512 takes 72 s and 1.7 GB peak RSS, tile 256 takes 101 s and
# 1.3 GB (more overlap per pixel); 512 is the fastest that stays under the 2 GB target. Not yet
# measured: accuracy of tiled vs whole-image prediction on a scene larger than one tile.
DEFAULT_TILE = 512
DEFAULT_OVERLAP = 32


def predict_windows(model: HSIClassifier, images: np.ndarray, valid: np.ndarray,
                    device: Union[str, torch.device] = "cpu") -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """One forward pass on a batch of windows of one shape: (probabilities float32 (B, Ncls, h, w), clusters
    int64 (B, h, w) or None). A batch costs less than its windows one by one (CSSMamba's routing and the
    scans have a fixed cost per forward); the models compute every window on its own.

    images: (B, Nb, h, w) float32, normalised; valid: (B, h, w) bool, False under nodata (the model's
    ``valid``). The caller puts the model on ``device``, in eval mode, under ``torch.inference_mode``
    (predict_array and predict_raster do).
    """
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).to(device)
    out = model(x, valid=torch.from_numpy(np.ascontiguousarray(valid, dtype=bool)).to(device))
    probabilities = torch.softmax(out.logits.float(), dim=1).cpu().numpy()
    clusters = None if out.clusters is None else out.clusters.to(torch.int64).cpu().numpy()
    return probabilities, clusters


def predict_window(model: HSIClassifier, image: np.ndarray, valid: np.ndarray,
                   device: Union[str, torch.device] = "cpu") -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """``predict_windows`` for one window (Nb, h, w) with its valid (h, w): (probabilities (Ncls, h, w),
    clusters (h, w) or None)."""
    probabilities, clusters = predict_windows(model, image[None], valid[None], device)
    return probabilities[0], None if clusters is None else clusters[0]


def predict_array(model: HSIClassifier, image: np.ndarray, valid: np.ndarray, tile: Optional[int] = None,
                  overlap: int = DEFAULT_OVERLAP,
                  device: Union[str, torch.device] = "cpu") -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Class probabilities (and clusters, when the model gives them) of an in-memory image.

    image: (Nb, H, W) float32 normalised; valid: (H, W) bool. tile=None: the whole image in one pass
    (as in training); otherwise overlapping tiles of ``tile`` px stitched by centre-crop.
    Returns probabilities float32 (Ncls, H, W) (softmax; all 0 at invalid pixels) and clusters int64
    (H, W) (-1 at invalid pixels) or None. The model is moved to ``device`` and run in eval mode; its
    train/eval mode is restored afterwards, so the trainer can call this for validation.
    """
    if image.ndim != 3 or valid.shape != image.shape[1:]:
        raise ValueError(f"expected image (bands, rows, cols) and valid (rows, cols), "
                         f"got {image.shape} and {valid.shape}")
    rows, cols = valid.shape
    tiles = plan_tiles(rows, cols, max(rows, cols) if tile is None else tile, 0 if tile is None else overlap)
    probabilities: Optional[np.ndarray] = None
    clusters: Optional[np.ndarray] = None
    was_training = model.training
    model.to(device).eval()
    try:
        with torch.inference_mode():
            for t in tiles:
                if not valid[t.crop].any():
                    continue                             # nothing to predict; outputs stay "no prediction"
                prob, clus = predict_window(model, image[(slice(None),) + t.window], valid[t.window], device)
                if probabilities is None:
                    probabilities = np.zeros((prob.shape[0], rows, cols), np.float32)
                    clusters = None if clus is None else np.full((rows, cols), -1, np.int64)
                probabilities[(slice(None),) + t.crop] = prob[(slice(None),) + t.crop_in_window]
                if clusters is not None and clus is not None:
                    clusters[t.crop] = clus[t.crop_in_window]
    finally:
        model.train(was_training)
    if probabilities is None:
        raise ValueError("the image has no valid pixel (all nodata); nothing to predict")
    probabilities[:, ~valid] = 0.0
    if clusters is not None:
        clusters[~valid] = -1
    return probabilities, clusters
