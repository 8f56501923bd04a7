"""The Mamba block (MODELS.md §2.2) on top of our selective scan.

Parameter names, shapes and initialisation follow mamba-ssm 1.2.0's ``Mamba``, so its state dicts load
with ``strict=True``. Two additions, both optional:

- ``reset`` (b, l) marks sequence starts, so a batch row may hold several concatenated sequences; the
  causal conv and the scan both stop at those boundaries and each sequence comes out as if run alone.
- ``bidirectional=True`` adds a reversed direction with Vision Mamba's "v2" parameter names
  (``conv1d_b``, ``x_proj_b``, ``dt_proj_b``, ``A_b_log``, ``D_b``); ``in_proj`` and ``out_proj`` are shared.
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Callable, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .scan import BACKENDS, selective_scan

__all__ = ["Mamba"]

_log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=None)
def _causal_conv1d_fn() -> Optional[Callable[..., Tensor]]:
    """The fused ``causal_conv1d_fn`` if the optional GPU extra imports, else None (SCAN.md §5.5).

    Probed lazily, on the first CUDA forward, so CPU use never touches the package.
    """
    try:
        from causal_conv1d import causal_conv1d_fn
    except Exception as exc:  # a missing package and a broken CUDA build both mean "use torch"
        level = logging.INFO if isinstance(exc, ModuleNotFoundError) else logging.WARNING  # broken: say so
        _log.log(level, "causal_conv1d unavailable (%s: %s); Mamba uses the torch depthwise conv, somewhat slower "
                 "on CUDA", type(exc).__name__, exc)
        return None
    _log.info("Mamba uses causal_conv1d's fused conv on CUDA")
    return causal_conv1d_fn


def _linear_channel_first(h: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """F.linear(h, weight, bias) laid out channel-first: (b, l, in) -> (b, out, l).

    For one long sequence (b = 1: the whole-image scans) this is the single GEMM weight @ hᵀ, whose
    result is already contiguous in the scan's (b, channels, l) layout, as in mamba-ssm. A transposed
    view of F.linear's (b, l, out) instead makes the conv, the scan and the SiLU gate copy or stride
    through memory: a CSSMamba training step on the EnMAP mosaic (width 32, 1 thread) took 0.87x the
    time this way. Batches of short sequences (the spectral scans) keep F.linear, since their GEMM
    would be batched and the (b, out, l) result not contiguous anyway.
    """
    if h.shape[0] != 1:
        return F.linear(h, weight, bias).transpose(1, 2)
    out = (weight @ h[0].transpose(0, 1))[None]
    return out if bias is None else out + bias[:, None]


def _linear_from_channel_first(y: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """F.linear over the channels of a channel-first y: (b, in, l) -> (b, l, out); the inverse layout
    of ``_linear_channel_first``, so the gradient reaching the scan is channel-first too (b = 1)."""
    if y.shape[0] != 1:
        return F.linear(y.transpose(1, 2), weight, bias)
    out = weight @ y[0]
    if bias is not None:
        out = out + bias[:, None]
    return out.transpose(0, 1)[None]


def _at_least_fp32(t: Tensor) -> Tensor:
    """fp16/bf16 -> fp32 for A, D and delta_bias (the scan's contract); fp32/fp64 stay as they are."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _same_dtype(*tensors: Tensor) -> Tuple[Tensor, ...]:
    """The scan's inputs u, delta, B, C, z in one dtype: autocast's where it is on, else u's.

    Under autocast the projections come out in bf16/fp16 while an op autocast leaves alone (the
    reset-aware conv's products with fp32 weights, a CPU conv) stays fp32; the scan (and mamba-ssm's
    kernel) needs u, delta and z in the same dtype. The scan accumulates its state in fp32 anyway.
    """
    device = tensors[0].device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else tensors[0].dtype
    return tuple(t.to(dtype) for t in tensors)


def _segment_starts(reset: Tensor) -> Tensor:
    """(b, l) bool -> (b, l) long: index of the first token of the sequence each token belongs to."""
    pos = torch.arange(reset.shape[1], device=reset.device)
    return torch.cummax(torch.where(reset, pos, 0), dim=1).values


def _segment_reversal(reset: Tensor, starts: Tensor) -> Tensor:
    """(b, l) index that reverses every sequence in place: token t of [s, e] goes to s + e − t.

    An involution. Reversing each sequence where it sits (instead of flipping the whole row) keeps
    the sequence boundaries at the same positions, so both directions share one reset mask.
    """
    l = reset.shape[1]
    pos = torch.arange(l, device=reset.device)
    is_end = torch.cat([reset[:, 1:], torch.ones_like(reset[:, :1])], dim=1)
    ends = torch.where(is_end, pos, l - 1).flip(1).cummin(dim=1).values.flip(1)
    return starts + ends - pos


def _reverse(x: Tensor, perm: Optional[Tensor]) -> Tensor:
    """Reverse (b, c, l) along l: a plain flip, or per sequence with a ``_segment_reversal`` index."""
    if perm is None:
        return x.flip(-1)
    return x.gather(2, perm[:, None, :].expand_as(x))


class Mamba(nn.Module):
    """Mamba-1 block: in_proj -> causal depthwise conv + SiLU -> selective scan gated by SiLU(z) -> out_proj.

    Sizes: d_model m, inner width e = expand·m, state n = d_state, dt rank r = ⌈m/16⌉ when 'auto'.
    Input and output are (b, l, m).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: float = 2,
        dt_rank: Union[int, str] = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        bidirectional: bool = False,
        scan_backend: Optional[str] = None,
        device: Optional[Union[torch.device, str]] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        for name, value in (("d_model", d_model), ("d_state", d_state), ("d_conv", d_conv)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(expand, (int, float)) or isinstance(expand, bool) or int(expand * d_model) <= 0:
            raise ValueError(f"expand must be a number with int(expand * d_model) >= 1, got {expand!r}")
        if dt_rank != "auto" and (not isinstance(dt_rank, int) or isinstance(dt_rank, bool) or dt_rank <= 0):
            raise ValueError(f"dt_rank must be 'auto' or a positive int, got {dt_rank!r}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min!r}, dt_max={dt_max!r}")
        if not dt_init_floor > 0:
            raise ValueError(f"dt_init_floor must be > 0, got {dt_init_floor!r}")
        if scan_backend is not None and scan_backend not in BACKENDS:
            raise ValueError(f"scan_backend must be None or one of {BACKENDS}, got {scan_backend!r}")

        factory = {"device": device, "dtype": dtype}
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.expand = expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else dt_rank
        self.bidirectional = bidirectional
        self.scan_backend = scan_backend
        self._dt_range = (dt_min, dt_max, dt_init_floor)

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias, **factory)
        self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D = self._direction(conv_bias, device, dtype)
        if bidirectional:
            (self.conv1d_b, self.x_proj_b, self.dt_proj_b,
             self.A_b_log, self.D_b) = self._direction(conv_bias, device, dtype)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory)

    def _direction(
        self, conv_bias: bool, device: Optional[Union[torch.device, str]], dtype: Optional[torch.dtype]
    ) -> Tuple[nn.Conv1d, nn.Linear, nn.Linear, nn.Parameter, nn.Parameter]:
        """Parameters of one scan direction, initialised as in §2.2."""
        factory = {"device": device, "dtype": dtype}
        e, n, r = self.d_inner, self.d_state, self.dt_rank
        dt_min, dt_max, dt_floor = self._dt_range
        conv1d = nn.Conv1d(e, e, self.d_conv, groups=e, padding=self.d_conv - 1, bias=conv_bias, **factory)
        x_proj = nn.Linear(e, r + 2 * n, bias=False, **factory)  # rows [δ | B | C]
        dt_proj = nn.Linear(r, e, bias=True, **factory)
        with torch.no_grad():
            dt_proj.weight.uniform_(-(r**-0.5), r**-0.5)
            # τ log-uniform in [dt_min, dt_max]; the bias is softplus⁻¹(τ), so Δ starts at τ.
            tau = torch.exp(
                torch.rand(e, device=device) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
            ).clamp(min=dt_floor)
            dt_proj.bias.copy_(tau + torch.log(-torch.expm1(-tau)))
        dt_proj.bias._no_reinit = True  # upstream's marker: model-level re-inits keep this bias
        # A = −exp(A_log) with row j = −[1 … n] (S4D-real); kept in fp32 whatever `dtype` is.
        A_log = nn.Parameter(
            torch.log(torch.arange(1, n + 1, dtype=torch.float32, device=device)).repeat(e, 1)
        )
        A_log._no_weight_decay = True
        D = nn.Parameter(torch.ones(e, dtype=torch.float32, device=device))
        D._no_weight_decay = True
        return conv1d, x_proj, dt_proj, A_log, D

    def forward(self, hidden_states: Tensor, reset: Optional[Tensor] = None) -> Tensor:
        """(b, l, d_model) -> (b, l, d_model).

        ``reset`` (b, l) bool marks the first token of each sequence packed into a row; tokens before
        the latest reset neither reach the conv nor the scan state, so every sequence is processed as
        if alone. Position 0 always starts a sequence.
        """
        self._check_inputs(hidden_states, reset)
        starts = None if reset is None else _segment_starts(reset)
        if self._lean(hidden_states):
            return self._forward_lean(hidden_states, reset, starts)
        # (b, l, m) -> (b, 2e, l): the scan works channel-first.
        x, z = _linear_channel_first(hidden_states, self.in_proj.weight, self.in_proj.bias).chunk(2, dim=1)
        u, delta, B, C = self._project(x, self.conv1d, self.x_proj, self.dt_proj, starts)
        A, D, dt_bias = -torch.exp(_at_least_fp32(self.A_log)), self.D, self.dt_proj.bias
        if self.bidirectional:
            # Both directions go through ONE scan call, stacked along channels (e -> 2e) with grouped
            # B/C (g = 2: channels [0, e) read group 0, [e, 2e) group 1). A, D and delta_bias are
            # per channel, so each direction keeps its own; stacking along the batch instead would
            # force one A for both. One call also halves the launches on the fused kernel.
            perm = None if reset is None else _segment_reversal(reset, starts)
            x_b, z_b = _reverse(x, perm), _reverse(z, perm)
            u_b, delta_b, B_b, C_b = self._project(x_b, self.conv1d_b, self.x_proj_b, self.dt_proj_b, starts)
            u, delta, z = torch.cat([u, u_b], 1), torch.cat([delta, delta_b], 1), torch.cat([z, z_b], 1)
            B, C = torch.stack([B, B_b], 1), torch.stack([C, C_b], 1)
            A = torch.cat([A, -torch.exp(_at_least_fp32(self.A_b_log))])
            D, dt_bias = torch.cat([D, self.D_b]), torch.cat([dt_bias, self.dt_proj_b.bias])
        u, delta, B, C, z = _same_dtype(u, delta, B, C, z)
        y = selective_scan(
            u, delta, A, B, C, _at_least_fp32(D), z=z, delta_bias=_at_least_fp32(dt_bias),
            delta_softplus=True, reset=reset, backend=self.scan_backend,
        )  # (b, e or 2e, l), already gated by SiLU(z)
        if self.bidirectional:
            y_f, y_b = y.chunk(2, dim=1)
            y = (y_f + _reverse(y_b, perm)) / 2
        return _linear_from_channel_first(y, self.out_proj.weight, self.out_proj.bias)

    def _lean(self, hidden_states: Tensor) -> bool:
        """Whether ``_forward_lean`` gives this forward: no gradient, CPU, float32, one direction."""
        return (not torch.is_grad_enabled() and hidden_states.device.type == "cpu" and not self.bidirectional
                and hidden_states.dtype == torch.float32 and not torch.is_autocast_enabled("cpu"))

    def _forward_lean(self, hidden_states: Tensor, reset: Optional[Tensor], starts: Optional[Tensor]) -> Tensor:
        """``forward`` in less memory, for prediction on the CPU: the gate's half of in_proj is computed
        after the scan and every (b, e, l) buffer is dropped once spent, so at most four of them live at
        a time instead of seven (the whole-tile spatial scans dominate prediction's peak memory). The same
        arithmetic in the same order as ``forward``, except that the two halves of in_proj are two GEMMs.
        """
        e, weight, bias = self.d_inner, self.in_proj.weight, self.in_proj.bias
        x = _linear_channel_first(hidden_states, weight[:e], None if bias is None else bias[:e])
        u, delta, B, C = self._project(x, self.conv1d, self.x_proj, self.dt_proj, starts)
        del x
        y = selective_scan(
            u, delta, -torch.exp(_at_least_fp32(self.A_log)), B, C, _at_least_fp32(self.D),
            delta_bias=_at_least_fp32(self.dt_proj.bias), delta_softplus=True, reset=reset, backend=self.scan_backend,
        )  # (y + D·u), not yet gated
        del u, delta, B, C
        z = _linear_channel_first(hidden_states, weight[e:], None if bias is None else bias[e:])
        y = y.mul_(F.silu(z, inplace=True))
        return _linear_from_channel_first(y, self.out_proj.weight, self.out_proj.bias)

    def _project(
        self, x: Tensor, conv1d: nn.Conv1d, x_proj: nn.Linear, dt_proj: nn.Linear, starts: Optional[Tensor]
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """One direction's scan inputs from x (b, e, l): u and delta (b, e, l), B and C (b, n, l).

        delta leaves out dt_proj.bias: the scan adds it as delta_bias before the softplus.
        """
        u = self._conv_silu(x, conv1d, starts)
        dt, B, C = x_proj(u.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = _linear_channel_first(dt, dt_proj.weight)
        return u, delta, B.transpose(1, 2), C.transpose(1, 2)

    @staticmethod
    def _conv_silu(x: Tensor, conv1d: nn.Conv1d, starts: Optional[Tensor]) -> Tensor:
        """SiLU(causal depthwise conv(x)), (b, e, l) -> (b, e, l).

        With ``starts`` (b, l) the tap reading x[t−k] is dropped when t−k lies before the start of
        t's sequence, i.e. the conv restarts from zero padding at each reset.

        Without a gradient (prediction, validation) on the CPU the conv is always d_conv shifted
        multiply-adds into one buffer: PyTorch's CPU depthwise conv1d runs as a one-row 2-D convolution
        and took 2x the time at (1, 128, 65,536), the spatial scan of a 256 px tile. With a gradient the
        shifted adds are dearer in the backward (2.5x at 30,720 tokens), so training keeps the conv unless
        a reset mask needs the taps (bench/results/speed_classify_conv.md); the results differ from the
        conv's by rounding only.
        """
        l = x.shape[-1]
        in_place = not torch.is_grad_enabled() and not x.is_cuda
        if starts is None and not in_place:
            fused = _causal_conv1d_fn() if x.is_cuda else None
            if fused is not None:
                return fused(x.contiguous(), conv1d.weight.squeeze(1), conv1d.bias, activation="silu")
            return F.silu(conv1d(x)[..., :l])
        w = conv1d.weight.squeeze(1)  # (e, K); tap k (lag) uses w[:, K−1−k]
        k_max = w.shape[1] - 1
        out = x * w[:, k_max, None]
        pos = None if starts is None else torch.arange(l, device=x.device)
        for k in range(1, min(k_max, l - 1) + 1):
            earlier = x[..., : l - k]
            if starts is not None:
                earlier = earlier * (pos[k:] - k >= starts[:, k:]).unsqueeze(1)  # (b, 1, l−k): same sequence
            if in_place:
                out[..., k:] += earlier * w[:, k_max - k, None]
            else:
                out = out + F.pad(earlier, (k, 0)) * w[:, k_max - k, None]
        if in_place:
            if conv1d.bias is not None:
                out.add_(conv1d.bias[:, None])
            return F.silu(out, inplace=True)
        if conv1d.bias is not None:
            out = out + conv1d.bias[:, None]
        return F.silu(out)

    def _check_inputs(self, hidden_states: Tensor, reset: Optional[Tensor]) -> None:
        """Raise ValueError with expected vs given shape/dtype before anything reaches the scan."""
        if not isinstance(hidden_states, Tensor) or hidden_states.dim() != 3:
            given = tuple(hidden_states.shape) if isinstance(hidden_states, Tensor) else type(hidden_states).__name__
            raise ValueError(f"hidden_states must be 3-D (batch, length, d_model={self.d_model}), got {given}")
        b, l, m = hidden_states.shape
        if m != self.d_model:
            raise ValueError(f"hidden_states last dim must be d_model={self.d_model}, got shape {(b, l, m)}")
        if not hidden_states.is_floating_point():
            raise ValueError(f"hidden_states must be a floating dtype, got {hidden_states.dtype}")
        if l == 0:
            raise ValueError(f"hidden_states must have length >= 1, got shape {(b, l, m)}")
        if reset is not None:
            if not isinstance(reset, Tensor) or reset.dtype != torch.bool:
                given = reset.dtype if isinstance(reset, Tensor) else type(reset).__name__
                raise ValueError(f"reset must be a torch.bool tensor, got {given}")
            if tuple(reset.shape) != (b, l):
                raise ValueError(f"reset must have shape (batch, length) = {(b, l)}, got {tuple(reset.shape)}")

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, d_inner={self.d_inner}, d_state={self.d_state}, d_conv={self.d_conv}, "
            f"dt_rank={self.dt_rank}, bidirectional={self.bidirectional}"
        )
