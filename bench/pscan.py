"""Blelloch parallel-scan baseline for the selective-scan benchmark (SCAN.md §2, bench-only code).

This is the "materializing" algorithm that SCAN.md measures against the chunked scan: it builds
the full (b, L, d, n) tensors a_t = exp(Δ_t·A) and x_t = Δ_t·u_t·B_t, pads L to a power of two and
solves h_t = a_t·h_{t-1} + x_t with in-place up- and down-sweeps (2·log₂L strided passes). The
backward is the same scan run in reverse: λ_t = ∂L/∂h_t + a_{t+1}·λ_{t+1}, then ∂L/∂x_t = λ_t and
∂L/∂a_t = λ_t·h_{t-1}. It exists only to be timed, so it takes the plain (b, n, l) B/C layout and
fp32 inputs; bias, softplus, C, the D term and the z gate are ordinary autograd ops around it, so
the comparison with the engine's scan covers the same semantics and the same 8 gradients.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["pscan", "selective_scan_pscan"]


def _sweep_(a: torch.Tensor, x: torch.Tensor, reverse: bool) -> None:
    """Scan h_t = a_t·h_{t∓1} + x_t along dim 1 of (b, L, ...) tensors in place; L a power of two.

    On return x holds every h_t and a is scratch. The forward direction combines the right half of
    each block with its left half; the reverse direction mirrors every index (position i becomes
    L-1-i), which needs no flip copies because power-of-two blocks are symmetric.
    """
    b, length = a.shape[:2]
    a, x = a.view(b, length, -1), x.view(b, length, -1)
    # Up-sweep: the block end (start, if reverse) absorbs its other half; a keeps the block product.
    half = 1
    while half < length:
        av, xv = a.view(b, -1, 2 * half, a.shape[-1]), x.view(b, -1, 2 * half, x.shape[-1])
        dst, src = (0, half) if reverse else (2 * half - 1, half - 1)
        xv[:, :, dst].addcmul_(av[:, :, dst], xv[:, :, src])
        av[:, :, dst].mul_(av[:, :, src])
        half *= 2
    # Down-sweep: each half-block end absorbs the finished prefix (suffix) of the preceding block.
    half = length // 4
    while half >= 1:
        av, xv = a.view(b, -1, 2 * half, a.shape[-1]), x.view(b, -1, 2 * half, x.shape[-1])
        if reverse:
            xv[:, :-1, half].addcmul_(av[:, :-1, half], xv[:, 1:, 0])
        else:
            xv[:, 1:, half - 1].addcmul_(av[:, 1:, half - 1], xv[:, :-1, 2 * half - 1])
        half //= 2


class _PScan(torch.autograd.Function):
    """h = scan(a, x) in place of x on power-of-two length tensors, with a reverse-scan backward."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.mark_dirty(x)
        if not any(ctx.needs_input_grad):  # inference: a is only scratch
            _sweep_(a, x, reverse=False)
            return x
        _sweep_(a.clone(), x, reverse=False)  # the backward needs the original a
        ctx.save_for_backward(a, x)
        return x

    @staticmethod
    def backward(ctx, grad_h: torch.Tensor):  # type: ignore[override]
        a, h = ctx.saved_tensors
        a_next = torch.empty_like(a)
        a_next[:, :-1] = a[:, 1:]
        a_next[:, -1] = 0
        lam = grad_h.contiguous().clone()
        _sweep_(a_next, lam, reverse=True)
        grad_a = a_next  # reuse the scratch buffer: grad_a_t = λ_t·h_{t-1}, h_{-1} = 0
        torch.mul(lam[:, 1:], h[:, :-1], out=grad_a[:, 1:])
        grad_a[:, 0] = 0
        return grad_a, lam


def pscan(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """h_t = a_t·h_{t-1} + x_t (h_{-1} = 0) along dim 1 of contiguous (b, L, ...) tensors.

    L must be a power of two. Consumes its inputs to save two full tensors: x is overwritten with
    h and returned, and a is overwritten too when no gradient is needed.
    """
    length = a.shape[1]
    if length & (length - 1):
        raise ValueError(f"pscan needs a power-of-two length along dim 1, got {length}; pad first")
    if not (a.is_contiguous() and x.is_contiguous()):
        raise ValueError("pscan works in place on contiguous tensors; call .contiguous() first")
    return _PScan.apply(a, x)


def _pad_transpose(t: torch.Tensor, length: int) -> torch.Tensor:
    """(b, c, l) -> contiguous (b, length, c), zero-padded at the end of l."""
    return F.pad(t, (0, length - t.shape[-1])).transpose(1, 2).contiguous()


def selective_scan_pscan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: Optional[torch.Tensor] = None,
    z: Optional[torch.Tensor] = None,
    delta_bias: Optional[torch.Tensor] = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """Selective scan (SCAN.md §1 semantics) through the Blelloch pscan; returns (b, d, l).

    u, delta, z: (b, d, l); A: (d, n); B, C: (b, n, l); D, delta_bias: (d,). The padded tail has
    Δ = 0 and u = 0, hence a = 1 and x = 0, so it cannot disturb the first l states.
    """
    length = u.shape[-1]
    padded = 1 << max(length - 1, 0).bit_length()
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    dt = _pad_transpose(delta, padded)  # (b, Lp, d)
    a = (dt.unsqueeze(-1) * A).exp_()  # (b, Lp, d, n); in place saves one full temporary
    x = (dt * _pad_transpose(u, padded)).unsqueeze(-1) * _pad_transpose(B, padded).unsqueeze(2)
    h = pscan(a, x)[:, :length]  # (b, l, d, n)
    y = torch.matmul(h, C.transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2)  # (b, d, l)
    if D is not None:
        y = y + D[:, None] * u
    if z is not None:
        y = y * F.silu(z)
    return y
