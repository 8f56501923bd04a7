"""CLIP ViT image encoder (MODELS.md §5.2), buildable without weights and loadable from a local file.

M3amba feeds each modality through a frozen CLIP image tower. The plugin never downloads weights: the
user points to a file, normally OpenAI's ``ViT-B-32.pt`` (a TorchScript archive with float16 weights),
or an open_clip / plain state dict (``.pt``/``.pth``/``.bin``) or a ``.safetensors`` file. Parameter names
match OpenAI's checkpoints under ``visual.``, so such files load unchanged, and the architecture
(width, layers, patch size, input resolution, output dim) is read from the tensor shapes, so a tiny
test configuration works like the real one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import warnings
import zipfile
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ClipCheckpoint",
    "ClipVisionConfig",
    "ClipVisionEncoder",
    "KNOWN_CHECKPOINTS",
    "VIT_B_32",
    "config_from_state_dict",
    "load_clip_encoder",
    "load_clip_state_dict",
    "load_clip_weights",
    "read_clip_state_dict",
]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipVisionConfig:
    """Sizes of a CLIP ViT image tower; the defaults are ViT-B/32 (224×224 input, 7×7 patches, 512-d)."""

    width: int = 768
    layers: int = 12
    heads: int = 12
    patch_size: int = 32
    image_size: int = 224
    output_dim: int = 512

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"CLIP config: {field.name} must be a positive int, got {value!r}")
        if self.width % self.heads:
            raise ValueError(f"CLIP config: width {self.width} is not divisible by heads {self.heads}")
        if self.image_size % self.patch_size:
            raise ValueError(f"CLIP config: image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")

    @property
    def grid(self) -> int:
        """Patches per side: the encoder sees grid² tokens plus the class token."""
        return self.image_size // self.patch_size

    def to_dict(self) -> Dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ClipVisionConfig":
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"CLIP config: unknown keys {unknown}; valid are {[f.name for f in dataclasses.fields(cls)]}")
        return cls(**values)


VIT_B_32 = ClipVisionConfig()

# Published checkpoints by architecture: (name, sha256 of the released file) [ref: openai/CLIP clip/clip.py].
KNOWN_CHECKPOINTS: Dict[ClipVisionConfig, Tuple[str, str]] = {
    VIT_B_32: ("OpenAI ViT-B-32.pt", "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"),
}


# --------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------


class LayerNormFp32(nn.LayerNorm):
    """LayerNorm computed in float32 and cast back, so a float16 encoder keeps stable statistics."""

    def forward(self, x: Tensor) -> Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


class QuickGELU(nn.Module):
    """x·σ(1.702x): the GELU approximation CLIP was trained with (exact GELU shifts its features)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class ClipMlp(nn.Module):
    """c_fc (w→4w) → QuickGELU → c_proj (4w→w), on (B, T, w)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.gelu = QuickGELU()
        self.c_proj = nn.Linear(4 * width, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class ResidualAttentionBlock(nn.Module):
    """Pre-norm transformer block on (B, T, w): x + MHA(ln_1 x), then x + MLP(ln_2 x); no mask.

    ``nn.MultiheadAttention`` keeps the packed ``in_proj_weight`` (3w, w) / ``in_proj_bias`` and
    ``out_proj`` names of the checkpoints.
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = LayerNormFp32(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = LayerNormFp32(width)
        self.mlp = ClipMlp(width)

    def forward(self, x: Tensor) -> Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class ClipTransformer(nn.Module):
    """The stack of blocks, under the checkpoints' ``transformer.resblocks.N`` names."""

    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))

    def forward(self, x: Tensor) -> Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


class ClipVisionEncoder(nn.Module):
    """CLIP ViT image tower: images (B, 3, R, R) → embeddings (B, output_dim).

    Patchify with conv1 (stride = patch), prepend the class token, add the positional embedding,
    ln_pre, the transformer, then ln_post on the class token times ``proj``. Computes in the dtype of
    its weights (float32, or float16 on CUDA); LayerNorms always run in float32.
    """

    def __init__(self, config: ClipVisionConfig = VIT_B_32) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.conv1 = nn.Conv2d(3, w, kernel_size=config.patch_size, stride=config.patch_size, bias=False)
        # Random init at CLIP's scale w^-½, so an unloaded encoder still gives finite, unit-scale features.
        scale = w**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(w))
        self.positional_embedding = nn.Parameter(scale * torch.randn(config.grid**2 + 1, w))
        self.ln_pre = LayerNormFp32(w)
        self.transformer = ClipTransformer(w, config.layers, config.heads)
        self.ln_post = LayerNormFp32(w)
        self.proj = nn.Parameter(scale * torch.randn(w, config.output_dim))

    def forward(self, images: Tensor) -> Tensor:
        r = self.config.image_size
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[2:] != (r, r):
            raise ValueError(f"CLIP encoder expects images (B, 3, {r}, {r}), got {tuple(images.shape)}")
        x = self.conv1(images.to(self.conv1.weight.dtype))  # (B, w, g, g)
        x = x.flatten(2).transpose(1, 2)  # (B, g², w), raster order
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)  # (B, g²+1, w)
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj  # (B, output_dim)


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipCheckpoint:
    """What was loaded: the file, its sha256 (recorded in the model file) and the architecture."""

    path: str
    sha256: str
    config: ClipVisionConfig
    known_as: Optional[str]  # the published checkpoint this file is, by hash; None when unknown


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_torchscript_zip(path: str) -> bool:
    """TorchScript archives hold ``<name>/constants.pkl``; plain ``torch.save`` zips do not."""
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") or name == "constants.pkl" for name in archive.namelist())


def _is_safetensors(path: str) -> bool:
    """safetensors: an 8-byte little-endian header length, then a JSON header starting with '{'."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < os.path.getsize(path)


def _load_any(path: str) -> Any:
    """Deserialise without running pickled code: TorchScript only for TorchScript archives."""
    if _is_safetensors(path):
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise ValueError(
                f"{path} is a safetensors file but the 'safetensors' package is not installed; install it "
                f"(pip install safetensors) or convert the file to a PyTorch state dict (.pt)") from exc
        return load_file(path, device="cpu")
    if zipfile.is_zipfile(path) and _is_torchscript_zip(path):
        # OpenAI's released ViT-B-32.pt is a TorchScript archive: torch.jit.load compiles its TorchScript
        # (no pickled Python) without running it, and we keep nothing but the tensors. torch.jit is
        # deprecated, but that release format is fixed, so its deprecation notice only adds noise here.
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return torch.jit.load(path, map_location="cpu").state_dict()
        except RuntimeError as exc:
            raise ValueError(f"{path} looks like a TorchScript archive but could not be read: {exc}") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come as several types; all mean "not a weights file"
        raise ValueError(f"{path} could not be read as CLIP weights (a state dict, TorchScript or safetensors "
                         f"file): {exc}") from exc


def read_clip_state_dict(path: str) -> Tuple[Dict[str, Tensor], str]:
    """Read a CLIP file → (image-tower tensors with the ``visual.`` prefix removed, sha256 of the file).

    Accepts OpenAI's TorchScript archive, open_clip / plain state dicts (optionally wrapped in
    ``{"state_dict": …}`` or prefixed ``module.``) and safetensors. Full CLIP files keep only
    ``visual.*`` (the text tower is dropped); a file without that prefix is taken as the tower itself.
    """
    if not os.path.isfile(path):
        raise ValueError(f"CLIP weights file not found: {path}; download ViT-B-32.pt from OpenAI's CLIP "
                         f"release yourself and pass its local path")
    obj = _load_any(path)
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{path} is not a CLIP ViT image encoder: it holds {type(obj).__name__}, not a state dict "
                         f"of tensors")
    state = {re.sub(r"^module\.", "", k): v for k, v in obj.items()}
    if any(k.startswith("visual.") for k in state):
        state = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
    return state, _sha256(path)


def config_from_state_dict(state: Mapping[str, Tensor], heads: Optional[int] = None,
                           source: str = "the state dict") -> ClipVisionConfig:
    """Architecture from tensor shapes (keys without ``visual.``). Heads are not visible in any shape:
    CLIP uses one head per 64 channels, which is the default here."""
    needed = ("conv1.weight", "positional_embedding", "proj")
    missing = [k for k in needed if k not in state]
    if missing:
        raise ValueError(f"{source} is not a CLIP ViT image encoder: missing {', '.join('visual.' + k for k in missing)}"
                         f" (a ResNet CLIP or another model's file?)")
    conv, pos, proj = state["conv1.weight"], state["positional_embedding"], state["proj"]
    if conv.dim() != 4 or conv.shape[1] != 3 or conv.shape[2] != conv.shape[3] or pos.dim() != 2 or proj.dim() != 2:
        raise ValueError(f"{source} is not a CLIP ViT image encoder: unexpected shapes conv1.weight "
                         f"{tuple(conv.shape)}, positional_embedding {tuple(pos.shape)}, proj {tuple(proj.shape)}")
    width, patch = conv.shape[0], conv.shape[-1]
    grid = math.isqrt(pos.shape[0] - 1)
    if grid * grid + 1 != pos.shape[0]:
        raise ValueError(f"{source} is not a CLIP ViT image encoder: positional_embedding has {pos.shape[0]} rows, "
                         f"not a square grid plus the class token")
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"transformer\.resblocks\.(\d+)\.", k))}
    if not blocks:
        raise ValueError(f"{source} is not a CLIP ViT image encoder: it has no transformer.resblocks")
    return ClipVisionConfig(width=width, layers=max(blocks) + 1, heads=heads or max(1, width // 64),
                            patch_size=patch, image_size=grid * patch, output_dim=proj.shape[1])


def load_clip_state_dict(encoder: ClipVisionEncoder, state: Mapping[str, Tensor], source: str = "the state dict") -> None:
    """Copy ``state`` (keys without ``visual.``) into ``encoder``, strictly: every key present, none
    extra, every shape equal; otherwise a ValueError that lists the offending keys. Dtypes are
    converted to the encoder's (OpenAI's file is float16)."""
    expected = encoder.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
                  for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or mismatched:
        problems: List[str] = []
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
            if keys:
                shown = ", ".join(keys[:8]) + (f", … ({len(keys)} in all)" if len(keys) > 8 else "")
                problems.append(f"{label}: {shown}")
        raise ValueError(f"{source} is not a CLIP ViT image encoder: " + "; ".join(problems)
                         + f" (expected the layout of {encoder.config})")
    encoder.load_state_dict(state, strict=True)


def _read_checked(path: str, heads: Optional[int]) -> Tuple[Dict[str, Tensor], str, ClipVisionConfig]:
    """(visual state dict, sha256, architecture read from its shapes); ValueError if not a CLIP ViT."""
    state, sha = read_clip_state_dict(path)
    return state, sha, config_from_state_dict(state, heads=heads, source=path)


def _checkpoint(path: str, sha: str, config: ClipVisionConfig) -> ClipCheckpoint:
    """Record the load; warn when the architecture is a published one but the hash is not that
    release's (e.g. an open_clip retraining), since results then differ from the paper's."""
    known = KNOWN_CHECKPOINTS.get(config)
    known_as = known[0] if known and known[1] == sha else None
    if known and not known_as:
        _log.warning("CLIP weights %s have sha256 %s, not that of %s (%s): another checkpoint of the same "
                     "architecture; results may differ from the published ones", path, sha, known[0], known[1])
    _log.info("CLIP image encoder loaded from %s (sha256 %s, %s)", path, sha, json.dumps(config.to_dict()))
    return ClipCheckpoint(path=os.path.abspath(path), sha256=sha, config=config, known_as=known_as)


def load_clip_encoder(path: str, heads: Optional[int] = None) -> Tuple[ClipVisionEncoder, ClipCheckpoint]:
    """Build an encoder of the file's architecture and load it. ``heads`` defaults to width/64 (CLIP's rule)."""
    state, sha, config = _read_checked(path, heads)
    encoder = ClipVisionEncoder(config)
    load_clip_state_dict(encoder, state, source=path)
    return encoder, _checkpoint(path, sha, config)


def load_clip_weights(encoder: ClipVisionEncoder, path: str) -> ClipCheckpoint:
    """Load a file into an existing encoder (e.g. the one inside M3amba); a file of another
    architecture is refused with both configurations in the message."""
    state, sha, config = _read_checked(path, encoder.config.heads)
    if config != encoder.config:
        raise ValueError(f"{path} is a CLIP ViT image encoder of another size: {config}, but the model was built for "
                         f"{encoder.config}")
    load_clip_state_dict(encoder, state, source=path)
    return _checkpoint(path, sha, config)
