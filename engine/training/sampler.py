"""Where training looks: the classification tiles around the labelled pixels, and memory grids of windows.

Label windows (``label_windows``). The models see a window at batch 1, and what they compute for a pixel
depends on the whole window: the scans run over every token of it and GroupNorm normalises over it. So
a model trained on small windows and applied to a whole scene (or to much larger tiles) meets inputs
unlike its training ones: MambaHSI trained on 80 px windows around the EnMAP mosaic's training pixels
reached 68 % validation OA inside the windows but 43 % test OA on the whole scene (whole-scene training:
59 %, seed 0). Training therefore looks exactly where classification will look: the scene is cut into
the tiles classification uses (``plan_tiles``), the tiles whose crop (the part classification keeps)
holds labelled pixels are the training windows, each owns the labelled pixels of its crop, and the
model file records the tiling so that classification repeats it. Each labelled pixel is then trained
in the very tile that classifies it: on the EnMAP mosaic, MambaHSI trained and predicted on 64 px tiles
reached 58.2 % against 58.7 % for the whole scene (5 seeds; bench/results/label_windows.md). LABEL_TILE and
LABEL_OVERLAP are chosen by measurement there. The cost of an epoch follows the tiles that hold labels,
not the scene, and all tiles of a raster share one shape, so they train as batches.

``plan_windows`` cuts a window that does not fit the memory budget into an overlapping grid,
generalising MambaHSI's split of a scene into two halves that overlap by 10 rows.

No GDAL and no torch here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Tuple

import numpy as np

__all__ = ["Window", "Patch", "Tile", "WINDOW_MARGIN", "LABEL_TILE", "LABEL_OVERLAP", "CROP_LABEL_TILE", "plan_windows",
           "plan_tiles", "label_windows", "label_tiling", "crop_label_tiling", "LabelWindows", "LABEL_TILE_RANGE"]

WINDOW_MARGIN = 5     # px of context beyond each share of a memory grid (MambaHSI's halves, CSSMamba's quadrants)
LABEL_TILE = 64       # px side of the tiles that label windows are and classification repeats (module docstring)
LABEL_OVERLAP = 8     # px of context of those tiles beyond their crop
CROP_LABEL_TILE = 128  # px side of the label windows of crop models (``crop_label_tiling``)
LABEL_TILE_RANGE = (32, 512)  # sides a user may choose (``label_tiling``): 512 is classification's default tile


class Window(NamedTuple):
    """A window: rows [row0, row1) x cols [col0, col1) of the scene."""

    row0: int
    row1: int
    col0: int
    col1: int

    @property
    def pixels(self) -> int:
        return (self.row1 - self.row0) * (self.col1 - self.col0)

    @property
    def shape(self) -> Tuple[int, int]:
        return self.row1 - self.row0, self.col1 - self.col0

    @property
    def slices(self) -> Tuple[slice, slice]:
        return slice(self.row0, self.row1), slice(self.col0, self.col1)

    def shifted(self, rows: int, cols: int) -> "Window":
        """The same window moved by (rows, cols): from a patch's coordinates to the scene's."""
        return Window(self.row0 + rows, self.row1 + rows, self.col0 + cols, self.col1 + cols)


@dataclass
class Patch:
    """A part of the scene that the trainer sees whole: the scene itself, or one label window (``label_windows``).

    The label maps hold class indices (−1 = none) of the pixels this patch owns; a labelled pixel that
    another patch owns is only context here (−1), so every labelled pixel counts once."""

    window: Window                    # where the patch lies in the scene
    image: np.ndarray                 # (Nb, h, w) float32, normalised (apply_stretch)
    raw: np.ndarray                   # (Nb, h, w) float32 spectra as read, for model.make_guide
    valid: np.ndarray                 # (h, w) bool, False under nodata
    train: np.ndarray                 # (h, w) int64 class index of the training pixels
    validation: np.ndarray            # (h, w) int64 class index of the validation pixels
    test: Optional[np.ndarray] = None  # (h, w) int64 class index of the test pixels (assessment only)
    aux: Optional[np.ndarray] = None   # (Na, h, w) float32 normalised auxiliary bands (LiDAR, SAR) on the grid
    scene: Optional[Tuple[int, int]] = None   # (rows, cols) of the whole scene; None: the patch is the scene

    @property
    def scene_shape(self) -> Tuple[int, int]:
        return self.scene or self.window.shape


# ------------------------------------------------------------------------------------------------
# Memory grid


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
        smallest = (2 * margin + 1) ** 2
        raise ValueError(f"the memory budget allows training windows of only {max_pixels} px, too few for a "
                         f"{rows} x {cols} px scene: the smallest window, one pixel with its {margin} px margin, "
                         f"holds {smallest} px; raise the memory budget (CLI: --memory-budget-mb; toolbox: Memory budget in MB)")
    _, _, n_cols, n_rows = best
    return [Window(r0, r1, c0, c1) for r0, r1 in _spans(rows, n_rows, margin) for c0, c1 in _spans(cols, n_cols, margin)]


# ------------------------------------------------------------------------------------------------
# Tiles: where classification looks, and so where training on label windows looks


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


# ------------------------------------------------------------------------------------------------
# Label windows


class LabelWindows(NamedTuple):
    """The tiles around the labelled pixels and which tile owns each labelled pixel."""

    windows: List[Window]
    owner: np.ndarray        # (H, W) int32: index into ``windows`` at labelled pixels, -1 elsewhere
    tile: int                # the tiling they come from, which classification repeats
    overlap: int

    @property
    def pixels(self) -> int:
        return sum(w.pixels for w in self.windows)

    def owned(self, index: int) -> np.ndarray:
        """(h, w) bool over window ``index``: the labelled pixels it owns."""
        return self.owner[self.windows[index].slices] == index


def label_tiling(tile: Optional[int] = None) -> Tuple[int, int]:
    """(tile, overlap) of the label windows of the whole-window models (MambaHSI, CSSMamba): LABEL_TILE /
    LABEL_OVERLAP, or the side ``tile`` a user chose with an eighth of it as overlap, as in the measured
    64 / 8 and 128 / 16 (bench/results/label_windows.md). Larger tiles give each labelled pixel more context
    at a training cost in proportion to their pixels; for CSSMamba on EnMAP 128 px did not pay (same file)."""
    if tile is None:
        return LABEL_TILE, LABEL_OVERLAP
    low, high = LABEL_TILE_RANGE
    if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or not low <= tile <= high:
        raise ValueError(f"the training window size (CLI: --label-tile; toolbox: Training window size) must be a "
                         f"whole number of pixels from {low} to {high}, got {tile!r}; leave it out (toolbox: 0) for "
                         f"the default {LABEL_TILE} px")
    return int(tile), int(tile) // 8


def crop_label_tiling(crop: int) -> Tuple[int, int]:
    """(tile, overlap) of the label windows of a crop model (M3amba): a whole crop of context beyond the
    pixels a window owns, so every crop of the scene's grid that covers an owned pixel lies inside the
    window (or beyond the raster, zero as for the whole scene) and training sees the crops the whole scene
    would give; tiles of at least 128 px keep that context a fraction of the window."""
    return max(CROP_LABEL_TILE, 4 * crop), crop


def label_windows(labelled: np.ndarray, tile: int = LABEL_TILE, overlap: int = LABEL_OVERLAP) -> LabelWindows:
    """The tiles of ``plan_tiles(rows, cols, tile, overlap)`` whose crop holds a True pixel of ``labelled``
    (H, W), in row-major order; each owns the labelled pixels of its crop (module docstring)."""
    labelled = np.asarray(labelled, bool)
    if labelled.ndim != 2:
        raise ValueError(f"the labelled mask must be 2-D (rows, cols), got shape {labelled.shape}")
    windows: List[Window] = []
    owner = np.full(labelled.shape, -1, np.int32)
    for t in plan_tiles(*labelled.shape, tile, overlap):
        crop = labelled[t.crop]
        if crop.any():
            owner[t.crop] = np.where(crop, len(windows), -1)
            windows.append(Window(t.row0, t.row0 + t.rows, t.col0, t.col0 + t.cols))
    return LabelWindows(windows, owner, tile, overlap)
