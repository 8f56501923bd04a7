"""Where training looks (engine/sampler.py): memory grids of windows and windows around the labelled pixels."""

from typing import List

import numpy as np
import pytest

from engine import sampler
from engine.sampler import LABEL_MARGIN, Window, label_windows, plan_windows


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
    with pytest.raises(ValueError, match="raise the memory budget"):
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


@pytest.mark.parametrize("seed, rows, cols, blobs, margin", [
    (0, 200, 300, 12, LABEL_MARGIN), (1, 90, 70, 40, 8), (2, 500, 500, 200, LABEL_MARGIN), (3, 33, 1000, 5, 0),
    (4, 130, 130, 1, 20)])
def test_label_windows_cover_every_labelled_pixel_with_its_margin_inside_the_scene(seed, rows, cols, blobs, margin):
    labelled = random_labels(seed, rows, cols, blobs)
    plan = label_windows(labelled, margin=margin)
    for w in plan.windows:                                                 # nothing outside the scene
        assert 0 <= w.row0 < w.row1 <= rows and 0 <= w.col0 < w.col1 <= cols
        assert all(side % sampler.SHAPE_STEP == 0 or side == length for side, length in zip(w.shape, (rows, cols)))
    for r, c in zip(*np.nonzero(labelled)):                                # each pixel's owner holds its margin
        w = plan.windows[plan.owner[r, c]]
        assert w.row0 <= max(r - margin, 0) and w.row1 >= min(r + margin + 1, rows)
        assert w.col0 <= max(c - margin, 0) and w.col1 >= min(c + margin + 1, cols)
    assert ((plan.owner >= 0) == labelled).all()                           # every labelled pixel owned, once
    owned = sum(plan.owned(k).sum() for k in range(len(plan.windows)))
    assert owned == labelled.sum()
    assert plan.pixels <= sum(min(rows, 2 * margin + 9) * min(cols, 2 * margin + 9) for _ in range(blobs)) * 4


def test_each_cell_of_labels_gets_one_window_of_a_shared_shape():
    labelled = np.zeros((200, 200), bool)
    labelled[10:15, 10:15] = labelled[20:23, 30:32] = True                 # one cell: one window around both
    labelled[150:152, 150:152] = True
    plan = label_windows(labelled, margin=8)
    # rows 2-31, cols 2-40 grow about their centres to 32 x 40; rows/cols 142-160 to 24 x 24
    assert plan.windows == [Window(1, 33, 1, 41), Window(139, 163, 139, 163)]
    assert plan.pixels < 200 * 200 / 10


def test_windows_of_a_fully_labelled_scene_cover_it_in_cells():
    plan = label_windows(np.ones((300, 260), bool), margin=8)
    assert len(plan.windows) == 5 * 5
    assert max(w.pixels for w in plan.windows) == 80 * 80
    assert (plan.owner >= 0).all()


def test_no_label_no_window():
    plan = label_windows(np.zeros((20, 20), bool))
    assert plan.windows == [] and (plan.owner == -1).all()
