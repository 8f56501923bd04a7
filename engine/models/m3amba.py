"""M3amba: CLIP-driven multi-modal Mamba for hyperspectral + LiDAR/SAR crops (MODELS.md §5).

Data flow on 32×32 crops (tokens L = 1024, width d):

1. CLIP seed: per modality a 1×1 conv to 3 channels, bicubic resize to the CLIP input, the frozen
   CLIP image encoder (shared), then a modality adapter back to a (B, 32, 32, d) map; z₀ = a_h + a_m.
2. Three streams of ``depth`` blocks: h_i = CrossVSS^h_i(h_{i−1}, z_{i−1}), l_i = CrossVSS^m_i(l_{i−1},
   z_{i−1}), z_i = VSS^f_i(h_i + l_i). A Cross-SS2D scans its stream with the state matrix averaged
   with the fusion stream's and with the fusion stream's input matrix B ("swapped B").
3. Three heads M₁ = head(h), M_f = head(z), M₂ = head(l); inference uses M_f, training
   ``m3amba_loss`` on all three.

Maps are channels-last (B, H, W, d) between blocks; scans are channels-first (B, 4·d_i, L) with the
four directions batched on channels and grouped B/C (G = 4), one ``selective_scan`` call per stream.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ssm.scan import BACKENDS, selective_scan
from .clip import VIT_B_32, ClipCheckpoint, ClipVisionConfig, ClipVisionEncoder, load_clip_weights

__all__ = [
    "ClipAdapter",
    "CrossSS2D",
    "CrossVSSBlock",
    "DirectionalSSM",
    "DropPath",
    "Head",
    "M3amba",
    "PatchEmbed",
    "SS2D",
    "VSSBlock",
    "WEIGHT_DECAY",
    "cross_merge",
    "cross_scan",
    "m3amba_loss",
]

DIRECTIONS = 4
WEIGHT_DECAY = 0.05   # AdamW's decay (MODELS.md §5.6)


def _at_least_fp32(t: Tensor) -> Tensor:
    """Scan inputs are forced to float32 (float64 stays, for exact tests), as §5.3 step 5 asks."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


# --------------------------------------------------------------------------------------------------
# Cross-scan and cross-merge
# --------------------------------------------------------------------------------------------------


def cross_scan(x: Tensor) -> Tensor:
    """(B, C, H, W) → (B, 4, C, L): row-major (k0), column-major (k1, token c·H + r), k0 and k1 reversed."""
    rows = x.flatten(2)
    cols = x.transpose(2, 3).flatten(2)
    return torch.stack([rows, cols, rows.flip(-1), cols.flip(-1)], dim=1)


def cross_merge(y: Tensor, height: int, width: int) -> Tensor:
    """(B, 4, C, L) → (B, C, L) row-major: each direction's output moved back to its pixel and summed.

    The adjoint of ``cross_scan`` (so merge(scan(x)) = 4x).
    """
    b, _, c, length = y.shape
    y0, y1, y2, y3 = y.unbind(1)  # unbind, not indexing: its backward stacks instead of zero-filling 4 copies
    rows = y0 + y2.flip(-1)
    cols = (y1 + y3.flip(-1)).view(b, c, width, height).transpose(2, 3).reshape(b, c, length)
    return rows + cols


# --------------------------------------------------------------------------------------------------
# SS2D and Cross-SS2D
# --------------------------------------------------------------------------------------------------


class DirectionalSSM(nn.Module):
    """One stream's selective-scan parameters for the 4 directions, and their input-dependent part.

    x_proj_weight (4, r+2n, e) rows [δ | B | C]; dt_projs_weight (4, e, r); dt_projs_bias (4, e);
    A_logs (4·e, n); Ds (4·e). Initialised as Mamba's (§5.6): dt log-uniform in [dt_min, dt_max]
    through the bias, A_log = ln(1…n), D = 1.
    """

    def __init__(self, d_inner: int, d_state: int, dt_rank: int, dt_min: float = 0.001, dt_max: float = 0.1,
                 dt_init_floor: float = 1e-4) -> None:
        super().__init__()
        k, e, n, r = DIRECTIONS, d_inner, d_state, dt_rank
        self.d_inner, self.d_state, self.dt_rank = e, n, r
        bound = e**-0.5  # nn.Linear's default init for a (r+2n, e) projection
        self.x_proj_weight = nn.Parameter(torch.empty(k, r + 2 * n, e).uniform_(-bound, bound))
        self.dt_projs_weight = nn.Parameter(torch.empty(k, e, r).uniform_(-(r**-0.5), r**-0.5))
        tau = torch.exp(torch.rand(k, e) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        tau = tau.clamp(min=dt_init_floor)
        self.dt_projs_bias = nn.Parameter(tau + torch.log(-torch.expm1(-tau)))  # softplus⁻¹(τ)
        self.A_logs = nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(k * e, 1))
        self.Ds = nn.Parameter(torch.ones(k * e))
        for p in (self.A_logs, self.Ds):
            p._no_weight_decay = True  # the convention the Mamba family's optimisers read

    def project(self, xs: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Cross-scanned xs (B, 4, e, L) → delta (B, 4·e, L) without bias, B and C (B, 4, n, L)."""
        b, k, e, length = xs.shape
        # Broadcast matmuls (4, c, e) @ (B, 4, e, L) keep the channels-first layout: no permuted copies
        # (einsum here costs twice as much on CPU).
        x_dbl = torch.matmul(self.x_proj_weight, xs)  # (B, 4, r+2n, L)
        dt, B, C = x_dbl.split([self.dt_rank, self.d_state, self.d_state], dim=2)
        delta = torch.matmul(self.dt_projs_weight, dt)  # (B, 4, e, L)
        return delta.reshape(b, k * e, length), B, C

    def input_matrix(self, xs: Tensor) -> Tensor:
        """B alone, (B, 4, n, L): all that a Cross-SS2D needs from a stream whose own scan is skipped."""
        r, n = self.dt_rank, self.d_state
        return torch.matmul(self.x_proj_weight[:, r:r + n], xs)

    def A(self) -> Tensor:
        """−exp(A_logs), (4·e, n), at least float32."""
        return -torch.exp(_at_least_fp32(self.A_logs))


class _SS2DBase(nn.Module):
    """Layers around the scan, shared by SS2D and by both streams of a Cross-SS2D: in_proj (d → 2e, no
    bias), depthwise 3×3 conv (bias), out_norm LayerNorm(e), out_proj (e → d, no bias)."""

    def __init__(self, dim: int, d_state: int, ssm_ratio: float, scan_backend: Optional[str]) -> None:
        super().__init__()
        self.d_inner = int(ssm_ratio * dim)
        if self.d_inner < 1:
            raise ValueError(f"ssm_ratio·dim must be >= 1, got ssm_ratio={ssm_ratio!r}, dim={dim}")
        self.d_state = d_state
        self.dt_rank = math.ceil(dim / 16)
        self.scan_backend = scan_backend
        e = self.d_inner
        self.in_proj = nn.Linear(dim, 2 * e, bias=False)
        self.conv2d = nn.Conv2d(e, e, kernel_size=3, padding=1, groups=e, bias=True)
        self.out_norm = nn.LayerNorm(e)
        self.out_proj = nn.Linear(e, dim, bias=False)

    def _new_ssm(self) -> DirectionalSSM:
        return DirectionalSSM(self.d_inner, self.d_state, self.dt_rank)

    def _branch(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """(B, H, W, d) → scan input (B, 4, e, L) and the gate SiLU(g) (B, H, W, e)."""
        u, g = self.in_proj(x).chunk(2, dim=-1)
        return self._scan_input(u), F.silu(g)

    def _scan_input(self, u: Tensor) -> Tensor:
        """x̂ (B, H, W, e) → cross-scanned SiLU(DWConv(x̂)), (B, 4, e, L)."""
        return cross_scan(F.silu(self.conv2d(u.permute(0, 3, 1, 2))))

    def _scan(self, ssm: DirectionalSSM, xs: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:
        """One selective scan over the 4 directions batched on channels → y (B, 4, e, L), float32."""
        b, k, e, length = xs.shape
        y = selective_scan(
            _at_least_fp32(xs.reshape(b, k * e, length)), _at_least_fp32(delta), A, _at_least_fp32(B),
            _at_least_fp32(C), _at_least_fp32(ssm.Ds), delta_bias=_at_least_fp32(ssm.dt_projs_bias.reshape(-1)),
            delta_softplus=True, backend=self.scan_backend,
        )
        return y.view(b, k, e, length)

    def _output(self, ys: Tensor, gate: Tensor) -> Tensor:
        """Directions (B, 4, e, L) → out_proj(LN(merge) ⊙ gate), (B, H, W, d)."""
        b, h, w, e = gate.shape
        y = cross_merge(ys, h, w).transpose(1, 2).reshape(b, h, w, e)
        return self.out_proj(self.out_norm(y) * gate)


class SS2D(_SS2DBase):
    """2-D selective scan of one input (the fusion stream): (B, H, W, d) → (B, H, W, d).

    Its own A, B, C, Δ and D per direction; nothing averaged or swapped.
    """

    def __init__(self, dim: int, d_state: int = 16, ssm_ratio: float = 2.0, scan_backend: Optional[str] = None) -> None:
        super().__init__(dim, d_state, ssm_ratio, scan_backend)
        self.ssm = self._new_ssm()

    def selective(self, xs: Tensor) -> Tensor:
        """Cross-scanned input (B, 4, e, L) → per-direction scan outputs (B, 4, e, L)."""
        delta, B, C = self.ssm.project(xs)
        return self._scan(self.ssm, xs, delta, self.ssm.A(), B, C)

    def forward(self, x: Tensor) -> Tensor:
        xs, gate = self._branch(x)
        return self._output(self.selective(xs), gate)


class CrossSS2D(_SS2DBase):
    """Cross-attention-like 2-D scan of a modality stream x with the fusion stream z (§5.3).

    Shared by both streams: in_proj, conv2d, out_norm, out_proj. Per stream: ``ssm_x``, ``ssm_z``.
    Both scans use Ā = ½(A^x + A^z); x's scan reads B from z and z's reads B from x, each keeping its
    own Δ, C and D. (B, H, W, d) × 2 → (o_x, o_z).
    """

    def __init__(self, dim: int, d_state: int = 16, ssm_ratio: float = 2.0, scan_backend: Optional[str] = None) -> None:
        super().__init__(dim, d_state, ssm_ratio, scan_backend)
        self.ssm_x = self._new_ssm()
        self.ssm_z = self._new_ssm()

    def selective(self, xs: Tensor, zs: Tensor, with_z: bool = True) -> Tuple[Tensor, Optional[Tensor]]:
        """Cross-scanned inputs (B, 4, e, L) → (y^x, y^z) (B, 4, e, L); y^z is None without ``with_z``
        (z's B is still computed: x's scan reads it)."""
        delta_x, B_x, C_x = self.ssm_x.project(xs)
        A = (self.ssm_x.A() + self.ssm_z.A()) / 2
        if not with_z:
            return self._scan(self.ssm_x, xs, delta_x, A, self.ssm_z.input_matrix(zs), C_x), None
        delta_z, B_z, C_z = self.ssm_z.project(zs)
        return self._scan(self.ssm_x, xs, delta_x, A, B_z, C_x), self._scan(self.ssm_z, zs, delta_z, A, B_x, C_z)

    def forward(self, x: Tensor, z: Tensor, with_z: bool = True) -> Tuple[Tensor, Optional[Tensor]]:
        if x.shape != z.shape:
            raise ValueError(f"CrossSS2D needs x and z of one shape, got {tuple(x.shape)} and {tuple(z.shape)}")
        xs, gate_x = self._branch(x)
        if with_z:
            zs, gate_z = self._branch(z)
        else:  # z only lends its B: skip the gate half of in_proj
            zs, gate_z = self._scan_input(F.linear(z, self.in_proj.weight[: self.d_inner])), None
        y_x, y_z = self.selective(xs, zs, with_z)
        return self._output(y_x, gate_x), None if y_z is None else self._output(y_z, gate_z)


# --------------------------------------------------------------------------------------------------
# Blocks, embeddings, heads
# --------------------------------------------------------------------------------------------------


class DropPath(nn.Module):
    """Stochastic depth: in training, drop a residual branch per sample with probability p and scale
    the kept ones by 1/(1−p); the identity in eval."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Mlp(nn.Module):
    """fc1 (d → ratio·d) → GELU → fc2, channels-last."""

    def __init__(self, dim: int, ratio: float) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class VSSBlock(nn.Module):
    """Fusion block: u + DP(SS2D(LN₁u)), then + DP(MLP(LN₂·)); (B, H, W, d) → same."""

    def __init__(self, dim: int, d_state: int, ssm_ratio: float, mlp_ratio: float, drop_path: float,
                 scan_backend: Optional[str]) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.op = SS2D(dim, d_state, ssm_ratio, scan_backend)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio)

    def forward(self, u: Tensor) -> Tensor:
        u = u + self.drop_path(self.op(self.norm(u)))
        return u + self.drop_path(self.mlp(self.norm2(u)))


class CrossVSSBlock(nn.Module):
    """Modality block: x′ = x + DP(o_x) with (o_x, ·) = CrossSS2D(LN₁x, LN₁z), then x′ + DP(MLP(LN₂x′)).

    Returns only the x result: the reference discards z's, so its scan is skipped (§5.3 [design]).
    """

    def __init__(self, dim: int, d_state: int, ssm_ratio: float, mlp_ratio: float, drop_path: float,
                 scan_backend: Optional[str]) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.op = CrossSS2D(dim, d_state, ssm_ratio, scan_backend)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio)

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        o_x, _ = self.op(self.norm(x), self.norm(z), with_z=False)
        x = x + self.drop_path(o_x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Patch size 1: a 1×1 conv C → d then LayerNorm; (B, C, H, W) → (B, H, W, d)."""

    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=1)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class ClipAdapter(nn.Module):
    """One modality's way into and out of the shared frozen CLIP encoder (§5.1 stage 1).

    In: ``embed`` 1×1 conv C → 3 (the trainable "linear embedding"), bicubic resize to the CLIP input,
    no CLIP mean/std normalisation (as the reference). Out: ``fc`` Linear clip_dim → crop², reshaped to
    (B, 1, crop, crop), ``expand`` 1×1 conv 1 → C, then ``patch_embed`` to (B, crop, crop, d). The
    crop² reshape is what ties M3amba to one crop size.
    """

    def __init__(self, in_channels: int, clip_dim: int, crop: int, dim: int) -> None:
        super().__init__()
        self.crop = crop
        self.embed = nn.Conv2d(in_channels, 3, kernel_size=1)
        self.fc = nn.Linear(clip_dim, crop * crop)
        self.expand = nn.Conv2d(1, in_channels, kernel_size=1)
        self.patch_embed = PatchEmbed(in_channels, dim)

    def to_clip(self, x: Tensor, image_size: int) -> Tensor:
        """(B, C, crop, crop) → CLIP input (B, 3, R, R)."""
        return F.interpolate(self.embed(x), size=(image_size, image_size), mode="bicubic", align_corners=False)

    def from_clip(self, features: Tensor) -> Tensor:
        """CLIP embedding (B, clip_dim) float32 → (B, crop, crop, d)."""
        a = self.fc(features).view(-1, 1, self.crop, self.crop)
        return self.patch_embed(self.expand(a))


class Head(nn.Module):
    """LayerNorm then a 1×1 conv d → Ncls: (B, H, W, d) → logits (B, Ncls, H, W)."""

    def __init__(self, dim: int, n_classes: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Conv2d(dim, n_classes, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.norm(x).permute(0, 3, 1, 2))


def _init_weights(module: nn.Module) -> None:
    """§5.6: Linear trunc-normal std 0.02 with zero bias, LayerNorm 1/0; convs and SSM parameters keep theirs."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------


def _positive_int(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"M3amba: {name} must be a positive int, got {value!r}")
    return value


class M3amba(nn.Module):
    """CLIP-driven multi-modal Mamba on crops: (x_hsi (B, C_h, crop, crop), x_aux (B, C_m, crop, crop))
    → (M₁, M_f, M₂), each (B, Ncls, crop, crop); predict with M_f.

    ``aux_bands`` counts all auxiliary bands together (several LiDAR/SAR rasters are stacked into one
    auxiliary modality). ``use_clip=False`` is the documented ablation without the CLIP branch: the
    fusion seed is z₀ = 0. Zero removes exactly CLIP's contribution without adding parameters; a
    learned z₀ would only be a per-position prior, which carries no information for crops taken at
    arbitrary offsets in the scene.

    CLIP is frozen (no gradients to its weights, kept in eval mode by ``train()``) but stays on the
    autograd tape in training, so the pre-CLIP 1×1 convs learn (§5.2 [design]); in eval it runs under
    no-grad. A random CLIP makes the model buildable for tests; ``require_clip_weights`` is the check
    training and classification call before they start. ``config`` rebuilds the architecture
    (JSON-able, ``clip`` as a dict); the state dict carries the CLIP weights and their sha256.
    """

    name = "m3amba"

    def __init__(
        self,
        hsi_bands: int,
        aux_bands: int,
        n_classes: int,
        dim: int = 384,
        depth: int = 9,
        d_state: int = 16,
        ssm_ratio: float = 2.0,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.1,
        crop: int = 32,
        use_clip: bool = True,
        clip: Optional[Dict[str, int]] = None,
        scan_backend: Optional[str] = None,
    ) -> None:
        super().__init__()
        for key, value in (("hsi_bands", hsi_bands), ("aux_bands", aux_bands), ("n_classes", n_classes),
                           ("dim", dim), ("depth", depth), ("d_state", d_state), ("crop", crop)):
            _positive_int(key, value)
        for key, value in (("ssm_ratio", ssm_ratio), ("mlp_ratio", mlp_ratio)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or int(value * dim) < 1:
                raise ValueError(f"M3amba: {key} must be a number with {key}·dim >= 1, got {value!r}")
        if not isinstance(drop_path, (int, float)) or not 0.0 <= drop_path < 1.0:
            raise ValueError(f"M3amba: drop_path must be in [0, 1), got {drop_path!r}")
        if scan_backend is not None and scan_backend not in BACKENDS:
            raise ValueError(f"M3amba: scan_backend must be None or one of {BACKENDS}, got {scan_backend!r}")
        if not use_clip and clip is not None:
            raise ValueError("M3amba: a clip config was given with use_clip=False; drop one of them")
        clip_config = (ClipVisionConfig.from_dict(clip) if clip is not None else VIT_B_32) if use_clip else None
        self.config: Dict[str, Any] = dict(
            hsi_bands=hsi_bands, aux_bands=aux_bands, n_classes=n_classes, dim=dim, depth=depth, d_state=d_state,
            ssm_ratio=float(ssm_ratio), mlp_ratio=float(mlp_ratio), drop_path=float(drop_path), crop=crop,
            use_clip=bool(use_clip), clip=None if clip_config is None else clip_config.to_dict(),
            scan_backend=scan_backend,
        )
        self.crop = crop
        # linspace(0, drop_path, depth) per stream, in exact Python floats so the config's rates read cleanly
        self.drop_path_rates: List[float] = [float(drop_path) * i / max(depth - 1, 1) for i in range(depth)]

        self.embed_hsi = PatchEmbed(hsi_bands, dim)
        self.embed_aux = PatchEmbed(aux_bands, dim)
        block = dict(d_state=d_state, ssm_ratio=ssm_ratio, mlp_ratio=mlp_ratio, scan_backend=scan_backend)
        self.blocks_hsi = nn.ModuleList(CrossVSSBlock(dim, drop_path=p, **block) for p in self.drop_path_rates)
        self.blocks_aux = nn.ModuleList(CrossVSSBlock(dim, drop_path=p, **block) for p in self.drop_path_rates)
        self.blocks_fusion = nn.ModuleList(VSSBlock(dim, drop_path=p, **block) for p in self.drop_path_rates)
        self.head_hsi = Head(dim, n_classes)
        self.head_fusion = Head(dim, n_classes)
        self.head_aux = Head(dim, n_classes)
        if clip_config is not None:
            self.adapter_hsi = ClipAdapter(hsi_bands, clip_config.output_dim, crop, dim)
            self.adapter_aux = ClipAdapter(aux_bands, clip_config.output_dim, crop, dim)
        for module in self.children():
            module.apply(_init_weights)
        # CLIP after the init loop: its weights are CLIP's own (random here until a file is loaded).
        self.clip: Optional[ClipVisionEncoder] = None
        if clip_config is not None:
            self.clip = ClipVisionEncoder(clip_config).requires_grad_(False).eval()
            # sha256 of the loaded CLIP file as 32 bytes, all zero while random: it travels with the weights.
            self.register_buffer("clip_sha256_bytes", torch.zeros(32, dtype=torch.uint8))

    # ---- CLIP ---------------------------------------------------------------------------------

    def load_clip_weights(self, path: str) -> ClipCheckpoint:
        """Load a local CLIP file (OpenAI ViT-B-32.pt, open_clip or safetensors) into the frozen encoder."""
        if self.clip is None:
            raise ValueError("this M3amba was built with use_clip=False (the ablation without CLIP); "
                             "build it with use_clip=True to use CLIP weights")
        checkpoint = load_clip_weights(self.clip, path)
        self.clip.requires_grad_(False)
        self.clip_sha256_bytes.copy_(torch.tensor(list(bytes.fromhex(checkpoint.sha256)), dtype=torch.uint8))
        return checkpoint

    @property
    def clip_sha256(self) -> Optional[str]:
        """sha256 of the CLIP file whose weights the model holds; None without CLIP or while random."""
        if self.clip is None or not bool(self.clip_sha256_bytes.any()):
            return None
        return bytes(self.clip_sha256_bytes.tolist()).hex()

    def require_clip_weights(self) -> None:
        """Raise ValueError unless the CLIP branch is off or holds loaded weights (random CLIP
        features would silently make a poor model)."""
        if self.clip is not None and self.clip_sha256 is None:
            raise ValueError(
                "M3amba needs CLIP image-encoder weights, which the plugin cannot download: get OpenAI's "
                "ViT-B-32.pt (from the openai/CLIP release; sha256 40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af) "
                "and pass its path with --clip-weights FILE (toolbox: CLIP_WEIGHTS), or train the documented "
                "ablation without the CLIP branch with --no-clip")

    def train(self, mode: bool = True) -> "M3amba":
        super().train(mode)
        if self.clip is not None:
            self.clip.eval()  # frozen: always in inference mode
        return self

    def _fusion_seed(self, x_hsi: Tensor, x_aux: Tensor, like: Tensor) -> Tensor:
        """z₀ (B, crop, crop, d): a_h + a_m from CLIP, or zeros without the CLIP branch."""
        if self.clip is None:
            return torch.zeros_like(like)
        size = self.clip.config.image_size
        images = torch.cat([self.adapter_hsi.to_clip(x_hsi, size), self.adapter_aux.to_clip(x_aux, size)])
        # One CLIP call for both modalities (batch 2B). On the tape in training, for the pre-CLIP convs.
        with torch.set_grad_enabled(self.training and torch.is_grad_enabled()):
            features = self.clip(images).float()
        f_hsi, f_aux = features.chunk(2)
        return self.adapter_hsi.from_clip(f_hsi) + self.adapter_aux.from_clip(f_aux)

    # ---- forward ------------------------------------------------------------------------------

    def forward(self, x_hsi: Tensor, x_aux: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        self._check_inputs(x_hsi, x_aux)
        h = self.embed_hsi(x_hsi)
        l = self.embed_aux(x_aux)
        z = self._fusion_seed(x_hsi, x_aux, like=h)
        for block_h, block_m, block_f in zip(self.blocks_hsi, self.blocks_aux, self.blocks_fusion):
            h = block_h(h, z)
            l = block_m(l, z)
            z = block_f(h + l)
        return self.head_hsi(h), self.head_fusion(z), self.head_aux(l)

    # ---- training recipe (engine/training/train.py: crops in minibatches, MODELS.md §5.5-5.6) -----------

    def configure_optimizers(self, lr: float, total_steps: int) -> Tuple[torch.optim.Optimizer, Any]:
        """AdamW (weight decay WEIGHT_DECAY, none on biases, norms and the SSM's A_log/D: VMamba's rule;
        frozen CLIP left out) with a cosine schedule over ``total_steps`` optimizer steps (§5.6)."""
        decay, no_decay = [], []
        for p in self.parameters():
            if p.requires_grad:
                (no_decay if p.ndim < 2 or getattr(p, "_no_weight_decay", False) else decay).append(p)
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=lr)
        return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)

    def training_loss(self, outputs: Sequence[Tensor], labels: Tensor) -> Tensor:
        """§5.4's loss of the three heads (``m3amba_loss``)."""
        return m3amba_loss(outputs, labels)

    def _check_inputs(self, x_hsi: Tensor, x_aux: Tensor) -> None:
        c = self.config
        for label, x, bands in (("x_hsi", x_hsi, c["hsi_bands"]), ("x_aux", x_aux, c["aux_bands"])):
            if x.dim() != 4 or x.shape[1:] != (bands, self.crop, self.crop):
                raise ValueError(f"M3amba: {label} must be (B, {bands}, {self.crop}, {self.crop}) crops, "
                                 f"got {tuple(x.shape)}")
        if x_hsi.shape[0] != x_aux.shape[0]:
            raise ValueError(f"M3amba: x_hsi and x_aux hold {x_hsi.shape[0]} and {x_aux.shape[0]} crops; pair them")


def _masked_ce(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy averaged over labelled pixels (label ≥ 0); 0 on a crop without any."""
    total = F.cross_entropy(logits.float(), labels, ignore_index=-1, reduction="sum")
    return total / (labels >= 0).sum().clamp(min=1)


def m3amba_loss(outputs: Sequence[Tensor], labels: Tensor, lambda1: float = 1.0, lambda2: float = 0.1) -> Tensor:
    """§5.4: λ₁·Σ CE_mask(M, y) over M ∈ {M₁, M_f, M₂} + λ₂·[(1 − cos(M₁, M_f)) + (1 − cos(M₂, M_f))].

    outputs: (M₁, M_f, M₂) logits (B, Ncls, H, W); labels (B, H, W) int64, −1 = not supervised. The
    cosine is between softmax class vectors per pixel, averaged over all pixels (it needs no labels),
    with gradients through both heads.
    """
    m1, mf, m2 = (m.float() for m in outputs)
    if labels.shape != (mf.shape[0], *mf.shape[2:]):
        raise ValueError(f"m3amba_loss: labels must be (B, H, W) = {(mf.shape[0], *mf.shape[2:])}, got {tuple(labels.shape)}")
    ce = _masked_ce(m1, labels) + _masked_ce(mf, labels) + _masked_ce(m2, labels)
    pf = mf.softmax(dim=1)
    consistency = sum((1 - F.cosine_similarity(m.softmax(dim=1), pf, dim=1)).mean() for m in (m1, m2))
    return lambda1 * ce + lambda2 * consistency
