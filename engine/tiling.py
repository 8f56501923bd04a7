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
valid pixel's. The model still sees them (as the 0 that ``apply_stretch`` puts there), exactly as
during training, so their neighbours are predicted as in training.

No GDAL here: this module also runs on GPU machines without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple, Union

import numpy as np
import torch

from .models.base import HSIClassifier

__all__ = ["DEFAULT_TILE", "DEFAULT_OVERLAP", "Tile", "plan_tiles", "predict_window", "predict_array"]

# Defaults for predicting rasters. The Mamba scans span the whole tile, so the tile size changes the
# results a little and the speed a lot. Measured (bench/results/speed_classify.md, 1000 x 1000 x 224,
# default CSSMamba, 2-core CPU): tile 512 takes 72 s and 1.7 GB peak RSS, tile 256 takes 101 s and
# 1.3 GB (more overlap per pixel); 512 is the fastest that stays under the 2 GB target. Not yet
# measured: accuracy of tiled vs whole-image prediction on a scene larger than one tile.
DEFAULT_TILE = 512
DEFAULT_OVERLAP = 32


@dataclass(frozen=True)
class Tile:
    """One tile: the window read (row0, col0, rows, cols) and the part of it written back
    (crop_*), both in raster coordinates; the crop lies inside the window."""

    row0: int
    col0: int
    rows: int
    cols: int
    crop_row0: int
    crop_col0: int
    crop_rows: int
    crop_cols: int

    @property
    def window(self) -> Tuple[slice, slice]:
        """Raster slices of the window read."""
        return slice(self.row0, self.row0 + self.rows), slice(self.col0, self.col0 + self.cols)

    @property
    def crop(self) -> Tuple[slice, slice]:
        """Raster slices of the part written back."""
        return (slice(self.crop_row0, self.crop_row0 + self.crop_rows),
                slice(self.crop_col0, self.crop_col0 + self.crop_cols))

    @property
    def crop_in_window(self) -> Tuple[slice, slice]:
        """The written part as slices of an array holding the window."""
        r, c = self.crop_row0 - self.row0, self.crop_col0 - self.col0
        return slice(r, r + self.crop_rows), slice(c, c + self.crop_cols)


def _segments(n: int, tile: int, overlap: int) -> List[Tuple[int, int, int, int]]:
    """Split one axis of length n: [(start, size, crop_start, crop_size)] covering 0..n once by crops."""
    if n <= tile:
        return [(0, n, 0, n)]
    # Fewest windows: the two edge ones keep tile - overlap px, the others tile - 2*overlap.
    count = -(-(n - 2 * overlap) // (tile - 2 * overlap))
    # Shrink the windows to the smallest equal size at which neighbours still share >= 2*overlap px,
    # so no work is wasted on overlap beyond the context needed.
    size = -(-(n + 2 * overlap * (count - 1)) // count)
    starts = [(i * (n - size) + (count - 1) // 2) // (count - 1) for i in range(count)]  # evenly spread, rounded
    # Crop boundary between windows i and i+1: the middle of their shared strip [starts[i+1], starts[i] + size).
    bounds = [0] + [(starts[i] + size + starts[i + 1]) // 2 for i in range(count - 1)] + [n]
    return [(s, size, bounds[i], bounds[i + 1] - bounds[i]) for i, s in enumerate(starts)]


def plan_tiles(rows: int, cols: int, tile: int, overlap: int) -> List[Tile]:
    """Tiles of at most ``tile`` x ``tile`` px covering a rows x cols raster, in row-major order.

    Interior tile sides have at least ``overlap`` px of context beyond the crop; crops partition the
    raster (every pixel written exactly once). Needs tile > 2 * overlap so that each tile adds new pixels.
    """
    if rows < 1 or cols < 1:
        raise ValueError(f"cannot tile an empty raster of {rows} x {cols} px")
    if tile < 1 or overlap < 0:
        raise ValueError(f"tile size must be >= 1 and overlap >= 0 (got tile={tile}, overlap={overlap})")
    if tile <= 2 * overlap:
        raise ValueError(f"tile size {tile} must exceed twice the overlap {overlap}; "
                         f"use a tile larger than {2 * overlap} px or a smaller overlap")
    return [Tile(r0, c0, nr, nc, cr0, cc0, cnr, cnc)
            for r0, nr, cr0, cnr in _segments(rows, tile, overlap)
            for c0, nc, cc0, cnc in _segments(cols, tile, overlap)]


def predict_window(model: HSIClassifier, image: np.ndarray,
                   device: Union[str, torch.device] = "cpu") -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """One forward pass on one window: (probabilities float32 (Ncls, h, w), clusters int64 (h, w) or None).

    image: (Nb, h, w) float32, normalised. The caller puts the model on ``device``, in eval mode,
    under ``torch.inference_mode`` (predict_array and predict_raster do).
    """
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None].to(device)
    out = model(x)
    probabilities = torch.softmax(out.logits.float(), dim=1)[0].cpu().numpy()
    clusters = None if out.clusters is None else out.clusters[0].to(torch.int64).cpu().numpy()
    return probabilities, clusters


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
                prob, clus = predict_window(model, image[(slice(None),) + t.window], device)
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
