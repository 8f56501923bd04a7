"""One file per trained model: weights plus the JSON metadata needed to apply it to a new raster.

Layout (``torch.save`` of a plain dict, so ``torch.load(weights_only=True)`` reads it without running
any code; safetensors is not a dependency of the plugin):

    {"format": "cssmamba-model",
     "metadata_json": str,                 # json.dumps of the metadata below
     "state_dict": {name: Tensor},         # model.state_dict(): parameters and persistent buffers
     "sha256": str}                        # of the metadata and every tensor (``_digest``); files from
                                           # before it have none and load unchecked

torch's zip container keeps CRCs but does not check them on load, so a flipped bit in the metadata or
the weights would load and give a wrong map; the digest turns that into "not a valid model file".
Weights that hold NaN or Inf are refused as well (at save: training diverged; at load: a damaged file).

Metadata (FORMAT_VERSION 1)::

    format_version  int
    model           {name: str, config: dict}        # build_model(name, **config) rebuilds the architecture
    bands           {indices: [int], names: [str], wavelengths: [float] | None, nodata: [float | None],
                     file_count: int}     # the training raster's band count (absent in older files)
    normalisation   {low: [float], high: [float]}   # per-band 2-98 % stretch of the training raster
    classes         {ids: [int], names: [str], colors: [[r, g, b]]}
    provenance      {raster, labels | rois, class_field, split, seed, epochs, best_epoch, metrics,
                     software {engine, torch, numpy, gdal}, created}   # free-form record, not checked

Per-band lists have one entry per model input band and per-class lists one per output class.

Multi-modal models (config ``hsi_bands``/``aux_bands`` instead of ``in_bands``, e.g. M3amba) use the same
layout: ``bands`` and ``normalisation`` describe the hyperspectral raster, ``modalities`` every input (so
classification reads and scales the auxiliary rasters as in training) and ``clip`` the CLIP file::

    modalities      [{name, role: "hsi" | "aux", path, bands: int, band_names: [str], nodata: [float | None],
                      normalisation {low, high}, resampling: str | None, crs: str | None,
                      reprojected: bool}]                 # the hsi first, then the auxiliary rasters in order
    clip            {sha256, path, known_as} | None   # the CLIP image-encoder file, when the model uses one

The addition leaves single-modal files unchanged, so both kinds stay at format version 1 (a reader
older than the addition refuses a multi-modal file as invalid: it cannot rebuild the model). A file
with a newer format_version is refused with a message to update the plugin; any file that does not
load, does not match this layout or does not fit the architecture it names is refused as "not a valid
CSSMamba model file". No GDAL here: this module also runs on GPU machines without it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import torch

from torch import nn

from .paths import check_writable, describe_write_error, write_atomic

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelNotSaved", "save_model", "load_model", "validate_metadata",
           "check_raster_matches"]

FORMAT = "cssmamba-model"
FORMAT_VERSION = 1
WAVELENGTH_TOLERANCE_NM = 1.0
_PAYLOAD_KEYS = {"format", "metadata_json", "state_dict", "sha256"}
_UNCHECKED_KEYS = _PAYLOAD_KEYS - {"sha256"}  # files written before the digest


def _invalid(path: str, reason: str) -> ValueError:
    return ValueError(f"{path} is not a valid CSSMamba model file ({reason}); retrain or re-download it")


def _json_default(value: Any) -> Any:
    """numpy arrays and scalars (e.g. the stretch statistics) as plain JSON values."""
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# ------------------------------------------------------------------------------------------------
# Metadata


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _section(metadata: Dict[str, Any], key: str) -> Dict[str, Any]:
    value = metadata.get(key)
    if not isinstance(value, dict):
        raise ValueError(f"metadata '{key}' must be an object, got {type(value).__name__}")
    return value


def _list(section: Dict[str, Any], where: str, key: str, check, what: str, length: int = None) -> list:
    value = section.get(key)
    if not isinstance(value, list) or not all(check(v) for v in value):
        raise ValueError(f"metadata '{where}.{key}' must be a list of {what}")
    if length is not None and len(value) != length:
        raise ValueError(f"metadata '{where}.{key}' has {len(value)} entries but the model has {length}")
    return value


def validate_metadata(metadata: Dict[str, Any]) -> None:
    """Raise ValueError naming the first missing or ill-typed entry, or the first count that disagrees
    with the model config (in_bands per-band lists, n_classes per-class lists). The version is checked
    by ``load_model`` before this, so a newer file gets the update message instead."""
    if not isinstance(metadata, dict):
        raise ValueError(f"metadata must be an object, got {type(metadata).__name__}")
    version = metadata.get("format_version")
    if not _is_int(version) or version < 1:
        raise ValueError(f"metadata 'format_version' must be an integer >= 1, got {version!r}")
    model = _section(metadata, "model")
    if not isinstance(model.get("name"), str) or not model["name"]:
        raise ValueError("metadata 'model.name' must be a non-empty string")
    config = model.get("config")
    if not isinstance(config, dict):
        raise ValueError("metadata 'model.config' must be an object")
    multimodal = "aux_bands" in config
    for key in ("hsi_bands", "aux_bands", "n_classes") if multimodal else ("in_bands", "n_classes"):
        if not _is_int(config.get(key)) or config[key] < 1:
            raise ValueError(f"metadata 'model.config.{key}' must be an integer >= 1, got {config.get(key)!r}")
    n_bands, n_classes = config["hsi_bands" if multimodal else "in_bands"], config["n_classes"]

    bands = _section(metadata, "bands")
    _list(bands, "bands", "indices", lambda v: _is_int(v) and v >= 1, "band numbers >= 1", n_bands)
    _list(bands, "bands", "names", lambda v: isinstance(v, str), "strings", n_bands)
    _list(bands, "bands", "nodata", lambda v: v is None or _is_number(v), "numbers or null", n_bands)
    if "file_count" in bands and not (_is_int(bands["file_count"]) and bands["file_count"] >= max(bands["indices"])):
        raise ValueError(f"metadata 'bands.file_count' must be the training raster's band count (>= every band "
                         f"index), got {bands['file_count']!r}")
    if bands.get("wavelengths") is not None:
        _list(bands, "bands", "wavelengths", _is_number, "numbers (nm) or null", n_bands)

    norm = _section(metadata, "normalisation")
    low = _list(norm, "normalisation", "low", _is_number, "numbers", n_bands)
    high = _list(norm, "normalisation", "high", _is_number, "numbers", n_bands)
    if not all(math.isfinite(v) for v in low + high):
        raise ValueError("metadata 'normalisation' holds NaN or Inf")

    classes = _section(metadata, "classes")
    ids = _list(classes, "classes", "ids", lambda v: _is_int(v) and v >= 1, "class ids >= 1", n_classes)
    if len(set(ids)) != len(ids):
        raise ValueError(f"metadata 'classes.ids' has duplicates: {ids}")
    _list(classes, "classes", "names", lambda v: isinstance(v, str), "strings", n_classes)
    _list(classes, "classes", "colors",
          lambda v: isinstance(v, list) and len(v) == 3 and all(_is_int(c) and 0 <= c <= 255 for c in v),
          "[r, g, b] triples of 0..255", n_classes)
    _section(metadata, "provenance")
    if multimodal:
        _validate_modalities(metadata, n_bands, config["aux_bands"])


def _validate_modalities(metadata: Dict[str, Any], hsi_bands: int, aux_bands: int) -> None:
    """The multi-modal entries: the HSI first, then auxiliary rasters whose bands add up to aux_bands."""
    modalities = metadata.get("modalities")
    if not isinstance(modalities, list) or len(modalities) < 2 or not all(isinstance(m, dict) for m in modalities):
        raise ValueError("metadata 'modalities' must list the hyperspectral raster and at least one auxiliary raster")
    roles = [m.get("role") for m in modalities]
    if roles[0] != "hsi" or any(role != "aux" for role in roles[1:]):
        raise ValueError(f"metadata 'modalities' must be one 'hsi' entry followed by 'aux' entries, got roles {roles}")
    for i, m in enumerate(modalities):
        where = f"modalities[{i}]"
        if not isinstance(m.get("name"), str) or not _is_int(m.get("bands")) or m["bands"] < 1:
            raise ValueError(f"metadata '{where}' needs a 'name' string and a 'bands' count >= 1")
        norm = _section(m, "normalisation")
        for key in ("low", "high"):
            values = _list(norm, f"{where}.normalisation", key, _is_number, "numbers", m["bands"])
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"metadata '{where}.normalisation' holds NaN or Inf")
    if modalities[0]["bands"] != hsi_bands:
        raise ValueError(f"metadata 'modalities[0].bands' is {modalities[0]['bands']} but the model has {hsi_bands} "
                         f"hyperspectral bands")
    if sum(m["bands"] for m in modalities[1:]) != aux_bands:
        raise ValueError(f"metadata 'modalities' auxiliary bands add up to {sum(m['bands'] for m in modalities[1:])} "
                         f"but the model has {aux_bands}")


# ------------------------------------------------------------------------------------------------
# Save and load


def _digest(metadata_json: str, state: Dict[str, torch.Tensor]) -> str:
    """sha256 of the metadata text and of every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256(metadata_json.encode("utf-8"))
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"\0{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode("utf-8"))
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _non_finite(state: Dict[str, torch.Tensor]) -> list:
    return [name for name, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]


class ModelNotSaved(ValueError):
    """The model file could not be written (a full disk). ``recovered``: where a complete copy went, or
    None; ``payload``: the file's content, still in memory, for ``write_payload`` to another path."""

    def __init__(self, message: str, recovered: Optional[str], payload: Dict[str, Any]) -> None:
        super().__init__(message)
        self.recovered = recovered
        self.payload = payload


def write_payload(path: str, payload: Dict[str, Any]) -> None:
    """Write a model file's payload atomically (``paths.write_atomic``); OSError says why it failed."""
    write_atomic(path, lambda stream: torch.save(payload, stream), "model file")


def _recovery_folders(failed: str) -> list:
    """Where a model that could not be written goes instead: the system's temporary folder, the home
    folder, the working folder (each once, the failed folder left out)."""
    seen, folders = {os.path.realpath(failed)}, []
    for folder in (tempfile.gettempdir(), os.path.expanduser("~"), os.getcwd()):
        real = os.path.realpath(folder)
        if real not in seen and os.path.isdir(real):
            seen.add(real)
            folders.append(folder)
    return folders


def _recover(path: str, payload: Dict[str, Any], error: BaseException) -> ModelNotSaved:
    """After a failed write of ``path``: try the recovery folders and return the error to raise, which
    says where the trained model went (or that it could not be written anywhere)."""
    stem, extension = os.path.splitext(os.path.basename(path))
    reason = describe_write_error(error, path, "model file")
    folders = _recovery_folders(os.path.dirname(os.path.abspath(path)))
    for folder in folders:
        try:  # a fresh name: an earlier recovery copy is never replaced
            handle, copy = tempfile.mkstemp(prefix=f"{stem}.recovered-{time.strftime('%Y%m%d-%H%M%S')}-",
                                            suffix=extension or ".pt", dir=folder)
            os.close(handle)
        except OSError:
            continue
        try:
            write_payload(copy, payload)
        except (OSError, RuntimeError):
            os.remove(copy)
            continue
        return ModelNotSaved(f"{reason}. The trained model was saved instead to {copy}: move it where you want it "
                             f"(it is a complete model file)", copy, payload)
    tried = ", ".join(folders) or "no other folder"
    return ModelNotSaved(f"{reason}. No recovery copy could be written either (tried {tried}); free disk space and "
                         f"train again", None, payload)


def save_model(path: str, model: nn.Module, metadata: Dict[str, Any]) -> None:
    """Write ``model`` (state dict) and ``metadata`` to ``path`` atomically.

    ``format_version`` and ``model`` {name, config} are filled in from the model; the rest comes from
    the caller and is validated first, so a file that load_model would refuse is never written. The
    file is written under a temporary name in the same folder and renamed over ``path`` at the end,
    so a crash or cancel never leaves a half-written model file (and the next save removes the
    temporaries a killed run left, ``paths.remove_stale_temporaries``). When the write fails (a full
    disk) the trained weights are not lost: a copy goes to a recovery folder and ModelNotSaved (a
    ValueError) says where.
    """
    check_writable(path, "model file")
    full = dict(metadata, format_version=FORMAT_VERSION, model={"name": model.name, "config": model.config})
    try:
        text = json.dumps(full, default=_json_default, sort_keys=True)
    except TypeError as exc:
        raise ValueError(f"the model metadata cannot be written as JSON: {exc}") from exc
    validate_metadata(json.loads(text))
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    broken = _non_finite(state)
    if broken:
        shown = ", ".join(broken[:3]) + (" …" if len(broken) > 3 else "")
        raise ValueError(f"the trained weights hold NaN or Inf ({shown}): training diverged; train again with a "
                         f"lower learning rate")
    payload = {"format": FORMAT, "metadata_json": text, "state_dict": state, "sha256": _digest(text, state)}
    try:
        write_payload(path, payload)
    except (OSError, RuntimeError) as exc:  # torch.save reports a failed write as RuntimeError
        raise _recover(path, payload, exc) from exc


def _build(name: str, config: Dict[str, Any]) -> nn.Module:
    """The architecture named in the file (lazy import: the registry pulls in every model)."""
    from .models.registry import MULTIMODAL_NAMES, build_model, build_multimodal_model

    return (build_multimodal_model if name in MULTIMODAL_NAMES else build_model)(name, **config)


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + " …"


def load_model(path: str, map_location: Union[str, torch.device] = "cpu") -> Tuple[nn.Module, Dict[str, Any]]:
    """Read a model file: (model in eval mode on ``map_location``, metadata).

    ``torch.load(weights_only=True)`` only rebuilds tensors and plain containers, so a tampered file
    cannot execute code. The architecture is rebuilt from the metadata and the weights must match it
    exactly (``load_state_dict(strict=True)``). Every failure is a ValueError that names the file.
    """
    if not os.path.isfile(path):
        raise ValueError(f"model file {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # zip/pickle errors of every kind: truncated, random bytes, forbidden globals
        raise _invalid(path, f"cannot be read: {_short(exc)}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise _invalid(path, f"no '{FORMAT}' marker")
    try:
        metadata = json.loads(payload["metadata_json"])
    except (KeyError, TypeError, ValueError) as exc:
        raise _invalid(path, f"unreadable metadata: {_short(exc)}") from exc
    version = metadata.get("format_version") if isinstance(metadata, dict) else None
    if _is_int(version) and version > FORMAT_VERSION:
        raise ValueError(f"{path} was written by a newer version of the plugin (model file format {version}, "
                         f"this version reads up to {FORMAT_VERSION}); update the plugin to use it")
    if set(payload) not in (_PAYLOAD_KEYS, _UNCHECKED_KEYS):
        raise _invalid(path, f"entries {sorted(payload)} instead of {sorted(_PAYLOAD_KEYS)}")
    try:
        validate_metadata(metadata)
    except ValueError as exc:
        raise _invalid(path, str(exc)) from exc
    state = payload["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise _invalid(path, "the weights are not a mapping of names to tensors")
    if "sha256" in payload and (not isinstance(payload["metadata_json"], str)
                                or payload["sha256"] != _digest(payload["metadata_json"], state)):
        raise _invalid(path, "its checksum does not match its content: the file is damaged (a copy error, a bad "
                             "disk) or was edited")
    broken = _non_finite(state)
    if broken:
        raise _invalid(path, f"the weights hold NaN or Inf ({', '.join(broken[:3])}"
                             f"{' …' if len(broken) > 3 else ''}), so every pixel would get the same class")
    try:
        model = _build(metadata["model"]["name"], metadata["model"]["config"])
    except (ValueError, TypeError) as exc:
        raise _invalid(path, f"cannot rebuild model '{metadata['model']['name']}': {_short(exc)}") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise _invalid(path, f"the weights do not fit the architecture: {_short(exc)}") from exc
    return model.to(map_location).eval(), metadata


# ------------------------------------------------------------------------------------------------
# Raster compatibility


def check_raster_matches(metadata: Dict[str, Any], info: Any) -> None:
    """Refuse a raster whose bands differ from the training raster's.

    info: a RasterInfo (``bands``, ``wavelengths``, ``path``; duck-typed so that this module needs no
    GDAL). The band counts must be equal; when both sides know their wavelengths, each pair must agree
    within WAVELENGTH_TOLERANCE_NM, and the message lists the first pairs that do not.
    """
    model_bands = len(metadata["bands"]["indices"])
    path = getattr(info, "path", "the raster")
    if info.bands != model_bands:
        raise ValueError(f"{path} has {info.bands} bands but the model was trained on {model_bands} bands; "
                         f"classify a raster with the same bands as the training raster")
    ours, theirs = metadata["bands"].get("wavelengths"), info.wavelengths
    if ours is None or theirs is None:
        return
    differing = [i for i, (a, b) in enumerate(zip(ours, theirs)) if not abs(a - b) <= WAVELENGTH_TOLERANCE_NM]
    if differing:
        shown = ", ".join(f"band {i + 1}: model {ours[i]:g} nm, raster {theirs[i]:g} nm" for i in differing[:5])
        more = f" and {len(differing) - 5} more" if len(differing) > 5 else ""
        raise ValueError(f"{path} has {info.bands} bands and the model {model_bands}, but {len(differing)} "
                         f"wavelengths differ by more than {WAVELENGTH_TOLERANCE_NM:g} nm ({shown}{more}); "
                         f"classify a raster from the same sensor and band set as the training raster")
