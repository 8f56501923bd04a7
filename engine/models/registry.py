"""Model names -> classes and default configurations, the one place that knows which models exist.

A model's ``config`` (its constructor kwargs, see base.py) is what the model file stores, so
``build_model(name, **model.config)`` rebuilds the architecture. Models are imported on first use:
the CLI and the plugin list names without paying for every model's imports.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Dict, Type

from .base import HSIClassifier

__all__ = ["MODEL_NAMES", "default_config", "build_model"]

MODEL_NAMES = ("cssmamba", "mambahsi")

_CLASS_PATHS = {"cssmamba": (".cssmamba", "CSSMamba"), "mambahsi": (".mambahsi", "MambaHSI")}
_DATA_KWARGS = ("in_bands", "n_classes")  # fixed by the data, not by the user's configuration

# The plugin's defaults where they differ from the papers' (the constructors keep the papers' values).
# Chosen by measurement (bench/results/speed_train.md, 2-core CPU, EnMAP Potsdam 192 x 160 x 218):
# CSSMamba at the paper's width 128 needs about 16 s per epoch (53 min for 200 epochs); width 32 with
# 2 x 2 pooling (MODELS.md §4.1's option, mode-pooled guide maps) needs 1.7 s (5.8 min), inside the
# 10-minute target, while width 32 without pooling needs 3.9 s (13 min). MambaHSI gets the same width
# so that the baseline comparison is like for like. Accuracy at these defaults: bench/results/accuracy.md.
PLUGIN_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "cssmamba": {"dim": 32, "pooling": True},
    "mambahsi": {"dim": 32},
}


def _model_class(name: str) -> Type[HSIClassifier]:
    if name not in _CLASS_PATHS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    module, class_name = _CLASS_PATHS[name]
    return getattr(importlib.import_module(module, __package__), class_name)


def _options(name: str) -> Dict[str, inspect.Parameter]:
    """The constructor kwargs of model ``name`` a user may set: every one except in_bands/n_classes."""
    parameters = inspect.signature(_model_class(name)).parameters
    return {key: p for key, p in parameters.items()
            if key not in _DATA_KWARGS and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def default_config(name: str) -> Dict[str, Any]:
    """Default options of model ``name`` (without in_bands and n_classes), e.g. {'dim': 32, ...}."""
    return {**{key: p.default for key, p in _options(name).items()}, **PLUGIN_DEFAULTS.get(name, {})}


def build_model(name: str, in_bands: int, n_classes: int, **overrides: Any) -> HSIClassifier:
    """Model ``name`` for ``in_bands`` bands and ``n_classes`` classes, defaults replaced by ``overrides``.

    Raises ValueError for an unknown name or option, listing the valid ones.
    """
    options = _options(name)
    unknown = sorted(set(overrides) - set(options))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for model {name!r}; valid options: {', '.join(options)}"
        )
    config = {**PLUGIN_DEFAULTS.get(name, {}), **overrides}
    return _model_class(name)(in_bands=in_bands, n_classes=n_classes, **config)
