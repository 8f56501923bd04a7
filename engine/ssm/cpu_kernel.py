"""Optional compiled CPU kernel for the selective scan core (Mamba-1 recurrence).

The C++ source (``csrc/selective_scan_cpu.cpp``) is JIT-built with
``torch.utils.cpp_extension.load`` on first use and cached per user under
``$XDG_CACHE_HOME/cssmamba/ext/<torch version>-<hash>`` (``~/.cache`` without XDG). The hash
covers the source, the compiler flags and, with ``-march=native``, the CPU, so a changed source,
another torch or another machine never loads a stale binary.

The kernel is optional (see docs SCAN.md section 4, "Portability"): ``is_available()`` returns
False, and logs why, when there is no compiler or ninja, when the build fails, or when the
environment variable ``CSSMAMBA_NO_CPP=1`` is set. The pure-PyTorch path stays the default.

``scan_core`` takes the *prepared* inputs (delta after bias and softplus; no D term, no z gate):

    h_{-1} = 0,  h_t = exp(delta_t * A) * h_{t-1} + delta_t * u_t * B_t,  y_t = sum_n C_t * h_t

with ``a_t = 0`` where ``reset[b, t]`` is set (a new sequence starts there).
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import threading
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

logger = logging.getLogger(__name__)

__all__ = ["is_available", "build_error", "scan_core"]

_SOURCE = Path(__file__).resolve().parent / "csrc" / "selective_scan_cpu.cpp"
_EXT_NAME = "cssmamba_scan_cpu"
_NO_CPP_ENV = "CSSMAMBA_NO_CPP"
_CHUNK = 128  # steps between state checkpoints; the backward recomputes h inside a chunk
_FWD_TILE = 16 * _CHUNK  # forward time tile: B/C rows shared by all lanes stay in cache
_BWD_TILE = 4 * _CHUNK  # backward time tile (one parallel region per tile)

_lock = threading.Lock()
_ops = None  # torch.ops.cssmamba_scan once loaded
_tried = False
_error: str | None = None


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cssmamba" / "ext"


def _cpu_fingerprint() -> str:
    """What a ``-march=native`` binary depends on: the CPU model and its feature flags."""
    keys = ("model name", "flags", "Features", "CPU part")
    found: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key = line.split(":", 1)[0].strip()
                if key in keys:
                    found.setdefault(key, line.strip())
    except OSError:
        pass
    return "|".join([platform.machine(), platform.processor(), *sorted(found.values())])


def _flag_variants() -> list[tuple[str, list[str], list[str]]]:
    """Compiler flags to try in order: (label, cflags, ldflags).

    OpenMP is what makes ``at::parallel_for`` in the kernel run in parallel (without it the
    header-only parallel_for is serial); on Linux the extension then shares torch's own libgomp.
    ``-march=native`` enables AVX2/AVX-512; the cache key then includes the CPU fingerprint.
    """
    if os.name == "nt":  # MSVC
        return [("openmp", ["/O2", "/openmp"], []), ("plain", ["/O2"], [])]
    base = ["-O3", "-ffp-contract=fast", "-fno-math-errno"]
    variants = []
    if platform.machine().lower() in ("x86_64", "amd64", "i686", "i386"):
        variants.append(("native+openmp", base + ["-march=native", "-fopenmp"], ["-fopenmp"]))
    variants.append(("openmp", base + ["-fopenmp"], ["-fopenmp"]))
    variants.append(("plain", base, []))  # e.g. Apple clang without libomp: serial kernel
    return variants


def _build(cflags: list[str], ldflags: list[str]) -> None:
    from torch.utils import cpp_extension  # imported lazily: it pulls in setuptools

    digest = hashlib.sha256()
    digest.update(_SOURCE.read_bytes())
    digest.update(" ".join(cflags + ldflags).encode())
    if any("native" in f for f in cflags):
        digest.update(_cpu_fingerprint().encode())
    build_dir = _cache_root() / f"{torch.__version__}-{digest.hexdigest()[:16]}"
    built = build_dir / f"{_EXT_NAME}{cpp_extension.LIB_EXT}"
    if built.is_file():  # the directory name pins source, flags and torch: load without ninja
        try:
            torch.ops.load_library(str(built))
            return
        except Exception as exc:
            logger.debug("cached kernel %s did not load (%s); rebuilding", built, exc)
    build_dir.mkdir(parents=True, exist_ok=True)
    cpp_extension.load(
        name=_EXT_NAME,
        sources=[str(_SOURCE)],
        extra_cflags=cflags,
        extra_ldflags=ldflags,
        build_directory=str(build_dir),
        is_python_module=False,
        verbose=False,
    )


def is_available() -> bool:
    """Build or load the extension once per process; False (and a logged reason) if it cannot."""
    global _ops, _tried, _error
    if _tried:
        return _ops is not None
    with _lock:
        if _tried:
            return _ops is not None
        try:
            if os.environ.get(_NO_CPP_ENV, "").strip() not in ("", "0"):
                raise RuntimeError(f"disabled by {_NO_CPP_ENV}={os.environ[_NO_CPP_ENV]}")
            if not _SOURCE.is_file():
                raise RuntimeError(f"source not found: {_SOURCE}")
            cxx = (os.environ.get("CXX") or "").strip() or ("cl" if os.name == "nt" else "c++")
            if shutil.which(cxx.split()[0]) is None:  # CXX may be "ccache g++"
                raise RuntimeError(f"no C++ compiler found ({cxx!r} is not on PATH)")
            variants = _flag_variants()
            for i, (label, cflags, ldflags) in enumerate(variants):
                try:
                    _build(cflags, ldflags)
                    break
                except Exception as exc:
                    if i + 1 == len(variants) or "Ninja is required" in str(exc):
                        raise  # last variant, or no build tool at all: give up
                    logger.debug("kernel build with %s flags failed: %s", label, exc)
            _ops = torch.ops.cssmamba_scan
            logger.info("selective scan: compiled CPU kernel loaded (%s flags)", label)
        except Exception as exc:  # any failure means "use the torch path"
            msg = f"{type(exc).__name__}: {exc}".strip()
            _error = msg if len(msg) < 2000 else msg[:2000] + " ..."
            logger.warning(
                "selective scan: compiled CPU kernel unavailable, using the PyTorch path (%s)",
                _error.splitlines()[0] if _error else "unknown error",
            )
            _ops = None
        _tried = True
    return _ops is not None


def build_error() -> str | None:
    """Why the kernel is unavailable (None if it loaded or was never probed)."""
    return _error


def _pad_n(x: torch.Tensor, np_: int) -> torch.Tensor:
    n = x.shape[-1]
    if n == np_:
        return x.contiguous()
    return torch.nn.functional.pad(x, (0, np_ - n)).contiguous()


def _prepare(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor):
    """Pad n to a multiple of 16 and lay B and C out time-major, (b, g, l, NP)."""
    n = A.shape[1]
    np_ = max(16, -(-n // 16) * 16)
    return _pad_n(A, np_), _pad_n(B.transpose(-1, -2), np_), _pad_n(C.transpose(-1, -2), np_)


class _ScanCore(torch.autograd.Function):
    @staticmethod
    def forward(ctx, delta, u, A, B, C, reset):
        n = A.shape[1]
        Ap, Bt, Ct = _prepare(A, B, C)
        y, last, ck = _ops.fwd(delta, u, Ap, Bt, Ct, reset, _CHUNK, _FWD_TILE, True)
        ctx.n = n
        ctx.save_for_backward(delta, u, Ap, Bt, Ct, ck, reset)
        last = last[..., :n].contiguous()
        ctx.mark_non_differentiable(last)
        return y, last

    @staticmethod
    @once_differentiable
    def backward(ctx, gy, _glast):
        delta, u, Ap, Bt, Ct, ck, reset = ctx.saved_tensors
        n = ctx.n
        if gy is None:
            gy = torch.zeros_like(delta)
        gd, gu, gA, gB, gC = _ops.bwd(
            delta, u, Ap, Bt, Ct, reset, ck, gy.contiguous(), _CHUNK, _BWD_TILE
        )
        gA = gA.sum(0)[:, :n]
        gB = gB[..., :n].transpose(-1, -2)  # back to (b, g, n, l)
        gC = gC[..., :n].transpose(-1, -2)
        need = ctx.needs_input_grad
        return (
            gd if need[0] else None,
            gu if need[1] else None,
            gA if need[2] else None,
            gB if need[3] else None,
            gC if need[4] else None,
            None,
        )


def scan_core(
    delta: torch.Tensor,
    u: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    reset: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused selective scan on CPU.

    Args:
        delta: (b, d, l) step size, already after delta_bias and softplus.
        u: (b, d, l) input.
        A: (d, n) state matrix (real; Mamba uses A = -exp(A_log)).
        B, C: (b, g, n, l); channel j reads group j // (d // g).
        reset: optional bool (b, l); True starts a new sequence at that step (h restarts from 0).

    Returns:
        y (b, d, l) = sum_n C_t * h_t (no D term, no z gate) and the detached last state
        h_{l-1} (b, d, n). float32 and float64 are computed in their own precision; other
        floating dtypes are computed in float32 and y is cast back.

    Differentiable w.r.t. delta, u, A, B and C. Raises RuntimeError if the kernel is unavailable.
    """
    if not is_available():
        raise RuntimeError(f"compiled CPU selective scan unavailable: {_error}")
    if delta.dim() != 3 or u.shape != delta.shape:
        raise ValueError(
            f"delta and u must be (b, d, l); got {tuple(delta.shape)}, {tuple(u.shape)}"
        )
    b, d, l = delta.shape
    if A.dim() != 2 or A.shape[0] != d:
        raise ValueError(f"A must be (d={d}, n); got {tuple(A.shape)}")
    n = A.shape[1]
    if B.dim() != 4 or B.shape != C.shape or B.shape[0] != b or B.shape[2] != n or B.shape[3] != l:
        raise ValueError(
            f"B and C must be (b={b}, g, n={n}, l={l}); got {tuple(B.shape)}, {tuple(C.shape)}"
        )
    g = B.shape[1]
    if g < 1 or d % g:
        raise ValueError(f"d={d} must be a multiple of the group count g={g}")
    if n > 256:
        raise ValueError(f"state size n={n} exceeds the kernel's limit of 256")
    tensors = (delta, u, A, B, C)
    if any(t.device.type != "cpu" for t in tensors):
        raise ValueError("scan_core runs on CPU tensors only")
    out_dtype = delta.dtype
    dtype = out_dtype if out_dtype in (torch.float32, torch.float64) else torch.float32
    delta, u, A = (t.to(dtype).contiguous() for t in (delta, u, A))
    # B and C stay as given: ``_prepare`` lays them out time-major, which is free when they come from
    # a projection as a transposed (b, l, n) view (Mamba's), where making them (n, l)-contiguous here
    # first would cost two copies of each.
    B, C = B.to(dtype), C.to(dtype)
    if reset is not None:
        if reset.shape != (b, l):
            raise ValueError(f"reset must be (b={b}, l={l}); got {tuple(reset.shape)}")
        reset = reset.to(device="cpu", dtype=torch.bool).contiguous()
    if torch.is_grad_enabled() and any(t.requires_grad for t in (delta, u, A, B, C)):
        y, last = _ScanCore.apply(delta, u, A, B, C, reset)
    else:  # no autograd graph: skip the checkpoints the backward would need
        Ap, Bt, Ct = _prepare(A, B, C)
        y, last, _ = _ops.fwd(delta, u, Ap, Bt, Ct, reset, _CHUNK, _FWD_TILE, False)
        last = last[..., :n].contiguous()
    if y.dtype != out_dtype:
        y = y.to(out_dtype)
    return y, last
