"""engine.data.normalize: the MambaHSI 2-98 % stretch (MODELS.md T15), its storage, and its GDAL-free import."""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from engine.data.normalize import Stretch, apply_stretch, fit_stretch
from engine.data.raster import load_training_raster

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def reference_stretch(band):
    """MambaHSI's per-band stretch on all pixels: float64, uint8 quantisation, / 255."""
    p2, p98 = np.percentile(band, 2), np.percentile(band, 98)
    q = (np.clip((band.astype(np.float64) - p2) / (p98 - p2), 0, 1) * 255).astype(np.uint8)
    return q / 255.0


def test_stretch_matches_numpy_percentiles_and_the_reference_quantisation():
    rng = np.random.default_rng(0)
    data = (rng.gamma(2.0, 0.1, (5, 30, 40)) + np.arange(5)[:, None, None]).astype(np.float32)
    valid = np.ones((30, 40), bool)
    stretch = fit_stretch(data, valid)
    for k in range(5):
        assert stretch.low[k] == np.percentile(data[k], 2) and stretch.high[k] == np.percentile(data[k], 98)
    out = apply_stretch(data, valid, stretch)
    assert out.dtype == np.float32 and out.shape == data.shape
    levels = out * 255
    assert np.allclose(levels, np.round(levels), atol=1e-4), "values are multiples of 1/255"
    assert out.min() == 0 and out.max() == 1
    for k in range(5):
        assert np.allclose(out[k], reference_stretch(data[k]), atol=1e-7)


def test_stretch_uses_valid_pixels_only_and_zeroes_the_invalid_ones():
    rng = np.random.default_rng(1)
    data = rng.random((3, 20, 20)).astype(np.float32)
    valid = rng.random((20, 20)) > 0.3
    data[:, ~valid] = 1e6  # a nodata value that would wreck the percentiles
    stretch = fit_stretch(data, valid)
    assert np.allclose(stretch.low, [np.percentile(b[valid], 2) for b in data])
    assert np.allclose(stretch.high, [np.percentile(b[valid], 98) for b in data])
    out = apply_stretch(data, valid, stretch)
    assert (out[:, ~valid] == 0).all() and out[:, valid].max() == 1


def test_constant_band_becomes_zero_without_a_division_warning():
    data = np.ones((2, 5, 5), np.float32)
    data[1] = np.arange(25).reshape(5, 5)
    valid = np.ones((5, 5), bool)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = apply_stretch(data, valid, fit_stretch(data, valid))
    assert (out[0] == 0).all() and out[1].max() == 1


def test_stretch_round_trips_through_json_and_refuses_bad_statistics():
    stretch = Stretch(np.array([0.1, 2.0]), np.array([0.9, 5.5]))
    again = Stretch.from_dict(json.loads(json.dumps(stretch.to_dict())))
    assert np.array_equal(again.low, stretch.low) and np.array_equal(again.high, stretch.high)
    assert again.low.dtype == np.float64
    for bad in ({"low": [0.0]}, {"low": [0.0, 1.0], "high": [1.0]}, {"low": ["x"], "high": [1.0]},
                {"low": [float("nan")], "high": [1.0]}, {"low": [2.0], "high": [1.0]}):
        with pytest.raises(ValueError, match="normalisation statistics"):
            Stretch.from_dict(bad)


def test_stretch_refuses_mismatched_shapes():
    stretch = Stretch(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="the stretch has 3 bands but the data has 2"):
        apply_stretch(np.zeros((2, 4, 4), np.float32), np.ones((4, 4), bool), stretch)
    with pytest.raises(ValueError, match="expected data"):
        fit_stretch(np.zeros((2, 4, 4), np.float32), np.ones((4, 5), bool))
    with pytest.raises(ValueError, match="no valid pixel"):
        fit_stretch(np.zeros((2, 4, 4), np.float32), np.zeros((4, 4), bool))


def test_normalize_imports_without_gdal():
    """It runs on GPU machines without GDAL: importing it must not pull in osgeo."""
    code = ("import sys; sys.modules['osgeo'] = None; import engine.data.normalize; "
            "sys.exit(1 if any(m.startswith('osgeo') and sys.modules[m] for m in sys.modules) else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_stretch_on_the_enmap_mosaic(shared_data):
    _, data, valid = load_training_raster(os.path.join(shared_data, "enmap_potsdam", "enmap_potsdam_mosaic.tif"))
    stretch = fit_stretch(data, valid)
    assert stretch.low.shape == (218,) and (stretch.high > stretch.low).all()
    assert stretch.low[0] == np.percentile(data[0][valid], 2)
    out = apply_stretch(data, valid, stretch)
    inside = out[:, valid]
    assert 0.03 < (inside == 0).mean() < 0.05 and 0.01 < (inside == 1).mean() < 0.03  # ~2 % clipped each side
    assert (out[:, ~valid] == 0).all()
