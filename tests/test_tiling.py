"""Tile planning and tiled prediction, checked with dummy models whose output is known in closed form.

A per-pixel model must give the same result for every tile plan (to the last bit of softmax); a model that reports each
pixel's position inside its window shows which window wrote each pixel.
"""

import itertools

import numpy as np
import pytest
import torch

from engine.models.base import HSIClassifier, ModelOutput
from engine.inference.tiling import DEFAULT_OVERLAP, DEFAULT_TILE, Tile, plan_tiles, predict_array


class PixelLinear(HSIClassifier):
    """Logits = W x + b per pixel with small integers, so every sum is exact in float32; clusters = argmax."""

    name = "pixel-linear"

    def __init__(self, in_bands: int = 3, n_classes: int = 4) -> None:
        super().__init__({"in_bands": in_bands, "n_classes": n_classes})
        generator = torch.Generator().manual_seed(0)
        self.weight = torch.nn.Parameter(torch.randint(-3, 4, (n_classes, in_bands), generator=generator).float())
        self.bias = torch.nn.Parameter(torch.randint(-3, 4, (n_classes,), generator=generator).float())
        self.calls = []

    def forward(self, x, guide=None, valid=None):
        self.calls.append(tuple(x.shape[2:]))
        logits = torch.einsum("cb,nbhw->nchw", self.weight, x) + self.bias[None, :, None, None]
        return ModelOutput(logits=logits, clusters=logits.argmax(1))


class WindowReporter(HSIClassifier):
    """Clusters encode (row, col) inside the window and the window's (rows, cols); M > any size used."""

    name = "window-reporter"
    M = 1000

    def __init__(self) -> None:
        super().__init__({"in_bands": 1, "n_classes": 2})
        self.windows = []

    def forward(self, x, guide=None, valid=None):
        h, w = x.shape[2:]
        self.windows.append((h, w))
        r = torch.arange(h)[:, None].expand(h, w)
        c = torch.arange(w)[None, :].expand(h, w)
        code = ((r * self.M + c) * self.M + h) * self.M + w
        return ModelOutput(logits=torch.zeros(1, 2, h, w), clusters=code[None])


def integer_image(bands, rows, cols, seed=0):
    return np.random.default_rng(seed).integers(-5, 6, (bands, rows, cols)).astype(np.float32)


# ---- plan_tiles ---------------------------------------------------------------------------------------

SIZES = [1, 2, 7, 16, 33, 70]
PLANS = [(1, 0), (3, 1), (4, 0), (5, 2), (8, 3), (16, 4), (64, 8), (512, 32)]


@pytest.mark.parametrize("tile,overlap", PLANS)
def test_crops_partition_the_raster_and_windows_keep_their_context(tile, overlap):
    for rows, cols in itertools.product(SIZES, SIZES):
        tiles = plan_tiles(rows, cols, tile, overlap)
        written = np.zeros((rows, cols), int)
        for t in tiles:
            written[t.crop] += 1
            assert 0 <= t.row0 and t.row0 + t.rows <= rows and 0 <= t.col0 and t.col0 + t.cols <= cols
            assert t.rows <= tile and t.cols <= tile
            assert t.row0 <= t.crop_row0 and t.crop_row0 + t.crop_rows <= t.row0 + t.rows
            assert t.col0 <= t.crop_col0 and t.crop_col0 + t.crop_cols <= t.col0 + t.cols
            # context beyond the crop on every side that is not the raster border
            if t.crop_row0 > 0:
                assert t.crop_row0 - t.row0 >= overlap
            if t.crop_row0 + t.crop_rows < rows:
                assert t.row0 + t.rows - (t.crop_row0 + t.crop_rows) >= overlap
            if t.crop_col0 > 0:
                assert t.crop_col0 - t.col0 >= overlap
            if t.crop_col0 + t.crop_cols < cols:
                assert t.col0 + t.cols - (t.crop_col0 + t.crop_cols) >= overlap
        assert (written == 1).all(), f"{rows}x{cols} tile {tile} overlap {overlap}: pixels written != once"


def test_tiles_along_an_axis_have_one_size_no_larger_than_needed():
    tiles = plan_tiles(1000, 4096, 512, 32)
    assert {t.rows for t in tiles} == {376}            # 3 windows of 376 px cover 1000 px with 64 px shared
    assert {t.cols for t in tiles} == {512}            # 9 windows of the full 512 px
    assert len(tiles) == 3 * 9
    assert [t.row0 for t in tiles[::9]] == [0, 312, 624]


def test_raster_smaller_than_a_tile_is_one_tile():
    assert plan_tiles(5, 300, 512, 32) == [Tile(0, 0, 5, 300, 0, 0, 5, 300)]


def test_default_tile_plan_is_valid():
    assert DEFAULT_TILE > 2 * DEFAULT_OVERLAP
    assert len(plan_tiles(1000, 1000, DEFAULT_TILE, DEFAULT_OVERLAP)) == 9


@pytest.mark.parametrize("rows,cols,tile,overlap,message", [
    (10, 10, 4, 2, "twice the overlap"),
    (10, 10, 0, 0, "tile size must be >= 1"),
    (10, 10, 8, -1, "overlap >= 0"),
    (0, 10, 8, 1, "empty raster"),
])
def test_bad_tile_plans_are_refused_with_the_reason(rows, cols, tile, overlap, message):
    with pytest.raises(ValueError, match=message):
        plan_tiles(rows, cols, tile, overlap)


# ---- predict_array ------------------------------------------------------------------------------------

@pytest.mark.parametrize("rows,cols", [(1, 1), (1, 37), (29, 1), (7, 7), (13, 20)])
def test_tiled_prediction_of_a_per_pixel_model_equals_the_whole_image_exactly(rows, cols):
    model = PixelLinear()
    image = integer_image(3, rows, cols)
    valid = np.ones((rows, cols), bool)
    expected_prob, expected_clusters = predict_array(model, image, valid)
    x = torch.from_numpy(image)[None]
    logits = torch.einsum("cb,nbhw->nchw", model.weight, x) + model.bias[None, :, None, None]
    np.testing.assert_allclose(expected_prob, torch.softmax(logits, 1)[0].detach().numpy(), rtol=1e-6)
    for tile, overlap in PLANS:
        prob, clusters = predict_array(model, image, valid, tile=tile, overlap=overlap)
        assert prob.dtype == np.float32 and prob.shape == (4, rows, cols)
        # logits are exact; softmax may round the last bit differently in vector and scalar code paths
        np.testing.assert_array_max_ulp(prob, expected_prob, maxulp=2)
        np.testing.assert_array_equal(clusters, expected_clusters, err_msg=f"tile {tile} overlap {overlap}")


def interior_distance(p, start, size, n):
    """Pixels between p and the nearest edge of window [start, start+size) that is not the raster border."""
    before = p - start if start > 0 else np.inf
    after = start + size - 1 - p if start + size < n else np.inf
    return min(before, after)


@pytest.mark.parametrize("rows,cols,tile,overlap", [(23, 41, 9, 2), (50, 17, 16, 4), (12, 12, 5, 1), (1, 30, 7, 3)])
def test_each_pixel_is_written_by_the_window_where_it_is_farthest_from_an_edge(rows, cols, tile, overlap):
    model = WindowReporter()
    _, code = predict_array(model, np.zeros((1, rows, cols), np.float32), np.ones((rows, cols), bool),
                            tile=tile, overlap=overlap)
    M = WindowReporter.M
    w, h = code % M, code // M % M
    local_col, local_row = code // M ** 2 % M, code // M ** 3
    rr, cc = np.mgrid[:rows, :cols]
    row0, col0 = rr - local_row, cc - local_col
    # every window that wrote a pixel was read whole inside the raster and is no larger than a tile
    assert (row0 >= 0).all() and (col0 >= 0).all() and (row0 + h <= rows).all() and (col0 + w <= cols).all()
    assert h.max() <= tile and w.max() <= tile
    # the windows read, from the tile plan: along each axis, the writer is the best window for that pixel
    row_windows = sorted({(t.row0, t.rows) for t in plan_tiles(rows, cols, tile, overlap)})
    col_windows = sorted({(t.col0, t.cols) for t in plan_tiles(rows, cols, tile, overlap)})
    assert len(model.windows) == len(row_windows) * len(col_windows)
    for r in range(rows):
        best = max(interior_distance(r, s, n, rows) for s, n in row_windows if s <= r < s + n)
        got = interior_distance(r, row0[r, 0], h[r, 0], rows)
        assert got == best and got >= min(overlap, best), f"row {r}: written at {got} px from an edge, best {best}"
    for c in range(cols):
        best = max(interior_distance(c, s, n, cols) for s, n in col_windows if s <= c < s + n)
        got = interior_distance(c, col0[0, c], w[0, c], cols)
        assert got == best and got >= min(overlap, best), f"col {c}: written at {got} px from an edge, best {best}"


def test_invalid_pixels_get_no_prediction_and_all_invalid_tiles_are_skipped():
    model = PixelLinear()
    image = integer_image(3, 20, 20)
    valid = np.ones((20, 20), bool)
    valid[:, :10] = False                               # left half nodata: the left tiles are never run
    valid[15, 15] = False
    prob, clusters = predict_array(model, image, valid, tile=10, overlap=0)
    assert model.calls == [(10, 10), (10, 10)]
    assert (prob[:, ~valid] == 0).all() and (clusters[~valid] == -1).all()
    np.testing.assert_allclose(prob[:, valid].sum(0), 1.0, rtol=1e-6)
    assert (clusters[valid] >= 0).all()


def test_all_invalid_image_is_refused():
    with pytest.raises(ValueError, match="no valid pixel"):
        predict_array(PixelLinear(), integer_image(3, 4, 4), np.zeros((4, 4), bool))


def test_model_without_clusters_returns_none_and_training_mode_is_restored():
    class NoClusters(PixelLinear):
        def forward(self, x, guide=None, valid=None):
            self.mode_seen = self.training
            return ModelOutput(logits=super().forward(x).logits)

    model = NoClusters().train()
    prob, clusters = predict_array(model, integer_image(3, 6, 6), np.ones((6, 6), bool), tile=4, overlap=1)
    assert clusters is None and prob.shape == (4, 6, 6)
    assert model.mode_seen is False and model.training is True


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="expected image"):
        predict_array(PixelLinear(), integer_image(3, 4, 4), np.ones((4, 5), bool))
