"""Which bands of a raster a model reads at classification: the training bands, found again.

A model stores the file bands it was trained on (``bands.indices``), their wavelengths and, since
format 1 files written by this version, the training raster's band count (``bands.file_count``).
Reading ``indices`` from a raster with another band layout would classify garbage with exit status 0
(a 64-band model reads bands 1-64 of a 204-band raster), so the bands are chosen like this:

1. the user names them (``--bands`` / BANDS): those, in the model's order;
2. the raster has the training raster's band count: the stored indices (wavelengths checked when
   both sides have them);
3. both sides have wavelengths: each model band is the raster band at the same wavelength (within
   ``WAVELENGTH_TOLERANCE_NM``), so a sensor's full cube classifies with a model trained on a subset;
4. otherwise: refused, with what to give.

Model files older than ``file_count`` are taken to come from a raster of ``max(indices)`` bands or more
(step 2 then accepts only a raster whose count equals the number of used bands or the largest index).
No torch here.
"""

from __future__ import annotations

import logging
from typing import List, Optional, Sequence

from .data.raster import RasterInfo, band_ranges, open_raster
from .modelfile import WAVELENGTH_TOLERANCE_NM, check_raster_matches

__all__ = ["choose_bands", "open_model_input"]

log = logging.getLogger(__name__)


def _by_wavelength(wanted: Sequence[float], available: Sequence[float]) -> Optional[List[int]]:
    """0-based positions in ``available`` of each wanted wavelength (nearest within tolerance), or None."""
    found = []
    for target in wanted:
        nearest = min(range(len(available)), key=lambda k: abs(available[k] - target))
        if abs(available[nearest] - target) > WAVELENGTH_TOLERANCE_NM:
            return None
        found.append(nearest)
    return found if len(set(found)) == len(found) else None


def choose_bands(metadata: dict, raster_path: str, bands: Optional[Sequence[int]] = None) -> List[int]:
    """The 1-based file bands of ``raster_path`` that feed the model, in the model's band order (see the
    module docstring); ValueError, naming both band counts and the way out, when they cannot be chosen."""
    stored = metadata["bands"]
    indices = [int(b) for b in stored["indices"]]
    if bands is not None:
        bands = [int(b) for b in bands]
        if len(bands) != len(indices):
            raise ValueError(f"{len(bands)} bands given but the model reads {len(indices)}; name exactly "
                             f"{len(indices)} bands of {raster_path}, in the training order")
        return bands
    whole = open_raster(raster_path, drop_bad_bands=False)
    count = whole.file_bands
    trained = stored.get("file_count")
    same_layout = count == trained if trained else count in (len(indices), max(indices))
    if same_layout and max(indices) <= count:
        return indices
    wavelengths = stored.get("wavelengths")
    if wavelengths and whole.wavelengths is not None:
        positions = _by_wavelength(wavelengths, whole.wavelengths)
        if positions is not None:
            chosen = [whole.band_indices[k] for k in positions]
            log.info("%s has %d bands, the training raster %s; the model's %d bands were found by wavelength",
                     raster_path, count, trained or "another count", len(chosen))
            return chosen
    trained_text = f"the training raster had {trained}" if trained else f"the model reads bands up to {max(indices)}"
    raise ValueError(f"{raster_path} has {count} bands but {trained_text} ({len(indices)} in use: bands "
                     f"{band_ranges(indices)}), and the bands cannot be matched by wavelength; reading those bands of "
                     f"it would give a wrong map. Name the {len(indices)} bands of {raster_path} that hold the model's "
                     f"bands, in the training order (CLI: classify --bands, e.g. --bands {band_ranges(indices)} when "
                     f"they have the training raster's numbers; toolbox: Bands), or classify a raster with the "
                     f"training raster's bands")


def open_model_input(raster_path: str, metadata: dict, bands: Optional[Sequence[int]] = None) -> RasterInfo:
    """The raster described for the bands the model reads (``choose_bands``), wavelengths checked."""
    info = open_raster(raster_path, bands=choose_bands(metadata, raster_path, bands), drop_bad_bands=False)
    check_raster_matches(metadata, info)
    return info
