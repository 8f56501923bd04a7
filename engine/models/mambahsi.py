"""MambaHSI (Li et al., IEEE TGRS 2024), the whole-scene baseline of MODELS.md §3.

embedding -> 3 × (spatial ‖ spectral Mamba, softmax-fused) with 2×2 average pooling after stages 1
and 2 -> per-pixel head -> bilinear upsampling back to the input size, so the logits are full
resolution like every engine model's.
"""

from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn

from .base import HSIClassifier, ModelOutput
from .blocks import GROUP_NORM_GROUPS, ClassifierHead, Embedding, SoftmaxFusion, SpatialMamba, SpectralMamba

__all__ = ["MambaHSI", "SpatialSpectralBlock"]

N_STAGES = 3
HEAD_WIDTH = 128


class SpatialSpectralBlock(nn.Module):
    """One MambaHSI stage (the reference's ``BothMamba``, §2.5–§2.7): (B, D, H, W) -> (B, D, H, W).

    Y = X + w₀·SpatialMamba(X) + w₁·SpectralMamba(X), w = softmax(θ).
    """

    def __init__(self, dim: int, spectral_groups: int = 4, scan_backend: Optional[str] = None) -> None:
        super().__init__()
        self.spatial = SpatialMamba(dim, scan_backend=scan_backend)
        self.spectral = SpectralMamba(dim, groups=spectral_groups, scan_backend=scan_backend)
        self.fusion = SoftmaxFusion()

    def forward(self, x: Tensor) -> Tensor:
        return self.fusion(x, self.spatial(x), self.spectral(x))


def _halve(x: Tensor) -> Tensor:
    """2×2 average pooling with floor (§3.1) on (B, D, H, W); an axis already of size 1 is kept.

    Plain floor pooling would shrink a 1-pixel axis to 0, so small tiles or strips (e.g. 3×1) keep
    that axis instead of crashing; inputs of at least 4×4 pool exactly as in the reference.
    """
    h, w = x.shape[-2:]
    return F.avg_pool2d(x, kernel_size=(2 if h >= 2 else 1, 2 if w >= 2 else 1))


class MambaHSI(HSIClassifier):
    """MambaHSI classifier: (B, Nb, H, W) stretched reflectance -> logits (B, Ncls, H, W).

    ``pooling=False`` keeps all stages at full resolution (then the upsampling is the identity).
    Parameters at the defaults: 412,239 for Pavia University (103 bands, 9 classes).
    """

    name = "mambahsi"

    def __init__(
        self,
        in_bands: int,
        n_classes: int,
        dim: int = 128,
        spectral_groups: int = 4,
        pooling: bool = True,
        scan_backend: Optional[str] = None,
    ) -> None:
        for key, value, minimum in (("in_bands", in_bands, 1), ("n_classes", n_classes, 1),
                                    ("dim", dim, 1), ("spectral_groups", spectral_groups, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"MambaHSI: {key} must be an int >= {minimum}, got {value!r}")
        if dim % GROUP_NORM_GROUPS:
            raise ValueError(f"MambaHSI: dim must be a multiple of {GROUP_NORM_GROUPS} (GroupNorm groups), got {dim}")
        super().__init__(dict(in_bands=in_bands, n_classes=n_classes, dim=dim, spectral_groups=spectral_groups,
                              pooling=bool(pooling), scan_backend=scan_backend))
        self.in_bands = in_bands
        self.pooling = bool(pooling)
        self.embedding = Embedding(in_bands, dim)
        self.stages = nn.ModuleList(
            SpatialSpectralBlock(dim, spectral_groups, scan_backend) for _ in range(N_STAGES)
        )
        self.head = ClassifierHead(dim, n_classes, hidden=HEAD_WIDTH, kernel_size=1)

    def forward(self, x: Tensor, guide: Optional[Tensor] = None, valid: Optional[Tensor] = None) -> ModelOutput:
        """x (B, Nb, H, W) -> ModelOutput(logits (B, Ncls, H, W)); ``guide`` and ``valid`` are unused: like the
        reference, every pixel (nodata as the stretch's 0) takes part in the scans."""
        if x.dim() != 4 or x.shape[1] != self.in_bands:
            raise ValueError(
                f"MambaHSI was built for {self.in_bands} bands and expects (batch, {self.in_bands}, height, width), "
                f"got shape {tuple(x.shape)}"
            )
        features = self.embedding(x)
        for index, stage in enumerate(self.stages):
            features = stage(features)
            if self.pooling and index < N_STAGES - 1:
                features = _halve(features)
        logits = self.head(features)
        if logits.shape[-2:] != x.shape[-2:]:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=True)
        return ModelOutput(logits)
