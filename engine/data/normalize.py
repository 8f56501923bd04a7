"""The MambaHSI input stretch (MODELS.md §3.1 step 1), fitted at training and reused at prediction.

Per band, p2 and p98 are numpy's linear-interpolation percentiles over the valid pixels; a value x
becomes floor(255 * clip((x - p2) / (p98 - p2), 0, 1)) / 255, i.e. the reference's uint8
quantisation, as float32. The statistics travel in the model file (Stretch.to_dict), so a scene
classified later is scaled exactly like the training scene.

No GDAL here: this module also runs on GPU machines that have only numpy and torch.
"""

from dataclasses import dataclass
from typing import Dict, List

import numpy as np

LOW_PERCENTILE = 2.0
HIGH_PERCENTILE = 98.0
LEVELS = 255


@dataclass
class Stretch:
    """Per-band stretch limits: low = p2, high = p98, both (Nb,) float64."""

    low: np.ndarray
    high: np.ndarray

    def to_dict(self) -> Dict[str, List[float]]:
        return {"low": [float(v) for v in self.low], "high": [float(v) for v in self.high]}

    @classmethod
    def from_dict(cls, values: Dict[str, List[float]]) -> "Stretch":
        """Rebuild from to_dict's output; malformed statistics -> ValueError (e.g. a tampered model file)."""
        try:
            low, high = (np.asarray(values[key], dtype=np.float64) for key in ("low", "high"))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"normalisation statistics must be {{'low': [...], 'high': [...]}} lists of numbers: "
                             f"{error!r}") from None
        if low.ndim != 1 or low.shape != high.shape or not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ValueError(f"normalisation statistics must be two finite lists of equal length, got "
                             f"{low.shape} and {high.shape} values")
        if (high < low).any():
            raise ValueError("normalisation statistics have high < low for some band")
        return cls(low, high)


def fit_stretch(data: np.ndarray, valid: np.ndarray) -> Stretch:
    """p2 / p98 per band of ``data`` (Nb, H, W) over the pixels where ``valid`` (H, W) is True."""
    if data.ndim != 3 or valid.shape != data.shape[1:]:
        raise ValueError(f"expected data (Nb, H, W) and valid (H, W), got {data.shape} and {valid.shape}")
    if not valid.any():
        raise ValueError("cannot fit the stretch: no valid pixel")
    limits = np.array([np.percentile(band[valid], [LOW_PERCENTILE, HIGH_PERCENTILE]) for band in data],
                      dtype=np.float64).reshape(-1, 2)
    return Stretch(limits[:, 0].copy(), limits[:, 1].copy())


def apply_stretch(data: np.ndarray, valid: np.ndarray, stretch: Stretch) -> np.ndarray:
    """(Nb, H, W) float32 in {0, 1/255, ..., 1}; invalid pixels and constant bands (p98 == p2) are 0."""
    if data.ndim != 3 or valid.shape != data.shape[1:]:
        raise ValueError(f"expected data (Nb, H, W) and valid (H, W), got {data.shape} and {valid.shape}")
    if len(stretch.low) != data.shape[0]:
        raise ValueError(f"the stretch has {len(stretch.low)} bands but the data has {data.shape[0]}")
    out = np.zeros(data.shape, np.float32)
    for k, band in enumerate(data):
        low, span = stretch.low[k], stretch.high[k] - stretch.low[k]
        if span <= 0:
            continue
        scaled = np.clip((band.astype(np.float64) - low) / span, 0.0, 1.0)
        out[k] = np.floor(LEVELS * scaled) / LEVELS
        out[k][~valid] = 0
    return out
