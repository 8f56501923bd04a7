"""What every HSI classifier in the engine offers the trainer, the predictor and the model file.

A model maps a normalised image (B, Nb, H, W) to per-pixel class logits (B, Ncls, H, W) at full
resolution. Models that learn from per-pixel guidance computed from the training labels (CSSMamba's
static cluster prior, MODELS.md §4.2) build it once with ``make_guide`` and receive it, cropped like the
labels, in ``forward``; inference never needs it, so a new scene classifies without labels. The trainer and
the predictor also pass ``valid``, the pixels that hold data: a model that treats nodata apart (CSSMamba
routes it to no cluster) must not guess it from the values, since a valid pixel at or below the stretch's
2 % limit in every band is all zero after the stretch, like nodata.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

import numpy as np
from torch import Tensor, nn

__all__ = ["ModelOutput", "HSIClassifier"]


@dataclass
class ModelOutput:
    logits: Tensor                      # (B, Ncls, H, W)
    aux_loss: Optional[Tensor] = None   # scalar, already weighted (CSSMamba: 0.1 · stage-mean L_a); None if none
    clusters: Optional[Tensor] = None   # (B, H, W) int64 cluster of each pixel (last stage's LCM), None if none


class HSIClassifier(nn.Module):
    """Base class: subclasses set ``name`` and keep their constructor kwargs in ``self.config``.

    ``self.config`` must be JSON-serialisable and rebuild the same architecture through
    ``engine.models.build_model(name, **config)``; the model file stores it.

    ``forward`` must give the same logits in training mode (with the guide) as in eval mode (without):
    no dropout, no batch statistics. The trainer relies on it to score the previous epoch's weights on
    the validation pixels from the next training forward instead of an extra pass. State a training
    forward changes (buffers, such as CSSMamba's EMA prototypes) may change only after the logits.
    """

    name: str = ""

    def __init__(self, config: Dict[str, Any]) -> None:
        super().__init__()
        self.config = dict(config)

    def make_guide(self, raw: np.ndarray, train_labels: np.ndarray, valid: np.ndarray) -> Optional[Tensor]:
        """Per-pixel guidance from the training labels only: (C_g, H, W) int64, or None if unused.

        raw: (Nb, H, W) float32 spectra as read (scale/offset applied, invalid pixels 0);
        train_labels: (H, W) int64 class index 0..Ncls-1 on training pixels, -1 elsewhere;
        valid: (H, W) bool, False under nodata.
        """
        return None

    def forward(self, x: Tensor, guide: Optional[Tensor] = None,
                valid: Optional[Tensor] = None) -> ModelOutput:  # pragma: no cover - abstract
        """x (B, Nb, H, W) -> ModelOutput; guide as ``make_guide`` gives it, cropped like x (training only);
        valid (B, H, W) bool, False under nodata (None: the model may take every all-zero pixel for nodata,
        which is how ``apply_stretch`` fills it)."""
        raise NotImplementedError
