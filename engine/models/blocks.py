"""Building blocks shared by MambaHSI and CSSMamba (MODELS.md §2.3–§2.7).

Feature maps are (B, D, H, W) throughout, except ``RMSNorm``, which normalises token sequences
(..., D) as CSSMamba's spatial branch uses it. Every Mamba-bearing block takes ``scan_backend`` and
hands it to its ``Mamba`` unchanged (None = the scan's own default).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ssm.mamba import Mamba

__all__ = ["Embedding", "RMSNorm", "SpatialMamba", "SpectralMamba", "SoftmaxFusion", "ClassifierHead"]

GROUP_NORM_GROUPS = 4  # GN₄ everywhere in §2–§4


def _gn_silu_residual(x: Tensor, branch_out: Tensor, norm: nn.GroupNorm) -> Tensor:
    """§2.4: X + SiLU(GN₄(M(X))), all (B, D, H, W)."""
    return x + F.silu(norm(branch_out))


def _check_feature_map(x: Tensor, dim: int, who: str) -> None:
    """ValueError unless x is (B, dim, H, W): a wrong layout would otherwise fail deep inside Mamba."""
    if x.dim() != 4 or x.shape[1] != dim:
        raise ValueError(f"{who} expects a (batch, {dim}, height, width) feature map, got shape {tuple(x.shape)}")


class Embedding(nn.Module):
    """Per-pixel spectral embedding Conv1×1 (Nb→D) → GN₄ → SiLU: (B, Nb, H, W) -> (B, D, H, W)."""

    def __init__(self, in_bands: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_bands, dim, kernel_size=1)
        self.norm = nn.GroupNorm(GROUP_NORM_GROUPS, dim)

    def forward(self, x: Tensor) -> Tensor:
        return F.silu(self.norm(self.proj(x)))


class RMSNorm(nn.Module):
    """RMSNorm over the last axis, CSSMamba's variant (§2.3): w⊙x / (‖x‖₂/√d + eps).

    eps is added to the RMS, not under the square root, so checkpoints stay comparable with the
    reference. Shape (..., d) -> (..., d).
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        rms = x.norm(dim=-1, keepdim=True) * x.shape[-1] ** -0.5
        return self.weight * x / (rms + self.eps)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class SpatialMamba(nn.Module):
    """SpaMamba (§2.5): one Mamba(D) over each image's pixels in raster order, then the §2.4 residual.

    (B, D, H, W) -> (B, D, H, W). Each image of the batch is its own sequence of L = H·W tokens
    (the reference instead joins the batch into one sequence; §2.5 [design]).
    """

    def __init__(self, dim: int, scan_backend: Optional[str] = None) -> None:
        super().__init__()
        self.dim = dim
        self.mamba = Mamba(dim, scan_backend=scan_backend)
        self.norm = nn.GroupNorm(GROUP_NORM_GROUPS, dim)

    def forward(self, x: Tensor) -> Tensor:
        _check_feature_map(x, self.dim, "SpatialMamba")
        b, d, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, L, D), token i = row·W + col
        scanned = self.mamba(tokens).transpose(1, 2).reshape(b, d, h, w)
        return _gn_silu_residual(x, scanned, self.norm)


class SpectralMamba(nn.Module):
    """SpeMamba (§2.6): per pixel, a Mamba over G tokens made of consecutive channel groups.

    (B, D, H, W) -> (B, D, H, W). Token k of a pixel holds channels [k·D/G, (k+1)·D/G); the
    B·H·W pixels are independent sequences of length G, run as one Mamba batch (without a gradient,
    in batches of PREDICT_PIXELS: a 512 px tile's branch held about 0.7 GB of buffers at once).
    """

    PREDICT_PIXELS = 32_768

    def __init__(self, dim: int, groups: int = 4, scan_backend: Optional[str] = None) -> None:
        super().__init__()
        if groups <= 0 or dim % groups:
            raise ValueError(
                f"SpectralMamba needs dim divisible by groups so the residual shapes match; got dim={dim}, "
                f"groups={groups}. Choose dim as a multiple of groups (e.g. dim=128, groups=4)."
            )
        self.dim = dim
        self.groups = groups
        self.mamba = Mamba(dim // groups, scan_backend=scan_backend)
        self.norm = nn.GroupNorm(GROUP_NORM_GROUPS, dim)

    def forward(self, x: Tensor) -> Tensor:
        _check_feature_map(x, self.dim, "SpectralMamba")
        b, d, h, w = x.shape
        # (B, D, H, W) -> (B·H·W, G, D/G): one length-G sequence of channel groups per pixel.
        tokens = x.permute(0, 2, 3, 1).reshape(b * h * w, self.groups, d // self.groups)
        if torch.is_grad_enabled():
            scanned = self.mamba(tokens, reset=self._first_token_reset(tokens))
        else:  # the pixels are independent: in slices, prediction's buffers are a slice's, not the tile's
            scanned = torch.cat([self.mamba(part) for part in tokens.split(self.PREDICT_PIXELS)])
        return _gn_silu_residual(x, scanned.reshape(b, h, w, d).permute(0, 3, 1, 2), self.norm)

    @staticmethod
    def _first_token_reset(tokens: Tensor) -> Optional[Tensor]:
        """(N, G) reset mask marking only token 0 on the CPU; None on CUDA. Training only (with a gradient).

        Every row starts its sequence at token 0 anyway, so the mask changes no value. It makes Mamba
        run its causal conv as shift-and-add instead of ``nn.Conv1d``, whose depthwise backward on CPU
        is slow for tens of thousands of length-4 rows: at D=128 on 192×160 the mask cut one
        forward+backward from 2.0 to 1.25 CPU-seconds (single thread). Without a gradient Mamba shifts
        and adds on the CPU anyway; on CUDA a mask would keep the scan off mamba-ssm's fused kernel,
        and cuDNN's conv is fast.
        """
        if tokens.is_cuda:
            return None
        reset = torch.zeros(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        reset[:, 0] = True
        return reset


class SoftmaxFusion(nn.Module):
    """§2.7: Y = X + w₀·spa + w₁·spe with w = softmax(θ), θ initialised to (0.5, 0.5).

    Both branches already contain "+X", so the identity weight totals 2, as in the reference.
    """

    def __init__(self) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.tensor([0.5, 0.5]))

    def forward(self, x: Tensor, spa: Tensor, spe: Tensor) -> Tensor:
        w = torch.softmax(self.theta, dim=0)
        return x + w[0] * spa + w[1] * spe


class ClassifierHead(nn.Module):
    """Per-pixel classifier Conv(D→hidden) → GN₄ → SiLU → Conv1×1 (hidden→Ncls): (B, D, H, W) -> (B, Ncls, H, W).

    MambaHSI uses a 1×1 first conv (§3.1), CSSMamba a 3×3 with padding 1 (§4.1); ``kernel_size`` picks.
    """

    def __init__(self, dim: int, n_classes: int, hidden: int = 128, kernel_size: int = 1) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"ClassifierHead kernel_size must be odd to keep H and W, got {kernel_size}")
        self.hidden = nn.Conv2d(dim, hidden, kernel_size=kernel_size, padding=kernel_size // 2)
        self.norm = nn.GroupNorm(GROUP_NORM_GROUPS, hidden)
        self.classify = nn.Conv2d(hidden, n_classes, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classify(F.silu(self.norm(self.hidden(x))))
