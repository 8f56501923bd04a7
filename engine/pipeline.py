"""File-to-file jobs: train a model from a raster and labels, classify a raster, assess a class map.

These are the three things a user does, written once here so that the CLI, the Processing
algorithms and the benchmark run the same code path. Each function takes file paths, does the
reading, the checks and the bookkeeping (class table, split, stretch, metadata), and hands the
numerical work to ``training/``, ``inference/`` and ``metrics.py``.

Training reads what it needs, not the scene (``_prepare``): the labels (maps of the whole grid), a
bounded sample for the stretch (``data.raster.read_sample``), then either the whole raster, when the
scene is at most one classification tile, or only the classification tiles that hold labelled pixels
(``sampler.label_windows``), whose tiling the model file records so that ``classify_file`` repeats it.

Classes that nodata leaves with fewer than 2 usable pixels are dropped from the model with a
warning (``data.labels.drop_unusable_classes``); fewer than two remaining classes is an error.
"""

from __future__ import annotations

import datetime
import logging
import os
import platform
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import sklearn
import torch
from osgeo import gdal
from threadpoolctl import threadpool_limits

from . import __version__
from .data.labels import ClassTable, Color, class_indices, drop_unusable_classes, read_reference
from .data.normalize import Stretch, apply_stretch, fit_stretch
from .data.raster import (RasterInfo, ReadCancelled, check_fits_in_memory, load_training_raster, open_raster,
                          read_sample, read_window, training_bytes)
from .data.splits import MIN_GROUPS, Split, fixed_count_split, groups_per_class, ratio_split, spatial_split
from .device import resolve_device
from .training import distributed
from .metrics import accuracy
from .modelfile import FORMAT_VERSION, load_model, save_model
from .training.crops import predict_at
from .data.auxiliary import AuxRaster, open_aux, read_auxes
from .models.registry import MULTIMODAL_NAMES, build_model, build_multimodal_model, default_config
from .multimodal import (EPOCHS as MULTIMODAL_EPOCHS, LEARNING_RATE as MULTIMODAL_LEARNING_RATE, check_modalities,
                         clip_config, crop_batch_fits, crop_recipe_metadata, modalities_metadata)
from .precision import choose_precision
from .memory import available_memory_bytes, gigabytes, gives_back_heap
from .paths import check_distinct
from .inference.predict import DEFAULT_TILE, predict_raster
from .inference.tiling import predict_array
from .training.sampler import Patch, Window, crop_label_tiling, label_tiling, label_windows
from .training.sizing import choose_size
from .training.train import (TrainConfig, TrainingCancelled, TrainResult, is_crop_model, make_guides, train_patches,
                             whole_scene_fits)

gdal.UseExceptions()

Progress = Callable[..., None]
Cancelled = Callable[[], bool]

LOG = logging.getLogger(__name__)

SPLIT_MODES = ("fixed", "ratio", "spatial", "auto")


@dataclass
class SplitOptions:
    """How labelled pixels are divided (MODELS.md §3.3, §4.10).

    mode 'fixed': ``train_per_class`` / ``val_per_class`` per class (15 train at ≤ 30 px), rest test;
    mode 'ratio': fractions with at least 3 train / 1 validation pixel per class; mode 'spatial': the same
    counts as 'fixed' drawn from disjoint connected components (or blocks) of each class, the test set
    from the others (splits.spatial_split); mode 'auto': 'spatial' when every class has at least
    splits.MIN_GROUPS components (e.g. three polygons), else 'fixed' (``resolved``). Validation labels or
    ROIs (``val_labels`` / ``val_rois``) replace the sampling: every training-label pixel trains, the
    validation pixels select the epoch, and the reported metrics are on those validation pixels.
    """

    mode: str = "fixed"
    train_per_class: int = 30
    val_per_class: int = 10
    train_ratio: float = 0.1
    val_ratio: float = 0.01
    val_labels: Optional[str] = None
    val_rois: Optional[str] = None
    val_class_field: Optional[str] = None  # defaults to the training class field

    def __post_init__(self) -> None:
        """Name the setting that is wrong (with its CLI option), before any data is read."""
        if self.mode not in SPLIT_MODES:
            raise ValueError(f"unknown split mode {self.mode!r}; use one of {', '.join(SPLIT_MODES)}")
        for name, value in (("train_per_class", self.train_per_class), ("val_per_class", self.val_per_class)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{_setting(name)} must be a whole number of at least 1 pixel, got {value!r}")
        if self.mode != "ratio" or self.val_labels or self.val_rois:
            return                                     # the ratios are not used
        for name, value in (("train_ratio", self.train_ratio), ("val_ratio", self.val_ratio)):
            if not 0 < value < 1:
                raise ValueError(f"{_setting(name)} must be a fraction between 0 and 1, got {value!r}")
        if self.train_ratio + self.val_ratio >= 1:
            raise ValueError(f"{_setting('train_ratio')} + {_setting('val_ratio')} must stay below 1 so that test "
                             f"pixels remain, got {self.train_ratio} + {self.val_ratio}")

    def resolved(self, index: np.ndarray, valid: np.ndarray) -> "SplitOptions":
        """'auto' made 'spatial' or 'fixed' for these labels (class indices, −1 none); other modes as they are."""
        if self.mode != "auto" or self.val_labels or self.val_rois:
            return self
        groups = groups_per_class(index, valid)
        spatial = min(groups.values(), default=0) >= MIN_GROUPS
        LOG.info("split: %s", "spatial (every class has at least %d separate ROIs or components)" % MIN_GROUPS
                 if spatial else "pixels per class (a spatial split needs %d separate ROIs of every class; the "
                 "fewest has %d)" % (MIN_GROUPS, min(groups.values(), default=0)))
        return replace(self, mode="spatial" if spatial else "fixed")

    def describe(self) -> Dict[str, Any]:
        if self.val_labels or self.val_rois:
            return {"mode": "validation-set", "val_labels": absolute_or_none(self.val_labels), "val_rois": absolute_or_none(self.val_rois)}
        if self.mode in ("fixed", "spatial", "auto"):
            return {"mode": self.mode, "train_per_class": self.train_per_class, "val_per_class": self.val_per_class}
        return {"mode": "ratio", "train_ratio": self.train_ratio, "val_ratio": self.val_ratio}


_TOOLBOX_LABELS = {"train_per_class": "Training pixels per class", "val_per_class": "Validation pixels per class",
                   "train_ratio": "Training ratio", "val_ratio": "Validation ratio"}


def _setting(name: str) -> str:
    """'train_per_class (--train-per-class; toolbox: Training pixels per class)' for messages."""
    return f"{name} (--{name.replace('_', '-')}; toolbox: {_TOOLBOX_LABELS[name]})"


def absolute_or_none(path: Optional[str]) -> Optional[str]:
    return os.path.abspath(path) if path else None


def phase_progress(progress: Optional[Progress], start: float, end: float) -> Progress:
    """A progress callback mapping 0..1 of one phase onto start..end of the whole job."""
    def report(fraction: float, text: str = "") -> None:
        if progress is not None:
            progress(start + (end - start) * min(max(fraction, 0.0), 1.0), text)
    return report


def training_inputs(raster: str, labels: Optional[str], rois: Optional[str], split: SplitOptions,
                    **more: Any) -> Dict[str, Any]:
    """{what: path} of every file a training run reads, for ``paths.check_distinct``."""
    return {"raster": raster, "label raster": labels, "ROI file": rois, "validation label raster": split.val_labels,
            "validation ROI file": split.val_rois, **more}


def read_validation_ids(info: RasterInfo, options: SplitOptions, class_field: Optional[str]) -> Optional[np.ndarray]:
    """Class ids (H, W) of the validation labels or ROIs (0 = none), or None when the split samples them."""
    if not (options.val_labels or options.val_rois):
        return None
    val_ids, _ = read_reference(info, options.val_labels, options.val_rois, options.val_class_field or class_field,
                                None, what="validation")
    return val_ids


def make_split(info: RasterInfo, index: np.ndarray, table: ClassTable, valid: np.ndarray, seed: int,
               options: SplitOptions, class_field: Optional[str], val_ids: Optional[np.ndarray] = None) -> Split:
    """Train / validation / test maps of class indices (H, W), -1 outside each set; nodata never used.
    ``val_ids``: ``read_validation_ids``'s map when the caller has read it already."""
    if options.val_labels or options.val_rois:
        if val_ids is None:
            val_ids = read_validation_ids(info, options, class_field)
        val_index = class_indices(val_ids, table)
        unknown = sorted(set(np.unique(val_ids[(val_ids > 0) & (val_index < 0)]).tolist()))
        if unknown:
            LOG.warning("validation class ids %s are not among the training classes %s; those pixels are ignored",
                        unknown, table.ids)
        train = np.where(valid, index, -1)
        overlap = (train >= 0) & (val_index >= 0)
        if overlap.any():
            LOG.warning("%d validation pixels are also training pixels; they are used for training only",
                        int(overlap.sum()))
        validation = np.where(valid & ~overlap, val_index, -1)
        if not (validation >= 0).any():
            raise ValueError("the validation labels/ROIs have no usable pixel of a training class outside nodata "
                             "and the training pixels")
        return Split(train=train.astype(np.int64), validation=validation.astype(np.int64),
                     test=np.full(index.shape, -1, np.int64))
    options = options.resolved(index, valid)
    if options.mode == "spatial":
        return spatial_split(index, seed, train_per_class=options.train_per_class,
                             val_per_class=options.val_per_class, valid=valid)
    if options.mode == "fixed":
        return fixed_count_split(index, seed, train_per_class=options.train_per_class,
                                 val_per_class=options.val_per_class, valid=valid)
    return ratio_split(index, seed, train_ratio=options.train_ratio, val_ratio=options.val_ratio, valid=valid)


def pixels_per_class(split_map: np.ndarray, n_classes: int) -> List[int]:
    return np.bincount(split_map[split_map >= 0], minlength=n_classes).astype(int).tolist()


def software_versions() -> Dict[str, Optional[str]]:
    """Versions that decide whether a model file's numbers can be reproduced."""
    return {"engine": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "scikit-learn": sklearn.__version__, "gdal": gdal.__version__, "python": platform.python_version()}


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def classes_metadata(table: ClassTable) -> Dict[str, Any]:
    """The model file's "classes" block: ids, names and colours in the model's class order."""
    return {"ids": [int(c) for c in table.ids], "names": list(table.names),
            "colors": [list(map(int, c)) for c in table.colors]}


def training_provenance(result: TrainResult, sources: Dict[str, Any], split: Split, counts: Dict[str, List[int]],
                        seed: int, epochs: int, lr: float, evaluated_on: str, metrics: Dict[str, Any],
                        started: str) -> Dict[str, Any]:
    """The model file's "provenance" block, the same for every trainer: the training data (``sources``:
    raster, labels or ROIs and their fields, as given), the split, the settings and what training measured."""
    return {**sources, "split": dict(split.describe(), counts=counts, seed=seed),
            "seed": seed, "epochs": epochs, "learning_rate": lr, "epochs_run": len(result.history),
            "best_epoch": result.best_epoch, "best_validation_oa": result.best_val_oa,
            "evaluated_on": evaluated_on, "metrics": metrics, "device": result.device, "backend": result.backend,
            "precision": result.precision,
            "threads": result.threads, "train_seconds": result.seconds, "software": software_versions(),
            "started": started, "created": utc_now()}


SAMPLINGS = ("auto", "windows", "whole")
HSI_EPOCHS, HSI_LEARNING_RATE = 200, 3e-4    # the MambaHSI / CSSMamba protocol (TrainConfig's defaults)


@dataclass
class _Scene:
    """A training raster with its classes, split and stretch, as the patches the trainer sees."""

    info: RasterInfo
    table: ClassTable
    split: Split                   # label maps of the whole grid
    counts: Dict[str, List[int]]   # pixels per class (table order) in train / validation / test
    stretch: Stretch
    patches: List[Patch]           # the whole scene, or its label windows
    sampling: str                  # "whole scene" or "label windows", for the log and the model file
    tiling: Optional[Dict[str, int]] = None   # label windows: the tiling they come from, for classification
    options: Optional[SplitOptions] = None    # the split that ran ('auto' resolved)
    auxes: List[AuxRaster] = field(default_factory=list)        # auxiliary rasters on the grid (multi-modal)
    aux_stretches: List[Stretch] = field(default_factory=list)  # their stretches, one per raster


def _whole_scene(info: RasterInfo, sampling: str) -> bool:
    """Whether to train on the whole scene rather than on its label windows. 'auto': the whole scene when
    classification will predict it in one tile (no side beyond DEFAULT_TILE px), so that training and
    classification see the same input (engine/training/sampler.py), and when it fits the memory free now; else
    the label windows, whose tiles the model file records for classification."""
    if sampling != "auto":
        return sampling == "whole"
    if max(info.rows, info.cols) > DEFAULT_TILE:
        return False
    try:
        check_fits_in_memory(info)
    except ValueError:
        return False
    return True


LABEL_GRID_BYTES = 64   # per pixel: the label, split and ownership maps of the whole grid, with temporaries


def _check_label_grid_fits(info: RasterInfo) -> None:
    """Refuse a grid whose label maps alone exceed the memory free now: the raster is read only around the
    labels, but the labels, their split and their windows are maps of the whole grid."""
    available = available_memory_bytes()
    need = LABEL_GRID_BYTES * info.rows * info.cols
    if available is not None and need > available:
        cube = 4 * info.bands * info.rows * info.cols
        raise ValueError(f"{info.path} is too large to train on here: the label maps of its {info.rows:,} x "
                         f"{info.cols:,} px grid need {gigabytes(need)} in memory but {gigabytes(available)} is free "
                         f"(the raster itself, {gigabytes(cube)} as float32, is never read whole: training reads "
                         f"the tiles around the ROIs). Clip the raster to the ROIs' extent (e.g. gdal_translate "
                         f"-projwin or Clip raster by extent), train there, and classify the whole raster "
                         f"afterwards, which streams it tile by tile")


def _read_windows(info: RasterInfo, windows: List[Window], auxes: Sequence[AuxRaster],
                  cancelled: Optional[Cancelled], smaller_tile: bool = False
                  ) -> Tuple[List[Tuple[np.ndarray, np.ndarray, List[np.ndarray]]], np.ndarray]:
    """Each label window as read (data, valid, auxiliary data on its grid), and the valid mask of the whole
    grid (False outside the windows; a pixel is valid where the raster and every auxiliary raster are).
    Refused before reading when the windows do not fit the memory free now (``smaller_tile``: the user
    chose the window size, so a smaller one is a way out)."""
    need = training_bytes(info, sum(w.pixels for w in windows))
    available = available_memory_bytes()
    if available is not None and need > available:
        raise ValueError(f"the labelled pixels are spread over too much of {info.path}: the {len(windows)} windows "
                         f"around them hold {sum(w.pixels for w in windows):,} px and need {gigabytes(need)} in "
                         f"memory, but {gigabytes(available)} is free. Train on fewer or closer ROIs, or on fewer "
                         f"bands (CLI: --bands; toolbox: Bands)" + (", or with a smaller training window size (CLI: "
                                                                   "--label-tile; toolbox: Training window size)"
                                                                   if smaller_tile else ""))
    valid = np.zeros((info.rows, info.cols), bool)
    reads = []
    for w in windows:
        if cancelled is not None and cancelled():
            raise ReadCancelled(f"reading {info.path} cancelled")
        data, window_valid = read_window(info, w.row0, w.col0, *w.shape)
        aux_data = read_auxes(auxes, info, window_valid, w.row0, w.col0, *w.shape)
        valid[w.slices] |= window_valid
        reads.append((data, window_valid, aux_data))
    return reads, valid


def _fit_aux_stretches(windows: List[Window], reads: List[Tuple[np.ndarray, np.ndarray, List[np.ndarray]]],
                       grid: Tuple[int, int], count: int) -> List[Stretch]:
    """One stretch per auxiliary raster, fitted on the valid pixels of what training read (the whole scene or
    its label windows, each pixel once where windows overlap: an auxiliary raster has few bands, so its
    pixels there are a cheap and large sample)."""
    seen = np.zeros(grid, bool)
    firsts = []
    for w, (_, window_valid, _) in zip(windows, reads):
        firsts.append(window_valid & ~seen[w.slices])
        seen[w.slices] = True
    valid = np.concatenate([first.reshape(-1) for first in firsts])[None]
    stretches = []
    for j in range(count):
        data = np.concatenate([aux[j].reshape(aux[j].shape[0], -1) for _, _, aux in reads], axis=1)[:, None]
        stretches.append(fit_stretch(data, valid))
    return stretches


def _prepare(raster: str, labels: Optional[str], rois: Optional[str], class_field: Optional[str],
             name_field: Optional[str], seed: int, options: SplitOptions, bands: Optional[List[int]] = None,
             sampling: str = "auto", cancelled: Optional[Cancelled] = None, aux: Sequence[str] = (),
             aux_resampling: Sequence[str] = (), crop: Optional[int] = None,
             label_tile: Optional[int] = None) -> _Scene:
    """Read what training needs: the labels, a bounded sample for the stretch, then the label windows, or
    the whole raster when training on it costs no more (``_whole_scene``). The split depends only on the
    labelled pixels and their validity, so it is the same whichever is read. ``aux``: auxiliary rasters,
    warped onto the raster's grid window by window (``aux_resampling``: one method per raster); a pixel is
    valid where the raster and every one of them are. ``crop``: the crop size of a crop model (M3amba), whose
    label windows carry a crop of context (``sampler.crop_label_tiling``) and are not a classification
    tiling. ``label_tile``: the side of the label windows of a whole-window model (``sampler.label_tiling``;
    None: its default)."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
    if label_tile is not None and crop is not None:
        raise ValueError("the training window size (CLI: --label-tile; toolbox: Training window size) is for the "
                         "whole-window models (CSSMamba, MambaHSI); a crop model's label windows follow its crop size: "
                         "leave the window size out")
    if label_tile is not None and sampling == "whole":
        raise ValueError("a training window size (--label-tile) was given with whole-scene sampling (--sampling "
                         "whole), which has no windows; choose --sampling windows or auto, or leave --label-tile out")
    tiling = crop_label_tiling(crop) if crop is not None else label_tiling(label_tile)
    info = open_raster(raster, bands)
    _check_label_grid_fits(info)
    auxes = [open_aux(path, info, method) for path, method in zip(aux, aux_resampling)]
    ids, table = read_reference(info, labels, rois, class_field, name_field)
    val_ids = read_validation_ids(info, options, class_field)
    labelled = class_indices(ids, table) >= 0
    if val_ids is not None:
        labelled |= val_ids > 0
    plan = label_windows(labelled, *tiling)
    whole = _whole_scene(info, sampling)
    if whole and label_tile is not None:
        LOG.info("the training window size (%d px) does not apply: the scene is trained whole, as classification "
                 "predicts it in one tile", label_tile)
    info, sample, sample_valid = read_sample(info, cancelled=cancelled)
    stretch = fit_stretch(sample, sample_valid)
    del sample, sample_valid
    if whole:
        info, raw, valid = load_training_raster(raster, bands=info.band_indices, cancelled=cancelled)
        reads = [(raw, valid, read_auxes(auxes, info, valid))]
        windows = [Window(0, info.rows, 0, info.cols)]
    else:
        reads, valid = _read_windows(info, plan.windows, auxes, cancelled, smaller_tile=label_tile is not None)
        windows = plan.windows
    LOG.info("training reads %s: %s px of the %d x %d px scene (%d labelled px)",
             "the whole scene" if whole else f"{len(windows)} label windows", f"{sum(w.pixels for w in windows):,}",
             info.rows, info.cols, int(labelled.sum()))
    aux_stretches: List[Stretch] = []
    if auxes:
        if not valid.any():
            raise ValueError(f"no pixel is valid in the hyperspectral raster and every auxiliary raster together; "
                             f"check their nodata values and that {', '.join(aux)} cover {raster}")
        LOG.info("%d of the %d pixels read are valid in every modality", int(valid.sum()),
                 sum(w.pixels for w in windows))
        aux_stretches = _fit_aux_stretches(windows, reads, (info.rows, info.cols), len(auxes))
    ids, table = drop_unusable_classes(ids, table, valid)
    options = options.resolved(class_indices(ids, table), valid)
    split = make_split(info, class_indices(ids, table), table, valid, seed, options, class_field, val_ids)
    counts = {name: pixels_per_class(getattr(split, name), len(table.ids)) for name in ("train", "validation", "test")}
    for cid, name, n_train, n_val, n_test in zip(table.ids, table.names, *counts.values()):
        LOG.info("class %s %-20s train %5d  validation %5d  test %6d", cid, name, n_train, n_val, n_test)
    if not any(counts["validation"]):
        raise ValueError("the split left no validation pixel (every class is too small); label more pixels or "
                         "give validation ROIs")
    patches = []
    for k, (w, (raw, window_valid, aux_data)) in enumerate(zip(windows, reads)):
        own = np.ones(w.shape, bool) if whole else plan.owned(k)
        maps = [np.where(own, getattr(split, name)[w.slices], -1) for name in ("train", "validation", "test")]
        stacked = (np.concatenate([apply_stretch(values, window_valid, s) for values, s in zip(aux_data, aux_stretches)])
                   if auxes else None)
        image = apply_stretch(raw, window_valid, stretch)
        # A crop model makes no guide from the spectra as read: no second copy of the cube for it.
        patches.append(Patch(w, image, raw if crop is None else image, window_valid, *maps, aux=stacked,
                             scene=(info.rows, info.cols)))
    classify_tiling = None if whole or crop is not None else {"tile": plan.tile, "overlap": plan.overlap}
    return _Scene(info, table, split, counts, stretch, patches, "whole scene" if whole else "label windows",
                  classify_tiling, options, auxes, aux_stretches)


def _assess(net: Any, scene: _Scene, result: TrainResult) -> Tuple[str, Dict[str, Any]]:
    """Metrics of the kept model on the test pixels (on the validation pixels when there is no test set),
    predicted patch by patch as validation was."""
    evaluated_on = "test" if (scene.split.test >= 0).any() else "validation"
    class_ids = np.asarray(scene.table.ids, dtype=np.int64)
    reference, predicted = [], []
    device = torch.device(result.device)
    crops = is_crop_model(net)
    if crops:
        net.to(device)
    for patch in scene.patches:
        index = patch.test if evaluated_on == "test" else patch.validation
        if not (index >= 0).any():
            continue
        if crops:                                         # averaged crops, as classification predicts them
            classes = predict_at(net, patch.image, patch.aux, index >= 0, device=device,
                                 autocast=lambda: choose_precision(device).autocast(device),
                                 origin=(patch.window.row0, patch.window.col0), scene=patch.scene_shape)
        else:
            probabilities, _ = predict_array(net, patch.image, patch.valid, device=result.device,
                                             **result.validation_tiling)
            classes = probabilities.argmax(0)
        reference.append(class_ids[index[index >= 0]])
        predicted.append(class_ids[classes[index >= 0]])
    net.to("cpu")
    metrics = accuracy(np.concatenate(reference), np.concatenate(predicted), scene.table.ids)
    return evaluated_on, metrics.as_dict(dict(zip(scene.table.ids, scene.table.names)))


def restyle_classes(table: ClassTable, style: Dict[int, Tuple[Optional[str], Color]],
                    keep_names: bool) -> ClassTable:
    """``table`` with the colours (and, unless ``keep_names``, the names) that ``style`` gives by class id."""
    names, colors = list(table.names), list(table.colors)
    for i, cid in enumerate(table.ids):
        name, color = style.get(int(cid), (None, None))
        if name and not keep_names:
            names[i] = name
        if color is not None:
            colors[i] = tuple(int(c) for c in color[:3])
    return ClassTable(list(table.ids), names, colors)


def _crop_size(model: str, overrides: Optional[Dict[str, Any]]) -> int:
    """The crop side a crop model will be built with (its option, else its default)."""
    return int(dict(default_config(model), **(overrides or {}))["crop"])


@gives_back_heap                        # QGIS lives on after the job (engine.memory)
def train_from_files(raster: str, out_model: str, labels: Optional[str] = None, rois: Optional[str] = None,
                     class_field: Optional[str] = None, name_field: Optional[str] = None,
                     model: str = "cssmamba", epochs: Optional[int] = None, device: str = "auto", seed: int = 0,
                     bands: Optional[List[int]] = None, lr: Optional[float] = None,
                     overrides: Optional[Dict[str, Any]] = None, split: Optional[SplitOptions] = None,
                     patience: Optional[int] = None, threads: Optional[int] = None,
                     memory_budget_mb: Optional[int] = None,
                     class_style: Optional[Dict[int, Tuple[Optional[str], Color]]] = None,
                     other_outputs: Optional[Dict[str, Optional[str]]] = None,
                     windows_per_step: int = 1, sampling: str = "auto", aux: Optional[Sequence[str]] = None,
                     aux_resampling: Optional[Sequence[str]] = None, clip_weights: Optional[str] = None,
                     use_clip: bool = True, label_tile: Optional[int] = None, progress: Optional[Progress] = None,
                     cancelled: Optional[Cancelled] = None) -> Tuple[Dict[str, Any], TrainResult]:
    """Train ``model`` on ``raster`` with labels (raster) or ROIs (vector + class field); save it to ``out_model``.

    The one training job of every model: with ``aux`` (auxiliary rasters on the raster's area: LiDAR,
    SAR; ``aux_resampling`` one method for all or one per raster, default bilinear) a multi-modal model
    (M3amba) trains on the raster and them, read window by window like the raster, with a local CLIP file
    (``clip_weights``) or the documented ablation without CLIP (``use_clip`` False); it trains on crops in
    minibatches (``train.train_patches``), so windows per step are refused for it. ``epochs`` / ``lr``
    None: the model's protocol (200 epochs at 3e-4 for CSSMamba and MambaHSI, multimodal.EPOCHS /
    LEARNING_RATE for M3amba).

    ``bands``: 1-based file bands to train on (None: every band but alpha and bbl=0 bands); the model
    file records them, so classification reads the same ones. ``class_style``: {class id: (name or None,
    (r, g, b))}, e.g. from the ROI layer's categorised style in QGIS, so the class map keeps the colours
    the analyst chose; it replaces the generated colours, and the names where the labels carry none.
    Returns (metadata, TrainResult). The model file is written only when training finished: a cancel
    (``TrainingCancelled``) or an error leaves no file. The kept (best-validation) model is assessed on
    the split's test pixels; those metrics go into the metadata's provenance. ``threads`` caps torch's
    and the native libraries' thread pools (CSSMamba's k-means prior) for the whole job (None: their
    defaults); on a busy machine an oversubscribed OpenMP pool is many times slower than one thread.
    ``other_outputs``: {what: path} of the caller's further outputs of the same run (a report, a class
    map), so that no output of the run can overwrite an input or another output (``paths.check_distinct``).
    ``windows_per_step``: TrainConfig's gradient accumulation. ``sampling``: what training reads and steps
    over: 'windows', the classification tiles that hold labelled pixels (sampler.label_windows: the cost
    follows the labels, not the scene; the model file records the tiling for classification), the
    'whole' scene, or 'auto' (the whole scene when classification predicts it in one tile and it fits in
    memory; the log says which). ``label_tile``: the side of those tiles for CSSMamba and MambaHSI (None:
    sampler.LABEL_TILE, 64 px; larger tiles cost training time in proportion to their pixels, and 128 px did
    not raise CSSMamba's accuracy on EnMAP, bench/results/label_windows.md). Under torchrun
    (engine/training/distributed.py) only rank 0 writes the model file.
    """
    split = split or SplitOptions()
    multimodal = bool(aux) or model in MULTIMODAL_NAMES
    methods: List[str] = []
    clip = None
    if multimodal:
        methods = check_modalities(model, aux, aux_resampling, overrides, windows_per_step)
        clip = clip_config(clip_weights, use_clip)
    epochs = (MULTIMODAL_EPOCHS if multimodal else HSI_EPOCHS) if epochs is None else epochs
    lr = (MULTIMODAL_LEARNING_RATE if multimodal else HSI_LEARNING_RATE) if lr is None else lr
    started = utc_now()
    extra_inputs = {"auxiliary raster": list(aux), "CLIP weights": clip_weights} if multimodal else {}
    check_distinct(training_inputs(raster, labels, rois, split, **extra_inputs),
                   dict(other_outputs or {}, **{"model file": out_model}))
    load = phase_progress(progress, 0.0, 0.05)
    load(0.0, f"reading {raster}" + (f" and {len(aux)} auxiliary raster(s)" if multimodal else ""))
    with threadpool_limits(limits=threads):
        try:
            scene = _prepare(raster, labels, rois, class_field, name_field, seed, split, bands, sampling, cancelled,
                             list(aux or ()), methods, crop=_crop_size(model, overrides) if multimodal else None,
                             label_tile=label_tile)
        except ReadCancelled as error:
            raise TrainingCancelled(str(error)) from None
        if class_style:
            scene.table = restyle_classes(scene.table, class_style, keep_names=name_field is not None)
        config = TrainConfig(epochs=epochs, lr=lr, device=device, seed=seed, patience=patience, threads=threads,
                             memory_budget_mb=memory_budget_mb, windows_per_step=windows_per_step,
                             class_ids=tuple(scene.table.ids))
        overrides = dict(overrides or {})
        largest = max(scene.patches, key=lambda p: p.window.pixels)
        guides: List[Any] = []                          # make_guide once for every size tried

        def build(size: Dict[str, Any]) -> Any:
            if multimodal:
                return build_multimodal_model(model, scene.info.bands, largest.aux.shape[0], len(scene.table.ids),
                                              use_clip=use_clip, clip=clip, **{**size, **overrides})
            return build_model(model, scene.info.bands, len(scene.table.ids), **{**overrides, **size})

        def fits(size: Dict[str, Any]) -> bool:
            candidate = build(size)
            if multimodal:
                return crop_batch_fits(candidate, config)
            if not guides:
                trains = [np.where(p.valid, p.train, -1) for p in scene.patches]
                guides.append(make_guides(candidate, scene.patches, trains)[scene.patches.index(largest)])
            return whole_scene_fits(candidate, largest.image, guides[0], largest.valid, config)

        group = distributed.current()
        if group is None or group.rank == 0:
            size, why = choose_size(model, resolve_device(device), overrides, fits)
        if group is not None:                           # every rank builds rank 0's size, or DDP cannot start
            size, why = distributed.broadcast_object((size, why) if group.rank == 0 else None)
        torch.manual_seed(seed)  # model initialisation is part of the seeded run
        net = build(size)
        checkpoint = net.load_clip_weights(clip_weights) if multimodal and use_clip else None
        if "dim" in net.config:
            LOG.info("model %s at width %s%s (%s)", model, net.config.get("dim"),
                     f", depth {net.config['depth']}" if "depth" in net.config else "", why)
        bands_text = f"{scene.info.bands} + {largest.aux.shape[0]} bands" if multimodal else f"{scene.info.bands} bands"
        load(1.0, f"{model}: {sum(p.numel() for p in net.parameters() if p.requires_grad):,} trainable parameters, "
                  f"{bands_text}, {len(scene.table.ids)} classes, {sum(scene.counts['train'])} training pixels, "
                  f"training on {scene.sampling}" + (f", CLIP {'on' if use_clip else 'off (ablation)'}"
                                                     if multimodal else ""))
        result = train_patches(net, scene.patches, config, progress=phase_progress(progress, 0.05, 0.95),
                               cancelled=cancelled)
        assess = phase_progress(progress, 0.95, 1.0)
        assess(0.0, "assessing the kept model")
        # Under torchrun only rank 0 assesses and writes; the others end here with its training result.
        evaluated_on, metrics = _assess(net, scene, result) if distributed.is_main() else ("test", {})

    info, table = scene.info, scene.table
    sources = {"raster": os.path.abspath(raster), **({"aux": [os.path.abspath(p) for p in aux]} if multimodal else {}),
               "labels": absolute_or_none(labels), "rois": absolute_or_none(rois), "class_field": class_field,
               "name_field": name_field}
    metadata = {
        "format_version": FORMAT_VERSION,
        "model": {"name": model, "config": dict(net.config)},
        "bands": {"indices": list(info.band_indices), "names": list(info.band_names),
                  "wavelengths": None if info.wavelengths is None else list(info.wavelengths),
                  "nodata": list(info.nodata), "file_count": info.file_bands},
        "normalisation": scene.stretch.to_dict(),
        "classes": classes_metadata(table),
        "provenance": training_provenance(result, sources, scene.options or split, scene.counts, seed, epochs, lr,
                                          evaluated_on, metrics, started),
    }
    metadata["provenance"]["sampling"] = {"mode": scene.sampling, "windows": [list(p.window) for p in scene.patches]}
    if scene.tiling:
        metadata["tiling"] = scene.tiling        # classification repeats the tiles the model was trained on
    if multimodal:
        metadata.update(modalities_metadata(raster, info, scene.stretch, scene.auxes, scene.aux_stretches),
                        clip=None if checkpoint is None else {"sha256": checkpoint.sha256, "path": checkpoint.path,
                                                              "known_as": checkpoint.known_as})
        metadata["provenance"].update(crop_recipe_metadata(net))
    if distributed.is_main():
        save_model(out_model, net, metadata)
        assess(1.0, f"model written to {out_model}: {evaluated_on} OA {metrics['overall_accuracy']:.4f}")
    return metadata, result


@gives_back_heap
def classify_file(model_path: str, raster: str, out: str, confidence: Optional[str] = None,
                  clusters: Optional[str] = None, probabilities: Optional[str] = None, tile: Optional[int] = None,
                  overlap: Optional[int] = None, device: str = "auto", threads: Optional[int] = None,
                  bands: Optional[List[int]] = None, aux: Optional[Sequence[str]] = None,
                  progress: Optional[Progress] = None, cancelled: Optional[Cancelled] = None) -> Dict[str, str]:
    """Classify ``raster`` with the model file; returns {output kind: path written}.

    The one classification job of every model: a multi-modal model file (M3amba) needs ``aux``, its
    auxiliary rasters in the training order (``multimodal.predict_multimodal_raster``, which has no
    cluster map and predicts on its own crops, so ``clusters``, ``tile`` and ``overlap`` do not apply).

    ``bands``: the raster's file bands to read, in the model's order, when its band layout differs from
    the training raster's and wavelengths cannot match them (``bandmatch.choose_bands``).

    Refused with ValueError before any work: a raster whose bands differ from the training raster's,
    an output path that cannot be written. Outputs are written under temporary names and renamed at
    the end, so a cancel (PredictionCancelled) leaves none behind. ``threads`` caps the CPU thread pools
    (None: the libraries' defaults); tile/overlap None: the tiles a model trained on label windows was
    trained on (the model file's "tiling"), else predict's measured defaults.
    """
    if aux and (tile is not None or overlap is not None):
        raise ValueError("a multi-modal model predicts on overlapping crops of its own: leave out the tile size and "
                         "the overlap")
    net, metadata = load_model(model_path)
    trained_on = metadata.get("tiling") or {}         # a model trained on label windows: their tiles
    sizes = {key: value for key, value in (("tile", tile if tile is not None else trained_on.get("tile")),
                                           ("overlap", overlap if overlap is not None else trained_on.get("overlap")))
             if value is not None}
    with threadpool_limits(limits=threads):
        return predict_raster(net, metadata, raster, out, out_confidence=confidence, out_clusters=clusters,
                              out_probabilities=probabilities, device=device, bands=bands, aux=aux,
                              inputs={"model file": model_path}, progress=progress, cancelled=cancelled, **sizes)
