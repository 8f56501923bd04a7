"""Model names -> classes and default configurations, the one place that knows which models exist.

A model's ``config`` (its constructor kwargs, see base.py) is what the model file stores, so
``build_model(name, **model.config)`` rebuilds the architecture (``build_multimodal_model`` for the
models that fuse the hyperspectral raster with auxiliary rasters). Models are imported on first use:
the CLI and the plugin list names without paying for every model's imports.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Dict, Type

from torch import nn

from .base import HSIClassifier

__all__ = ["MODEL_NAMES", "MULTIMODAL_NAMES", "CLASSICAL_NAMES", "PLUGIN_DEFAULTS", "paper_config", "default_config", "build_model",
           "build_multimodal_model"]

MODEL_NAMES = ("cssmamba", "mambahsi")     # hyperspectral raster only (HSIClassifier)
MULTIMODAL_NAMES = ("m3amba",)             # hyperspectral raster + auxiliary rasters (LiDAR, SAR)
CLASSICAL_NAMES = ("rf", "svm")            # HSIClassifiers fitted by scikit-learn, not by gradient steps

_CLASS_PATHS = {"cssmamba": (".cssmamba", "CSSMamba"), "mambahsi": (".mambahsi", "MambaHSI"),
                "m3amba": (".m3amba", "M3amba"), "rf": (".classical", "RandomForest"),
                "svm": (".classical", "SupportVectorMachine")}
# fixed by the data, not by the user's configuration
_DATA_KWARGS = ("in_bands", "n_classes", "hsi_bands", "aux_bands")

# The plugin's defaults where they differ from the papers' (the constructors keep the papers' values).
# Chosen by measurement (bench/results/speed_train.md, 2-core CPU, EnMAP Potsdam 192 x 160 x 218):
# CSSMamba at the paper's width 128 needed about 23 s per epoch (76 min for 200 epochs, with the earlier
# trainer); width 32 in the paper's layout (no pooling, MODELS.md §4.1) trains 200 epochs in 8.1 min,
# inside the 10-minute target. The 2 x 2 pooling option is twice as fast but cost 5 to 8 points of OA
# on EnMAP and MUUFL (bench/results/accuracy_pooled.md), and width 16 unpooled, as fast as pooled
# width 32, lost 7 points on EnMAP's 218 bands
# (accuracy_enmap_cssmamba_unpooled_dim16.md), so neither is the default. MambaHSI gets the same width
# so that the baseline comparison is like for like. Accuracy at these defaults: bench/results/accuracy.md.
# M3amba (paper: width 384, 9 blocks per stream) is measured on the MUUFL crop (90 x 90 px, 64 + 2 bands,
# 144 training crops, --no-clip, 1 thread, 2-core CPU shared with other jobs, lr 1e-3): width 16 / depth 1
# about 6 s per epoch, 16 / 2 10-18 s (with the machine's load), 32 / 1 about 11 s, 32 / 2 about 20 s;
# after 20 epochs all reached test OA 0.87-0.88 (one seed). Width 16 with depth 2 keeps 100 epochs
# within 17-30 min, and a second block is the least depth at which Cross-SS2D reads a fusion state that
# already holds both modalities (the first block's is z0, which is 0 without CLIP).
PLUGIN_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "cssmamba": {"dim": 32},
    "mambahsi": {"dim": 32},
    "m3amba": {"dim": 16, "depth": 2},
}


def _model_class(name: str) -> Type[nn.Module]:
    if name not in _CLASS_PATHS:
        raise ValueError(f"unknown model {name!r}; choose one of "
                         f"{', '.join(MODEL_NAMES + CLASSICAL_NAMES + MULTIMODAL_NAMES)}")
    module, class_name = _CLASS_PATHS[name]
    return getattr(importlib.import_module(module, __package__), class_name)


def _options(name: str) -> Dict[str, inspect.Parameter]:
    """The constructor kwargs of model ``name`` a user may set: every one except the data sizes."""
    parameters = inspect.signature(_model_class(name)).parameters
    return {key: p for key, p in parameters.items()
            if key not in _DATA_KWARGS and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def paper_config(name: str) -> Dict[str, Any]:
    """The constructor's defaults of model ``name`` (the paper's configuration), without the data sizes."""
    return {key: p.default for key, p in _options(name).items()}


def default_config(name: str) -> Dict[str, Any]:
    """Default options of model ``name`` (without the data sizes), e.g. {'dim': 32, ...}."""
    return {**paper_config(name), **PLUGIN_DEFAULTS.get(name, {})}


def build_model(name: str, in_bands: int, n_classes: int, **overrides: Any) -> HSIClassifier:
    """Model ``name`` for ``in_bands`` bands and ``n_classes`` classes, defaults replaced by ``overrides``.

    Raises ValueError for an unknown name or option, listing the valid ones.
    """
    if name in MULTIMODAL_NAMES:
        raise ValueError(f"{name} is a multi-modal model: it needs auxiliary rasters (build_multimodal_model)")
    return _model_class(name)(in_bands=in_bands, n_classes=n_classes, **_config(name, overrides))


def build_multimodal_model(name: str, hsi_bands: int, aux_bands: int, n_classes: int, **overrides: Any) -> nn.Module:
    """Multi-modal model ``name`` for ``hsi_bands`` hyperspectral bands, ``aux_bands`` auxiliary bands (all
    auxiliary rasters stacked) and ``n_classes`` classes; forward(x_hsi, x_aux). ValueError as build_model."""
    if name not in MULTIMODAL_NAMES:
        raise ValueError(f"{name!r} is not a multi-modal model; choose one of {', '.join(MULTIMODAL_NAMES)}")
    return _model_class(name)(hsi_bands=hsi_bands, aux_bands=aux_bands, n_classes=n_classes,
                              **_config(name, overrides))


def _config(name: str, overrides: Dict[str, Any]) -> Dict[str, Any]:
    """The plugin defaults of ``name`` replaced by ``overrides``; an unknown option -> ValueError."""
    options = _options(name)
    unknown = sorted(set(overrides) - set(options))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for model {name!r}; valid options: {', '.join(options)}"
        )
    return {**PLUGIN_DEFAULTS.get(name, {}), **overrides}
