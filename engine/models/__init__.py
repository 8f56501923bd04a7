"""HSI classifiers and the registry that maps a model name to its class and default configuration."""

from .registry import MODEL_NAMES, build_model, default_config

__all__ = ["MODEL_NAMES", "build_model", "default_config"]
