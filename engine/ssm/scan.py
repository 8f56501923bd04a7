"""Selective scan (Mamba-1 S6), SCAN.md / MODELS.md §2.1.

Three implementations of one contract:

* ``selective_scan_reference``: an obviously correct sequential loop, the test oracle.
* ``chunked_scan_core``: the pure-PyTorch chunked two-pass scan with recomputation (SCAN.md §3), a
  custom autograd Function whose memory is O(L·(d+n)) + O(L/Q·d·n) instead of O(L·d·n). It runs on
  CPU and CUDA tensors and is the default everywhere.
* optional fast paths, chosen by ``selective_scan``: the compiled CPU kernel (``cpu_kernel``) and
  mamba-ssm's CUDA ``selective_scan_fn``. Both are probed lazily and never imported on module load,
  because a missing or ABI-broken extension must not stop the plugin from importing (SCAN.md §5).

Shapes: u, delta, z (b, d, l); A (d, n); B, C (d, n), (b, n, l) or grouped (b, g, n, l), where
channel j reads group j // (d/g); D, delta_bias (d,); reset (b, l) bool.
"""

import importlib
import importlib.util
import logging
import math
import os
import sys
from types import ModuleType
from typing import Any, Callable, List, NamedTuple, Optional, Set, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = [
    "BACKENDS",
    "chunk_size",
    "chunked_scan_core",
    "last_backend",
    "mamba_ssm_status",
    "selective_scan",
    "selective_scan_reference",
    "set_default_backend",
]

_log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "cpp", "cuda")
ENV_BACKEND = "CSSMAMBA_SCAN_BACKEND"

# Tile budgets (SCAN.md §3 "Batch tiling"). On CPU each per-step temporary (m_tile·d·n elements)
# stays ≲ 8 MB so the 3–4 live ones sit in L2/L3; the backward's recomputed-state transient
# (Q·m_tile·d·n) is tiled separately because untiled it is one full (L, d, n) tensor. On CUDA launches
# dominate, so tiles are as wide as memory comfortably allows.
_CPU_STEP_BYTES = 8 * 2**20
_CPU_TRANSIENT_BYTES = 64 * 2**20
_CUDA_STEP_BYTES = 2**30
_CUDA_TRANSIENT_BYTES = 2**30
# The chunk carry is a sequential loop of nc tiny steps; above this length it is itself chunked.
_CARRY_LOOP_MAX = 1024
# On a GPU a smaller Q with a wider m suits the launch-bound loop better (SCAN.md §3, an estimate).
_CUDA_MAX_CHUNK = 64

_default_backend: Optional[str] = None
_last_backend = "none"
_logged_backends: Set[str] = set()
_cuda_probe: Optional[Tuple[Optional[Callable[..., Any]], str]] = None  # (selective_scan_fn or None, reason)
_cuda_fallback_warned = False
# What a CUDA run loses without mamba-ssm: SCAN.md §5 estimates the chunked torch scan on CUDA at
# 10–20× the kernel's time (an estimate, not yet measured on a GPU).
_CUDA_FALLBACK_COST = "an estimated 10-20x slower scan than mamba-ssm's kernel (SCAN.md §5, not yet measured)"


# --------------------------------------------------------------------------------------------------
# Reference
# --------------------------------------------------------------------------------------------------


def _compute_dtype(*tensors: Optional[Tensor]) -> torch.dtype:
    """float64 if any floating input is float64, else float32: all arithmetic is at least fp32."""
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32


def selective_scan_reference(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor] = None,
    z: Optional[Tensor] = None,
    delta_bias: Optional[Tensor] = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    reset: Optional[Tensor] = None,
) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """Sequential-loop selective scan, the oracle for every faster path (same semantics and shapes as
    ``selective_scan``).

    Computes in float64 when any input is float64, else float32. It steps with ``unbind`` rather than
    slicing, whose backward materialises a full-size zero gradient per step (O(L²), SCAN.md §1).
    The last state is detached, as in the fused kernel.
    """
    _validate(u, delta, A, B, C, D, z, delta_bias, reset, "selective_scan_reference")
    ct = _compute_dtype(u, delta, A, B, C, D, z, delta_bias)
    b, d, _ = u.shape
    n = A.shape[1]
    dt = delta.to(ct)
    if delta_bias is not None:
        dt = dt + delta_bias.to(ct)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    uc = u.to(ct)
    Bg, Cg = (_grouped_steps(X.to(ct), b, d, n) for X in (B, C))
    g = math.lcm(Bg[1], Cg[1])
    A3 = A.to(ct).reshape(g, d // g, n)
    resets = [None] * u.shape[2] if reset is None else reset.unbind(-1)
    h = u.new_zeros((b, g, d // g, n), dtype=ct)
    ys = []
    for t, (dt_t, u_t, r_t) in enumerate(zip(dt.unbind(-1), uc.unbind(-1), resets)):
        dt_t = dt_t.view(b, g, d // g, 1)
        a = torch.exp(dt_t * A3)
        if r_t is not None:
            a = a * (~r_t).to(ct).view(b, 1, 1, 1)
        h = a * h + (dt_t * u_t.view(b, g, d // g, 1)) * _step(Bg, t, g)
        ys.append((h * _step(Cg, t, g)).sum(-1).reshape(b, d))
    out = torch.stack(ys, dim=-1)
    if D is not None:
        out = out + D.to(ct)[:, None] * uc
    if z is not None:
        out = out * F.silu(z.to(ct))
    out = out.to(u.dtype)
    return (out, h.detach().reshape(b, d, n)) if return_last_state else out


def _grouped_steps(X: Tensor, b: int, d: int, n: int) -> Tuple[Union[Tensor, List[Tensor]], int]:
    """B or C -> (per-step list of (b, g, n), g), or (constant (1, d, n), d) for the (d, n) form."""
    if X.dim() == 2:
        return X.view(1, d, n), d
    if X.dim() == 3:
        X = X.unsqueeze(1)
    return X.unbind(-1), X.shape[1]


def _step(Xg: Tuple[Union[Tensor, List[Tensor]], int], t: int, g: int) -> Tensor:
    """Step t of a B/C from ``_grouped_steps``, broadcast to the state layout (b, g, d/g, n)."""
    X, gx = Xg
    X_t = X if isinstance(X, Tensor) else X[t]
    if gx != g:  # expand coarser groups: group i of gx covers g/gx consecutive groups of g
        X_t = X_t.repeat_interleave(g // gx, dim=1)
    return X_t.unsqueeze(2)


# --------------------------------------------------------------------------------------------------
# Chunked two-pass scan (SCAN.md §3)
# --------------------------------------------------------------------------------------------------


def chunk_size(length: int, device_type: str = "cpu") -> int:
    """Q = min(L, clamp(2^round(log2(√L/2)), 16, 512)) (rounding half up); at most 64 on CUDA.

    Balances the Q sequential steps per pass against the L/Q-step carry; the optimum is flat
    (SCAN.md §4: Q = 128–1024 within ≈15% at L = 207k).
    """
    if length < 1:
        raise ValueError(f"chunk_size: length must be >= 1, got {length}")
    q = min(max(2 ** math.floor(math.log2(math.sqrt(length) / 2) + 0.5), 16), 512)
    if device_type == "cuda":
        q = min(q, _CUDA_MAX_CHUNK)
    return min(length, q)


class _Layout(NamedTuple):
    """Sizes of one chunked call: state (m = nc·b, g, dg, n), per-token tensors (q, m, ·)."""

    b: int
    d: int
    g: int
    n: int
    length: int
    q: int
    nc: int
    dtype: torch.dtype

    @property
    def dg(self) -> int:
        return self.d // self.g

    @property
    def m(self) -> int:
        return self.nc * self.b


def _to_chunks(x: Tensor, q: int, nc: int, dtype: torch.dtype) -> Tensor:
    """(b, *f, L) -> (q, nc, b, *f) in ``dtype``, zero-padded to nc·q tokens, in ONE strided copy.

    Token c·q + t lands at [t, c]; chunks are ordered (nc, b) so the carry runs along dim 0 directly.
    """
    b, *f, length = x.shape
    k = len(f)
    out = x.new_empty((q, nc, b, *f), dtype=dtype)
    full = (nc - 1) * q
    if nc > 1:
        out[:, : nc - 1].copy_(x[..., :full].unflatten(-1, (nc - 1, q)).permute(k + 2, k + 1, 0, *range(1, k + 1)))
    r = length - full
    out[:r, nc - 1].copy_(x[..., full:].permute(k + 1, 0, *range(1, k + 1)))
    out[r:, nc - 1].zero_()
    return out


def _from_chunks(y: Tensor, length: int, dtype: torch.dtype) -> Tensor:
    """Inverse of ``_to_chunks``: (q, nc, b, *f) -> (b, *f, L), dropping the pad."""
    q, nc, b, *f = y.shape
    k = len(f)
    out = y.new_empty((b, *f, length), dtype=dtype)
    full = (nc - 1) * q
    if nc > 1:
        out[..., :full].unflatten(-1, (nc - 1, q)).copy_(y[:, : nc - 1].permute(2, *range(3, k + 3), 1, 0))
    out[..., full:].copy_(y[: length - full, nc - 1].permute(1, *range(2, k + 2), 0))
    return out


def _linear_recurrence(a: Tensor, x: Tensor) -> Tensor:
    """s_k = a_k·s_{k−1} + x_k along dim 0 with s_{−1} = 0; returns every s_k (the chunk carry).

    Sequential up to ``_CARRY_LOOP_MAX`` steps; longer sequences are split into ≈√K chunks, scanned
    locally, carried recursively and fixed up with in-chunk cumulative products (all |a| ≤ 1 here, so
    the products only shrink).
    """
    k = a.shape[0]
    if k <= _CARRY_LOOP_MAX:
        s = torch.empty_like(x)
        s[0] = x[0]
        for i in range(1, k):
            torch.addcmul(x[i], a[i], s[i - 1], out=s[i])
        return s
    q = math.ceil(math.sqrt(k))
    kc = math.ceil(k / q)
    pad = kc * q - k
    a_p = torch.cat([a, a.new_ones((pad, *a.shape[1:]))]).view(kc, q, *a.shape[1:]).transpose(0, 1)
    x_p = torch.cat([x, x.new_zeros((pad, *x.shape[1:]))]).view(kc, q, *x.shape[1:]).transpose(0, 1)
    s_loc = torch.empty_like(x_p)
    s_loc[0] = x_p[0]
    for i in range(1, q):
        torch.addcmul(x_p[i], a_p[i], s_loc[i - 1], out=s_loc[i])
    cum = torch.cumprod(a_p, dim=0)
    s_end = _linear_recurrence(cum[-1], s_loc[-1])
    s_in = torch.zeros_like(s_end)
    s_in[1:] = s_end[:-1]
    s = s_loc.addcmul_(cum, s_in.unsqueeze(0))
    return s.transpose(0, 1).reshape(kc * q, *x.shape[1:])[:k]


def _tiles(total: int, per_item_bytes: int, budget: int) -> List[Tuple[int, int]]:
    """[m0, m1) ranges covering ``total`` items with at most ``budget`` bytes each (≥ 1 item)."""
    width = max(1, budget // max(per_item_bytes, 1))
    return [(i, min(i + width, total)) for i in range(0, total, width)]


def _decay(dt_t: Tensor, A3: Tensor, keep_t: Optional[Tensor], out: Tensor) -> Tensor:
    """a_t = exp(Δ_t·A), zeroed where a sequence starts; written into ``out``."""
    torch.mul(dt_t, A3, out=out)
    out.exp_()
    if keep_t is not None:
        out.mul_(keep_t)
    return out


def _step_views(lay: _Layout, m0: int, m1: int, dl: Tensor, dul: Tensor, Bl: Tensor, Cl: Tensor,
                keep: Optional[Tensor]) -> Tuple[Tuple[Tensor, ...], ...]:
    """Per-step views of one m-tile, shaped to broadcast against the state (mt, g, dg, n).

    Built once per tile with ``unbind`` so the step loops pay no indexing dispatch.
    """
    dt = dl[:, m0:m1].unsqueeze(-1).unbind(0)  # (mt, g, dg, 1)
    du = dul[:, m0:m1].unsqueeze(-1).unbind(0)  # (mt, g, dg, 1)
    Bs = Bl[:, m0:m1].unsqueeze(3).unbind(0)  # (mt, g, 1, n)
    Cs = Cl[:, m0:m1].unsqueeze(3).unbind(0)  # (mt, g, 1, n)
    ks = (None,) * lay.q if keep is None else keep[:, m0:m1, None, None, None].unbind(0)
    return dt, du, Bs, Cs, ks


def _budgets(device: torch.device) -> Tuple[int, int]:
    """(per-step temporary, backward transient) byte budgets for this device."""
    if device.type == "cuda":
        return _CUDA_STEP_BYTES, _CUDA_TRANSIENT_BYTES
    return _CPU_STEP_BYTES, _CPU_TRANSIENT_BYTES


def _chunked_forward(lay: _Layout, dl: Tensor, dul: Tensor, A3: Tensor, Bl: Tensor, Cl: Tensor,
                     keep: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor], Tensor]:
    """Pass 1, carry, pass 2 -> (y (q, m, g, dg), H_in, P (m, g, dg, n), last state (b, d, n)).

    With a single chunk every initial state is 0: pass 1 and the carry are skipped and H_in, P are
    None (this halves the forward for short sequences such as the spectral branch's L = 4).
    """
    q, m, g, dg, n = lay.q, lay.m, lay.g, lay.dg, lay.n
    step_budget, _ = _budgets(dl.device)
    tiles = _tiles(m, g * dg * n * dl.element_size(), step_budget)
    state = (g, dg, n)
    a, h, tmp = (dl.new_empty((tiles[0][1], *state)) for _ in range(3))
    H_in = P = None
    if lay.nc > 1:
        hend = dl.new_empty((m, *state))
        for m0, m1 in tiles:  # pass 1: local chunk end states from zero
            dt, du, Bs, _, ks = _step_views(lay, m0, m1, dl, dul, Bl, Cl, keep)
            ht, at = hend[m0:m1], a[: m1 - m0]
            torch.mul(du[0], Bs[0], out=ht)
            for t in range(1, q):
                ht.mul_(_decay(dt[t], A3, ks[t], at)).addcmul_(du[t], Bs[t])
        P = torch.exp(dl.sum(0).unsqueeze(-1) * A3)  # Π_t a_t per chunk, (m, g, dg, n)
        if keep is not None:
            P.mul_(keep.prod(0).view(m, 1, 1, 1))  # a chunk containing a reset forgets what came before
        s = _linear_recurrence(P.view(lay.nc, lay.b, *state), hend.view(lay.nc, lay.b, *state))
        H_in = torch.zeros_like(s)
        H_in[1:] = s[:-1]
        H_in = H_in.view(m, *state)
    yl = dl.new_empty((q, m, g, dg))
    last = dl.new_empty((lay.b, *state))
    first_of_last = m - lay.b  # rows of the final chunk: its end state is h_{l−1} (the pad keeps it)
    for m0, m1 in tiles:  # pass 2: rerun every chunk from its true initial state, emit y
        dt, du, Bs, Cs, ks = _step_views(lay, m0, m1, dl, dul, Bl, Cl, keep)
        ht, at, tt = h[: m1 - m0], a[: m1 - m0], tmp[: m1 - m0]
        if H_in is None:
            torch.mul(du[0], Bs[0], out=ht)
        else:
            torch.mul(_decay(dt[0], A3, ks[0], at), H_in[m0:m1], out=ht).addcmul_(du[0], Bs[0])
        for t in range(q):
            if t:
                ht.mul_(_decay(dt[t], A3, ks[t], at)).addcmul_(du[t], Bs[t])
            torch.sum(torch.mul(ht, Cs[t], out=tt), dim=-1, out=yl[t, m0:m1])  # mul + sum beats bmm
        lo = max(m0, first_of_last)
        if lo < m1:
            last[lo - first_of_last: m1 - first_of_last] = ht[lo - m0:]
    return yl, H_in, P, last.view(lay.b, lay.d, n)


def _chunked_backward(lay: _Layout, gyl: Tensor, dl: Tensor, ul: Tensor, A3: Tensor, Bl: Tensor,
                      Cl: Tensor, keep: Optional[Tensor], H_in: Optional[Tensor], P: Optional[Tensor]
                      ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """R1 (local reverse κ), reverse carry, then R0 (recompute h) + R2 (gradients) per tile.

    With e_t = gy_t·C_t, λ_t = ∂L/∂h_t = e_t + κ_{t+1} and κ_t = a_t·λ_t (SCAN.md §3):
    gΔ_t = Σ_n λ h_{t−1} a A + u Σ_n λ B;  gu_t = Δ Σ_n λ B;  gA = Σ_t λ h_{t−1} a Δ;
    gB_t = Σ_d λ Δ u;  gC_t = Σ_d gy h_t. Returns gΔ, gu (q, m, g, dg), gA (g, dg, n),
    gB, gC (q, m, g, n).
    """
    q, m, g, dg, n = lay.q, lay.m, lay.g, lay.dg, lay.n
    state = (g, dg, n)
    dul = dl * ul
    gyv = gyl.unsqueeze(-1).unbind(0)  # (m, g, dg, 1) per step
    step_budget, transient_budget = _budgets(dl.device)
    per_chunk = g * dg * n * dl.element_size()
    tiles = _tiles(m, per_chunk, step_budget)
    width = tiles[0][1]
    a, lam, tmp, kap_buf = (dl.new_empty((width, *state)) for _ in range(4))

    k_in = None  # κ entering each chunk from the right; none with a single chunk
    if lay.nc > 1:
        kfirst = dl.new_empty((m, *state))
        for m0, m1 in tiles:  # R1: κ at each chunk's first step, reversing from κ = 0 at its end
            dt, _, _, Cs, ks = _step_views(lay, m0, m1, dl, dul, Bl, Cl, keep)
            kap, at, lt = kfirst[m0:m1].zero_(), a[: m1 - m0], lam[: m1 - m0]
            for t in reversed(range(q)):
                torch.addcmul(kap, gyv[t][m0:m1], Cs[t], out=lt)
                torch.mul(_decay(dt[t], A3, ks[t], at), lt, out=kap)
        # Reverse carry: κ_first(c) = κloc_first(c) + P_c·κ_first(c+1), run on the flipped chunks.
        s = _linear_recurrence(P.view(lay.nc, lay.b, *state).flip(0), kfirst.view(lay.nc, lay.b, *state).flip(0))
        s = s.flip(0)  # s[c] = κ_first(c)
        k_in = torch.zeros_like(s)
        k_in[:-1] = s[1:]
        k_in = k_in.view(m, *state)

    gS = dl.new_empty((q, m, g, dg))  # Σ_n λ B
    gdA = dl.new_empty((q, m, g, dg))  # Σ_n λ h_{t−1} a A
    gBl = dl.new_empty((q, m, g, n))
    gCl = dl.new_empty((q, m, g, n))
    gA = dl.new_zeros(state)
    gA_acc = dl.new_empty((width, *state))
    # R0/R2 tiles bound the recompute transient (q steps per chunk) and must also fit the per-step
    # buffers above: with few steps per chunk (the spectral shape, q = 4) the transient budget alone
    # would allow tiles wider than those buffers.
    recompute_tiles = min(tiles, _tiles(m, q * per_chunk, transient_budget), key=lambda ts: ts[0][1])
    for m0, m1 in recompute_tiles:
        dt, du, Bs, Cs, ks = _step_views(lay, m0, m1, dl, dul, Bl, Cl, keep)
        mt = m1 - m0
        at, lt, tt, acc = a[:mt], lam[:mt], tmp[:mt], gA_acc[:mt].zero_()
        hs = dl.new_empty((q, mt, *state))  # the R0 transient, bounded by the tile
        h0 = None if H_in is None else H_in[m0:m1]  # None: the chunk starts from h = 0
        if h0 is None:
            torch.mul(du[0], Bs[0], out=hs[0])
        else:
            torch.mul(_decay(dt[0], A3, ks[0], at), h0, out=hs[0]).addcmul_(du[0], Bs[0])
        for t in range(1, q):  # R0: recompute h_t of every step in the tile
            torch.mul(_decay(dt[t], A3, ks[t], at), hs[t - 1], out=hs[t]).addcmul_(du[t], Bs[t])
        kap = kap_buf[:mt].zero_() if k_in is None else kap_buf[:mt].copy_(k_in[m0:m1])
        for t in reversed(range(q)):  # R2
            gy_t = gyv[t][m0:m1]
            torch.addcmul(kap, gy_t, Cs[t], out=lt)  # λ_t
            torch.sum(torch.mul(hs[t], gy_t, out=tt), dim=2, out=gCl[t, m0:m1])
            torch.mul(_decay(dt[t], A3, ks[t], at), lt, out=kap)  # κ_t = a_t λ_t
            # h_t is consumed; its slot now holds X_t = λ_t a_t h_{t−1}, reduced in bulk below.
            if t:
                torch.mul(kap, hs[t - 1], out=hs[t])
            elif h0 is None:
                hs[0].zero_()
            else:
                torch.mul(kap, h0, out=hs[0])
            acc.addcmul_(hs[t], dt[t])
            torch.sum(torch.mul(lt, Bs[t], out=tt), dim=-1, out=gS[t, m0:m1])
            torch.sum(torch.mul(lt, du[t], out=tt), dim=2, out=gBl[t, m0:m1])
        gdA[:, m0:m1] = hs.mul_(A3).sum(-1)
        gA += acc.sum(0)
    return gdA.addcmul_(ul, gS), dl * gS, gA, gBl, gCl


class _ChunkedScan(torch.autograd.Function):
    """Prepared (Δ, u, A, B (b,g,n,l), C, reset) -> (y (b,d,l), last_state (b,d,n)), chunked.

    Saves only the chunk layouts of Δ, u, B, C (O(L·(d+n))) plus the chunk-boundary states H_in and
    chunk decays P (O(L/Q·d·n)); the backward recomputes the states tile by tile.
    """

    @staticmethod
    def forward(ctx, delta: Tensor, u: Tensor, A: Tensor, B: Tensor, C: Tensor,  # type: ignore[override]
                reset: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        b, d, length = u.shape
        g, n = B.shape[1], B.shape[2]
        ct = _compute_dtype(delta, u, A, B, C)
        q = chunk_size(length, u.device.type)
        lay = _Layout(b, d, g, n, length, q, math.ceil(length / q), ct)
        dl = _to_chunks(delta, q, lay.nc, ct).view(q, lay.m, g, lay.dg)  # pad: Δ = 0 -> a = 1
        ul = _to_chunks(u, q, lay.nc, ct).view(q, lay.m, g, lay.dg)  # pad: u = 0 -> no input
        Bl = _to_chunks(B, q, lay.nc, ct).view(q, lay.m, g, n)
        Cl = _to_chunks(C, q, lay.nc, ct).view(q, lay.m, g, n)
        keep = None if reset is None else 1 - _to_chunks(reset, q, lay.nc, ct).view(q, lay.m)
        A3 = A.to(ct).reshape(g, lay.dg, n)
        yl, H_in, P, last = _chunked_forward(lay, dl, dl * ul, A3, Bl, Cl, keep)
        ctx.lay = lay
        ctx.dtypes = (delta.dtype, u.dtype, A.dtype, B.dtype, C.dtype)
        ctx.save_for_backward(dl, ul, A3, Bl, Cl, keep, H_in, P)
        ctx.mark_non_differentiable(last)
        return _from_chunks(yl.view(q, lay.nc, b, d), length, ct), last

    @staticmethod
    @once_differentiable
    def backward(ctx, gy: Tensor, _g_last: Tensor) -> Tuple[Optional[Tensor], ...]:  # type: ignore[override]
        lay: _Layout = ctx.lay
        dl, ul, A3, Bl, Cl, keep, H_in, P = ctx.saved_tensors
        gyl = _to_chunks(gy, lay.q, lay.nc, lay.dtype).view(lay.q, lay.m, lay.g, lay.dg)
        gdl, gul, gA, gBl, gCl = _chunked_backward(lay, gyl, dl, ul, A3, Bl, Cl, keep, H_in, P)
        td, tu, tA, tB, tC = ctx.dtypes
        shape_d = (lay.q, lay.nc, lay.b, lay.d)
        shape_bc = (lay.q, lay.nc, lay.b, lay.g, lay.n)
        return (
            _from_chunks(gdl.view(shape_d), lay.length, td),
            _from_chunks(gul.view(shape_d), lay.length, tu),
            gA.reshape(lay.d, lay.n).to(tA),
            _from_chunks(gBl.view(shape_bc), lay.length, tB),
            _from_chunks(gCl.view(shape_bc), lay.length, tC),
            None,
        )


def chunked_scan_core(delta: Tensor, u: Tensor, A: Tensor, B: Tensor, C: Tensor,
                      reset: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """The pure-PyTorch scan core: y_t = Σ_n C_t·h_t with h_t = exp(Δ_t A)·h_{t−1} + Δ_t u_t B_t.

    Takes the PREPARED step Δ (bias and softplus already applied) and u (b, d, l), A (d, n), B and C
    grouped (b, g, n, l), optional reset (b, l) bool (a_t = 0 where set). Returns y (b, d, l) and the
    detached last state (b, d, n), both float32 (float64 if an input is float64); differentiable
    w.r.t. delta, u, A, B and C. Same contract as ``cpu_kernel.scan_core``.
    """
    _check_core(delta, u, A, B, C, reset)
    return _ChunkedScan.apply(delta, u, A, B, C, reset)


def _check_core(delta: Tensor, u: Tensor, A: Tensor, B: Tensor, C: Tensor, reset: Optional[Tensor]) -> None:
    """Shape checks for the core contract, so a malformed call fails loudly instead of mis-broadcasting."""
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f"chunked_scan_core: delta {tuple(delta.shape)} and u {tuple(u.shape)} must both be (b, d, l)")
    b, d, length = u.shape
    if A.dim() != 2 or A.shape[0] != d:
        raise ValueError(f"chunked_scan_core: A has shape {tuple(A.shape)} but expected (d={d}, n)")
    n = A.shape[1]
    for name, X in (("B", B), ("C", C)):
        if X.dim() != 4 or X.shape[0] != b or X.shape[2:] != (n, length) or d % X.shape[1]:
            raise ValueError(
                f"chunked_scan_core: {name} has shape {tuple(X.shape)} but expected (b={b}, g, n={n}, l={length})"
                f" with d={d} divisible by g"
            )
    if B.shape != C.shape:
        raise ValueError(f"chunked_scan_core: B {tuple(B.shape)} and C {tuple(C.shape)} must have the same groups")
    if reset is not None and (reset.dtype != torch.bool or reset.shape != (b, length)):
        raise ValueError(f"chunked_scan_core: reset must be bool (b={b}, l={length}), got {reset.dtype} {tuple(reset.shape)}")


# --------------------------------------------------------------------------------------------------
# Public entry point and backend dispatch (SCAN.md §5 "Dispatch design")
# --------------------------------------------------------------------------------------------------


def set_default_backend(name: Optional[str]) -> None:
    """Default backend for calls that pass none; ``None`` returns to the env var / 'auto'.

    Precedence: the call's ``backend`` > this default > ``$CSSMAMBA_SCAN_BACKEND`` > 'auto'.
    """
    global _default_backend
    if name is not None and name not in BACKENDS:
        raise ValueError(f"set_default_backend: name must be one of {BACKENDS} or None, got {name!r}")
    _default_backend = name


def last_backend() -> str:
    """The backend the latest ``selective_scan`` call ran ('torch', 'cpp', 'cuda'; 'none' before any)."""
    return _last_backend


def _requested_backend(backend: Optional[str]) -> str:
    """Resolve the call argument, the programmatic default and the env var into one name."""
    if backend is not None:
        if backend not in BACKENDS:
            raise ValueError(f"selective_scan: backend must be one of {BACKENDS}, got {backend!r}")
        return backend
    if _default_backend is not None:
        return _default_backend
    env = os.environ.get(ENV_BACKEND, "").strip().lower()
    if not env:
        return "auto"
    if env not in BACKENDS:
        raise ValueError(f"selective_scan: ${ENV_BACKEND}={env!r} is not one of {BACKENDS}")
    return env


def _import_skipping_package_init(module: str) -> ModuleType:
    """Import ``module`` (e.g. 'mamba_ssm.ops.selective_scan_interface') without running its top-level
    package's ``__init__.py``.

    mamba-ssm 2.x's ``__init__`` imports Mamba2/Mamba3 and the language-model code (triton kernels,
    transformers), none of which the scan needs; any failure there would hide a working
    ``selective_scan_fn``. So, unless the package is already imported (then it is used as it is), the
    package is registered as an empty module whose ``__path__`` points at its folder, and only the
    requested submodule and its own imports run. The light package stays registered on success: its
    submodules are the real ones. On failure everything this import added is removed again.
    """
    top = module.partition(".")[0]
    if top in sys.modules:
        return importlib.import_module(module)
    spec = importlib.util.find_spec(top)
    if spec is None or spec.submodule_search_locations is None:
        raise ModuleNotFoundError(f"No module named {top!r}", name=top)
    before = set(sys.modules)
    sys.modules[top] = importlib.util.module_from_spec(spec)  # __path__ set, __init__.py not executed
    try:
        return importlib.import_module(module)
    except BaseException:
        for name in set(sys.modules) - before:
            if name == top or name.startswith(top + "."):
                del sys.modules[name]
        raise


def _probe_cuda() -> Tuple[Optional[Callable[..., Any]], str]:
    """Import mamba-ssm's ``selective_scan_fn`` once and cache (fn, "") or (None, why not).

    ``selective_scan_cuda`` is imported explicitly first: unreleased mamba-ssm imports without it and
    only fails on call. Only ``mamba_ssm.ops.selective_scan_interface`` is loaded, not the package's
    ``__init__`` (see ``_import_skipping_package_init``). Any Exception (missing module, triton,
    undefined symbol) means "unavailable".
    """
    global _cuda_probe
    if _cuda_probe is None:
        try:
            import selective_scan_cuda  # noqa: F401
            interface = _import_skipping_package_init("mamba_ssm.ops.selective_scan_interface")
            fn = interface.selective_scan_fn
        except Exception as exc:  # the reason is kept and reported; the scan falls back to torch
            _cuda_probe = (None, f"{type(exc).__name__}: {exc}")
        else:
            _cuda_probe = (fn, "")
    return _cuda_probe


def mamba_ssm_status() -> str:
    """mamba-ssm's state for *Check installation*: 'available', 'not installed' or
    'installed but failed: <reason>' (the reason a CUDA run falls back to the torch scan)."""
    installed = sys.modules.get("mamba_ssm") is not None or importlib.util.find_spec("mamba_ssm") is not None
    if not installed:
        return "not installed"
    fn, why = _probe_cuda()
    return "available" if fn is not None else f"installed but failed: {why}"


def _warn_cuda_fallback(why: str) -> None:
    """Say once per process, as a WARNING, that a CUDA run uses the torch scan and what it costs: the
    per-call backend line is INFO and easily missed, and the cost is large."""
    global _cuda_fallback_warned
    if not _cuda_fallback_warned:
        _cuda_fallback_warned = True
        _log.warning("mamba-ssm's CUDA scan is unavailable (%s); using the pure-PyTorch scan on CUDA, %s. "
                     "Install mamba-ssm for the GPU (see README) to avoid this.", why, _CUDA_FALLBACK_COST)


def _cpu_kernel_status() -> Tuple[Optional[Any], str]:
    """(cpu_kernel module, "") when the compiled CPU kernel can run, else (None, why not)."""
    try:
        from . import cpu_kernel
    except ModuleNotFoundError as exc:  # only the optional module itself being absent is tolerated
        if exc.name != f"{__package__}.cpu_kernel":
            raise
        return None, "engine.ssm.cpu_kernel is not installed"
    if not cpu_kernel.is_available():
        # build_error() is optional in the scan_core contract; without it the module's log says why.
        build_error = getattr(cpu_kernel, "build_error", None)
        reason = build_error() if build_error is not None else None
        why = (reason or "see the engine.ssm.cpu_kernel log").splitlines()[0]
        return None, f"compiled kernel unavailable: {why}"
    return cpu_kernel, ""


def _choose_backend(requested: str, is_cuda: bool, has_reset: bool) -> Tuple[str, str, Optional[Any]]:
    """-> (backend, why, implementation) where implementation is the cpu_kernel module or
    ``selective_scan_fn`` for 'cpp' / 'cuda' and None for 'torch'. Raises RuntimeError when an
    explicitly requested backend cannot run, naming the missing piece."""
    where = "CUDA" if is_cuda else "CPU"
    if requested == "torch":
        return "torch", f"chunked, {where}; requested", None
    if requested == "cpp":
        if is_cuda:
            raise RuntimeError("selective_scan: backend='cpp' is the compiled CPU kernel but the inputs are on CUDA")
        kernel, why = _cpu_kernel_status()
        if kernel is None:
            raise RuntimeError(f"selective_scan: backend='cpp' requested but {why}")
        return "cpp", "compiled CPU kernel; requested", kernel
    if requested == "cuda":
        if not is_cuda:
            raise RuntimeError("selective_scan: backend='cuda' needs CUDA tensors but the inputs are on the CPU")
        if has_reset:
            raise RuntimeError("selective_scan: backend='cuda' (mamba-ssm) has no reset/varlen support; use 'torch'")
        fn, why = _probe_cuda()
        if fn is None:
            raise RuntimeError(f"selective_scan: backend='cuda' requested but mamba-ssm's kernel is unavailable ({why})")
        return "cuda", "mamba-ssm selective_scan_fn; requested", fn
    if is_cuda:
        if has_reset:
            return "torch", "chunked, CUDA; reset mask given (mamba-ssm has no varlen support)", None
        fn, why = _probe_cuda()
        if fn is None:
            _warn_cuda_fallback(why)
            return "torch", f"chunked, CUDA; mamba-ssm unavailable: {why}", None
        return "cuda", "mamba-ssm selective_scan_fn, CUDA", fn
    kernel, why = _cpu_kernel_status()
    if kernel is None:
        return "torch", f"chunked, CPU; {why}", None
    return "cpp", "compiled CPU kernel", kernel


def _record_backend(name: str, why: str) -> None:
    """Remember the backend for ``last_backend`` and log it the first time it runs."""
    global _last_backend
    _last_backend = name
    if name not in _logged_backends:
        _logged_backends.add(name)
        _log.info("selective scan backend: %s (%s)", name, why)


def _as_grouped(X: Tensor, b: int, d: int, length: int) -> Tensor:
    """B or C in any accepted form -> (b, g, n, l); the constant (d, n) form becomes g = d (expanded,
    and materialised by the chunk layout: O(L·d·n), so prefer variable B/C for long sequences)."""
    if X.dim() == 2:
        return X[None, :, :, None].expand(b, d, X.shape[1], length)
    return X.unsqueeze(1) if X.dim() == 3 else X


def _fmt(shape: torch.Size) -> str:
    return str(tuple(shape))


def _validate(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
              z: Optional[Tensor], delta_bias: Optional[Tensor], reset: Optional[Tensor], who: str) -> None:
    """Raise ValueError naming the argument and the expected vs given shape/dtype/device."""
    named = {"u": u, "delta": delta, "A": A, "B": B, "C": C, "D": D, "z": z, "delta_bias": delta_bias}
    for name, t in named.items():
        if t is None:
            continue
        if not isinstance(t, Tensor):
            raise ValueError(f"{who}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise ValueError(f"{who}: {name} has dtype {t.dtype} but expected a real floating dtype")
        if t.device != u.device:
            raise ValueError(f"{who}: {name} is on {t.device} but u is on {u.device}")
    if u.dim() != 3 or min(u.shape) == 0:
        raise ValueError(f"{who}: u has shape {_fmt(u.shape)} but expected (b, d, l) with b, d, l >= 1")
    b, d, length = u.shape
    for name, t in (("delta", delta), ("z", z)):
        if t is not None and t.shape != u.shape:
            raise ValueError(f"{who}: {name} has shape {_fmt(t.shape)} but expected (b={b}, d={d}, l={length}) like u")
        if t is not None and t.dtype != u.dtype:
            raise ValueError(f"{who}: {name} has dtype {t.dtype} but expected u's dtype {u.dtype}")
    if A.dim() != 2 or A.shape[0] != d or A.shape[1] == 0:
        raise ValueError(f"{who}: A has shape {_fmt(A.shape)} but expected (d={d}, n) with n >= 1")
    n = A.shape[1]
    for name, X in (("B", B), ("C", C)):
        ok = (
            (X.dim() == 2 and X.shape == (d, n))
            or (X.dim() == 3 and X.shape == (b, n, length))
            or (X.dim() == 4 and X.shape[0] == b and X.shape[2:] == (n, length) and X.shape[1] > 0 and d % X.shape[1] == 0)
        )
        if not ok:
            raise ValueError(
                f"{who}: {name} has shape {_fmt(X.shape)} but expected (b={b}, g, n={n}, l={length}) with d={d}"
                f" divisible by g, (b={b}, n={n}, l={length}) or constant (d={d}, n={n})"
            )
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.shape != (d,):
            raise ValueError(f"{who}: {name} has shape {_fmt(t.shape)} but expected (d={d},)")
    if reset is not None:
        if not isinstance(reset, Tensor) or reset.dtype != torch.bool:
            raise ValueError(f"{who}: reset must be a torch.bool tensor, got {getattr(reset, 'dtype', type(reset))}")
        if reset.shape != (b, length):
            raise ValueError(f"{who}: reset has shape {_fmt(reset.shape)} but expected (b={b}, l={length})")
        if reset.device != u.device:
            raise ValueError(f"{who}: reset is on {reset.device} but u is on {u.device}")


def _run_mamba_ssm(fn: Callable[..., Any], u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                   z: Optional[Tensor], delta_bias: Optional[Tensor], delta_softplus: bool,
                   return_last_state: bool) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """Call mamba-ssm's ``selective_scan_fn`` within its contract (SCAN.md §5.4): last dim contiguous,
    fp32 A / D / delta_bias and constant (d, n) B/C, variable B/C and z in u's dtype."""

    def weight(t: Optional[Tensor]) -> Optional[Tensor]:
        return None if t is None else t.float().contiguous()

    def activation(t: Optional[Tensor]) -> Optional[Tensor]:
        return None if t is None else t.to(u.dtype).contiguous()

    B, C = (weight(X) if X.dim() == 2 else activation(X) for X in (B, C))
    res = fn(u.contiguous(), delta.contiguous(), weight(A), B, C, weight(D), activation(z), weight(delta_bias),
             delta_softplus, return_last_state)
    if return_last_state:
        out, last = res
        return out.to(u.dtype), last.float().detach()
    return res.to(u.dtype)


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Optional[Tensor] = None,
    z: Optional[Tensor] = None,
    delta_bias: Optional[Tensor] = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    reset: Optional[Tensor] = None,
    backend: Optional[str] = None,
) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """Selective scan with mamba-ssm ``selective_scan_fn`` semantics (SCAN.md §1, MODELS.md §2.1).

    u, delta, z (b, d, l) of one dtype; A (d, n); B, C (b, g, n, l), (b, n, l) or constant (d, n);
    D, delta_bias (d,); reset (b, l) bool sets a_t = 0 where a packed sequence starts (torch/cpp
    backends only). Δ = softplus(delta + delta_bias) (softplus optional, threshold 20);
    out = (Σ_n C h + D u)·silu(z), cast to u's dtype; arithmetic and the state are fp32 (fp64 for
    fp64 inputs). Returns out (b, d, l), or (out, last_state (b, d, n), no gradient).

    ``backend``: 'auto' (default; see ``set_default_backend`` and $CSSMAMBA_SCAN_BACKEND), 'torch',
    'cpp' or 'cuda'. 'auto' takes mamba-ssm on CUDA tensors without reset if it imports, the compiled
    kernel on CPU if it builds, else the chunked torch scan.
    """
    _validate(u, delta, A, B, C, D, z, delta_bias, reset, "selective_scan")
    name, why, impl = _choose_backend(_requested_backend(backend), u.is_cuda, reset is not None)
    _record_backend(name, why)
    if name == "cuda":
        return _run_mamba_ssm(impl, u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)

    b, d, length = u.shape
    ct = _compute_dtype(u, delta, A, B, C, D, z, delta_bias)
    dt = delta.to(ct)
    if delta_bias is not None:
        dt = dt + delta_bias.to(ct)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)  # beta 1, threshold 20, as in mamba-ssm
    uc = u.to(ct)
    Bg, Cg = _as_grouped(B.to(ct), b, d, length), _as_grouped(C.to(ct), b, d, length)
    g = math.lcm(Bg.shape[1], Cg.shape[1])
    Bg = Bg if Bg.shape[1] == g else Bg.repeat_interleave(g // Bg.shape[1], dim=1)
    Cg = Cg if Cg.shape[1] == g else Cg.repeat_interleave(g // Cg.shape[1], dim=1)
    core = chunked_scan_core if name == "torch" else impl.scan_core
    y, last = core(dt, uc, A.to(ct), Bg, Cg, reset)
    del dt
    # Without autograd y is ours alone, so the epilogue updates it in place: in prediction this saves
    # two (b, d, l) tensors at the peak of the largest scan (the same arithmetic, the same result).
    in_place = not (torch.is_grad_enabled() and y.requires_grad)
    if D is not None:
        y = y.add_(D.to(ct)[:, None] * uc) if in_place else y + D.to(ct)[:, None] * uc
    if z is not None:
        y = y.mul_(F.silu(z.to(ct))) if in_place else y * F.silu(z.to(ct))
    out = y.to(u.dtype)
    return (out, last) if return_last_state else out
