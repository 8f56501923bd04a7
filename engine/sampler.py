"""Where training looks: windows around the labelled pixels, and grids of windows that fit the memory budget.

The models see a window at batch 1 and label its pixels; their receptive field is the whole window
(the scans run over every token), so a labelled pixel needs context around it, not the whole scene.
``label_windows`` puts a window around every group of labelled pixels: the scene is cut into cells of
LABEL_CELL px, each cell holding labelled pixels gives the bounding box of those pixels widened by
``margin`` px on every side (clipped to the scene), grown to a multiple of SHAPE_STEP px on each axis.
Overlapping windows are not merged: windows of one shape train as one batch (train.py), and a batch of
small windows costs less than fewer, larger windows of odd shapes (CSSMamba, 2 threads, forward: 35 µs
per pixel for 36 windows of 24 x 24 px in one batch, 81 µs in single forwards of windows merged where
they overlapped; the 1000 x 1000 sample's ROIs). Every labelled
pixel is *owned* by exactly one window (the one made from its cell), so it is trained, validated and
tested once, even where windows overlap.

LABEL_MARGIN = 16 px, chosen by measurement (bench/results/label_windows.md): the three shared scenes
keep their accuracy with it, while the 48 ROIs of 5 x 5 px of the project's 1000 x 1000 sample need
48 windows of 37 x 37 px, 6.6 % of the scene (32 px would be 23 %).

``plan_windows`` cuts a window that does not fit the memory budget into an overlapping grid,
generalising MambaHSI's split of a scene into two halves that overlap by 10 rows.

No GDAL and no torch here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Tuple

import numpy as np

__all__ = ["Window", "Patch", "WINDOW_MARGIN", "LABEL_MARGIN", "LABEL_CELL", "plan_windows", "label_windows", "LabelWindows"]

WINDOW_MARGIN = 5     # px of context beyond each share of a memory grid (MambaHSI's halves, CSSMamba's quadrants)
LABEL_MARGIN = 8      # px of context around labelled pixels (module docstring)
LABEL_CELL = 64       # px side of the cells whose labelled pixels share one window before merging
SHAPE_STEP = 8        # label windows grow to a multiple of this on each axis, so that many share a shape


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
    """A part of the scene that the trainer sees whole: the scene itself, or one label window (sampler.py).

    The label maps hold class indices (−1 = none) of the pixels this patch owns; a labelled pixel that
    another patch owns is only context here (−1), so every labelled pixel counts once."""

    window: Window                    # where the patch lies in the scene
    image: np.ndarray                 # (Nb, h, w) float32, normalised (apply_stretch)
    raw: np.ndarray                   # (Nb, h, w) float32 spectra as read, for model.make_guide
    valid: np.ndarray                 # (h, w) bool, False under nodata
    train: np.ndarray                 # (h, w) int64 class index of the training pixels
    validation: np.ndarray            # (h, w) int64 class index of the validation pixels
    test: Optional[np.ndarray] = None  # (h, w) int64 class index of the test pixels (assessment only)


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
                         f"holds {smallest} px; raise the memory budget (CLI: --memory-budget-mb)")
    _, _, n_cols, n_rows = best
    return [Window(r0, r1, c0, c1) for r0, r1 in _spans(rows, n_rows, margin) for c0, c1 in _spans(cols, n_cols, margin)]


# ------------------------------------------------------------------------------------------------
# Label windows


class LabelWindows(NamedTuple):
    """Windows around the labelled pixels and which window owns each labelled pixel."""

    windows: List[Window]
    owner: np.ndarray        # (H, W) int32: index into ``windows`` at labelled pixels, -1 elsewhere

    @property
    def pixels(self) -> int:
        return sum(w.pixels for w in self.windows)

    def owned(self, index: int) -> np.ndarray:
        """(h, w) bool over window ``index``: the labelled pixels it owns."""
        return self.owner[self.windows[index].slices] == index


def _cell_boxes(labelled: np.ndarray, cell: int) -> np.ndarray:
    """(n, 4) int64 [row0, row1, col0, col1): bounding box of the labelled pixels of every cell holding any."""
    r, c = np.nonzero(labelled)
    cols_of_cells = -(-labelled.shape[1] // cell)
    ids = (r // cell) * cols_of_cells + c // cell
    order = np.argsort(ids, kind="stable")
    r, c, ids = r[order], c[order], ids[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    return np.stack([np.minimum.reduceat(r, starts), np.maximum.reduceat(r, starts) + 1,
                     np.minimum.reduceat(c, starts), np.maximum.reduceat(c, starts) + 1], axis=1).astype(np.int64)


def _grown(window: Window, rows: int, cols: int, step: int = SHAPE_STEP) -> Window:
    """``window`` grown about its centre to a multiple of ``step`` px on each axis (at most the scene's size)
    and moved inside the scene: windows of one shape train as one batch (train.py), and the growth is
    more context, not padding."""
    def axis(start: int, stop: int, length: int) -> Tuple[int, int]:
        size = min(-(-(stop - start) // step) * step, length)
        first = min(max(start - (size - (stop - start)) // 2, 0), length - size)
        return first, first + size

    (r0, r1), (c0, c1) = axis(window.row0, window.row1, rows), axis(window.col0, window.col1, cols)
    return Window(r0, r1, c0, c1)


def label_windows(labelled: np.ndarray, margin: int = LABEL_MARGIN, cell: int = LABEL_CELL) -> LabelWindows:
    """Windows around the True pixels of ``labelled`` (H, W) (module docstring), each grown to a multiple
    of SHAPE_STEP px per axis; row-major by top-left corner.

    Deterministic; the windows cover every labelled pixel with ``margin`` px of context on every side
    (less only at the scene's edge) and lie inside the scene."""
    labelled = np.asarray(labelled, bool)
    if labelled.ndim != 2:
        raise ValueError(f"the labelled mask must be 2-D (rows, cols), got shape {labelled.shape}")
    if margin < 0 or cell < 1:
        raise ValueError(f"margin must be >= 0 and cell >= 1, got {margin} and {cell}")
    rows, cols = labelled.shape
    cores = _cell_boxes(labelled, cell) if labelled.any() else np.zeros((0, 4), np.int64)
    boxes = np.stack([np.maximum(cores[:, 0] - margin, 0), np.minimum(cores[:, 1] + margin, rows),
                      np.maximum(cores[:, 2] - margin, 0), np.minimum(cores[:, 3] + margin, cols)], axis=1)
    order = sorted(range(len(boxes)), key=lambda k: (boxes[k, 0], boxes[k, 2]))
    windows = [_grown(Window(*(int(v) for v in boxes[k])), rows, cols) for k in order]
    owner = np.full(labelled.shape, -1, np.int32)
    for position, k in enumerate(order):
        r0, r1, c0, c1 = (int(v) for v in cores[k])
        owner[r0:r1, c0:c1] = np.where(labelled[r0:r1, c0:c1], position, -1)
    return LabelWindows(windows, owner)
