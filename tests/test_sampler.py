"""Where training looks (engine/training/sampler.py): memory grids of windows and windows around the labelled pixels."""

from typing import List

import numpy as np
import pytest

from engine.training import sampler
from engine.training.sampler import (LABEL_OVERLAP, LABEL_TILE, LABEL_TILE_RANGE, Window, label_tiling, label_windows,
                                     plan_tiles, plan_windows)


def coverage(rows: int, cols: int, windows: List[Window]) -> np.ndarray:
    count = np.zeros((rows, cols), int)
    for w in windows:
        count[w.slices] += 1
    return count


@pytest.mark.parametrize("rows", [40, 41, 145, 610])
def test_two_halves_cover_every_row_and_overlap_by_ten_rows(rows):
    """MODELS.md T18: MambaHSI's split of a large scene, rows [0, H/2+5) and [H/2-5, H)."""
    cols = 30
    half = rows - rows // 2 + 5                        # the larger (second) half, in rows
    windows = plan_windows(rows, cols, half * cols)
    assert windows == [Window(0, rows // 2 + 5, 0, cols), Window(rows // 2 - 5, rows, 0, cols)]
    assert (coverage(rows, cols, windows) >= 1).all()
    assert windows[0].row1 - windows[1].row0 == 10


def test_quadrants_with_a_five_pixel_margin():
    """CSSMamba's large-scene protocol (MODELS.md §4.10): four overlapping quadrants."""
    windows = plan_windows(100, 80, 55 * 45)
    assert windows == [Window(0, 55, 0, 45), Window(0, 55, 35, 80), Window(45, 100, 0, 45), Window(45, 100, 35, 80)]


def test_a_scene_that_fits_is_one_window():
    assert plan_windows(30, 20, 600) == [Window(0, 30, 0, 20)]


@pytest.mark.parametrize("rows, cols, max_pixels, margin", [
    (100, 100, 3000, 5), (57, 233, 2500, 5), (1000, 1000, 90_000, 5), (64, 64, 900, 3), (20, 300, 1500, 0)])
def test_windows_cover_everything_overlap_by_twice_the_margin_and_fit_the_budget(rows, cols, max_pixels, margin):
    windows = plan_windows(rows, cols, max_pixels, margin)
    assert (coverage(rows, cols, windows) >= 1).all()
    assert all(w.pixels <= max_pixels for w in windows)
    row_bands = sorted({(w.row0, w.row1) for w in windows})
    col_bands = sorted({(w.col0, w.col1) for w in windows})
    assert len(windows) == len(row_bands) * len(col_bands)
    for bands in (row_bands, col_bands):
        for (_, stop), (start, _) in zip(bands, bands[1:]):
            assert stop - start == 2 * margin
    # no grid with fewer windows fits (brute force over every grid)
    fewest = min(nr * nc for nr in range(1, len(windows) + 1) for nc in range(1, len(windows) // nr + 1)
                 if sampler._max_span(rows, nr, margin)
                 * sampler._max_span(cols, nc, margin) <= max_pixels)
    assert len(windows) == fewest


def test_a_budget_below_the_smallest_window_is_refused():
    with pytest.raises(ValueError, match=r"only 120 px.* smallest window, one pixel with its 5 px margin, holds 121 "
                                         r"px; raise the memory budget \(CLI: --memory-budget-mb"):
        plan_windows(100, 100, 120)                    # 11 x 11 = 121 px is the smallest window with margin 5


# --- label windows -----------------------------------------------------------------------------------


def random_labels(seed: int, rows: int, cols: int, blobs: int) -> np.ndarray:
    """Square ROIs of 1 to 9 px side at random places, some touching the scene's edges."""
    rng = np.random.default_rng(seed)
    labelled = np.zeros((rows, cols), bool)
    for _ in range(blobs):
        side = int(rng.integers(1, 10))
        r, c = int(rng.integers(-3, rows)), int(rng.integers(-3, cols))
        labelled[max(r, 0):max(r + side, 0), max(c, 0):max(c + side, 0)] = True
    return labelled


@pytest.mark.parametrize("seed, rows, cols, blobs, tile, overlap", [
    (0, 200, 300, 12, LABEL_TILE, LABEL_OVERLAP), (1, 90, 70, 40, 32, 4), (2, 500, 500, 200, 64, 8),
    (3, 33, 1000, 5, 64, 8), (4, 130, 130, 1, 48, 12), (5, 40, 50, 3, 64, 8)])
def test_label_windows_are_the_tiles_that_classify_the_labelled_pixels(seed, rows, cols, blobs, tile, overlap):
    labelled = random_labels(seed, rows, cols, blobs)
    plan = label_windows(labelled, tile, overlap)
    tiles = {Window(t.row0, t.row0 + t.rows, t.col0, t.col0 + t.cols): t for t in plan_tiles(rows, cols, tile, overlap)}
    assert (plan.tile, plan.overlap) == (tile, overlap)
    assert len(set(w.shape for w in plan.windows)) == 1                     # one shape: one batch
    for w in plan.windows:                                                 # nothing outside the scene
        assert w in tiles and 0 <= w.row0 < w.row1 <= rows and 0 <= w.col0 < w.col1 <= cols
    for r, c in zip(*np.nonzero(labelled)):
        w = plan.windows[plan.owner[r, c]]                                 # its owner is the tile keeping it
        crop = tiles[w].crop
        assert crop[0].start <= r < crop[0].stop and crop[1].start <= c < crop[1].stop
        # with its margin: at least the overlap on every side, except at the scene's edges
        assert r - w.row0 >= min(r, overlap) and w.row1 - 1 - r >= min(rows - 1 - r, overlap)
        assert c - w.col0 >= min(c, overlap) and w.col1 - 1 - c >= min(cols - 1 - c, overlap)
    assert ((plan.owner >= 0) == labelled).all()                           # every labelled pixel owned, once
    assert sum(plan.owned(k).sum() for k in range(len(plan.windows))) == labelled.sum()
    kept = [t for t in tiles.values() if labelled[t.crop].any()]           # no tile without labels
    assert len(kept) == len(plan.windows)


def test_sparse_labels_need_a_small_part_of_the_scene():
    labelled = np.zeros((1000, 1000), bool)
    for r, c in ((100, 100), (500, 620), (900, 40)):
        labelled[r:r + 5, c:c + 5] = True
    plan = label_windows(labelled)
    assert 3 <= len(plan.windows) <= 12 and plan.pixels < 0.05 * 1000 * 1000


def test_a_scene_within_one_tile_is_one_window():
    plan = label_windows(np.ones((50, 60), bool), 64, 8)
    assert plan.windows == [Window(0, 50, 0, 60)]


def test_no_label_no_window():
    plan = label_windows(np.zeros((20, 20), bool))
    assert plan.windows == [] and (plan.owner == -1).all()


def test_a_chosen_training_window_gets_an_eighth_of_it_as_overlap():
    assert label_tiling() == (LABEL_TILE, LABEL_OVERLAP) == (64, 8)
    assert label_tiling(128) == (128, 16)                       # the measured pair (bench/results/label_windows.md)
    assert label_tiling(np.int64(96)) == (96, 12)
    assert label_tiling(LABEL_TILE_RANGE[0]) == (32, 4) and label_tiling(LABEL_TILE_RANGE[1]) == (512, 64)


@pytest.mark.parametrize("tile", [31, 513, 0, -64, 64.0, True, "64"])
def test_a_training_window_outside_the_range_is_refused_with_the_range(tile):
    with pytest.raises(ValueError, match=r"--label-tile; toolbox: Training window size\) must be a whole number "
                                         r"of pixels from 32 to 512, got .*; leave it out \(toolbox: 0\) for the "
                                         r"default 64"):
        label_tiling(tile)
