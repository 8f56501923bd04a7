"""Which floating-point precision a run computes in, and the autocast context and gradient scaler for it.

- CUDA with native bf16 (Ampere and newer: A100, H100, RTX 30xx/40xx): bf16 autocast, weights in fp32.
- CUDA without it (T4, V100, GTX): fp16 autocast with a GradScaler, since bf16 is only emulated there
  (slower than fp32) and fp16 gradients underflow without loss scaling.
- CPU: fp32. CPU autocast exists, but pays only on processors with bf16 units (AMX/AVX512-BF16), and
  every measured number of this project (bench/results) is fp32 on the CPU.

Every model and option runs forward and backward under each of these (tests/test_precision.py runs
bf16 and fp16 autocast on the CPU, where CI can) and agrees with fp32 within the stated tolerance.
Needs torch >= 2.4 (``torch.get_autocast_dtype``, the CPU GradScaler). No GDAL here.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import ContextManager, Optional

import torch

__all__ = ["PRECISIONS", "Precision", "choose_precision"]

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


@dataclass(frozen=True)
class Precision:
    """A chosen precision: ``name`` (bf16, fp16, fp32) and ``why`` (for the log and the model file)."""

    name: str
    why: str = ""

    @property
    def dtype(self) -> Optional[torch.dtype]:
        """The autocast dtype; None for fp32 (no autocast)."""
        return _DTYPES[self.name]

    def autocast(self, device: torch.device) -> ContextManager:
        """The autocast context of this precision on ``device`` (a no-op for fp32)."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.dtype)

    def scaler(self, device: torch.device) -> Optional["torch.amp.GradScaler"]:
        """A GradScaler for fp16 (its small exponent range needs loss scaling), None otherwise."""
        return torch.amp.GradScaler(device.type) if self.name == "fp16" else None

    def describe(self) -> str:
        return f"{self.name} ({self.why})" if self.why else self.name


def _native_bf16(device: torch.device) -> bool:
    """Compute capability 8.0 and newer (Ampere on) has bf16 units; before it bf16 is only emulated."""
    return torch.cuda.get_device_capability(device) >= (8, 0)


def choose_precision(device: torch.device, requested: str = "auto") -> Precision:
    """The precision for a run on ``device``: ``requested`` when it is not "auto", else the rule of the
    module docstring. ValueError for an unknown name."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested != "auto":
        return Precision(requested, "requested")
    if device.type != "cuda":
        return Precision("fp32", f"{device.type}: autocast would not be faster here")
    if _native_bf16(device):
        return Precision("bf16", "autocast; this GPU computes bf16 natively")
    return Precision("fp16", "autocast with gradient scaling; this GPU has no native bf16")
