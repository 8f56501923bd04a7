"""Selective scan: the chunked torch path against the float64 loop (SCAN.md §1, MODELS.md §7 T1–T7),
plus validation and backend dispatch (SCAN.md §5)."""

import importlib.abc
import itertools
import logging
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from engine.ssm import scan
from engine.ssm.scan import (
    chunk_size,
    chunked_scan_core,
    last_backend,
    selective_scan,
    selective_scan_reference,
    set_default_backend,
)

RTOL = 1e-5  # SCAN.md §1: fp32 chunked vs float64 loop
GRAD_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """MODELS.md §7: ‖a − b‖∞ / max(‖b‖∞, 1e-12), b the reference."""
    a, b = a.double(), b.double()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def make_inputs(b, d, n, l, G=1, *, softplus=True, bias=True, D=True, z=True, stress=False, seed=0):
    """float64 inputs from the SCAN.md measurement distribution; G = '3d' gives (b, n, l) B/C."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*s):
        return torch.randn(*s, generator=gen, dtype=torch.float64)

    def unif(lo, hi, *s):
        return lo + (hi - lo) * torch.rand(*s, generator=gen, dtype=torch.float64)

    if softplus:  # pre-activation; softplus(delta + bias) in [1e-3, 0.1] at Mamba init
        delta = (2.0 if stress else 0.5) * randn(b, d, l)
        delta_bias = torch.log(torch.expm1(unif(1e-3, 0.1, d))) if bias else None
    else:  # Δ itself must stay positive without softplus
        delta = unif(0.5, 4.0, b, d, l) if stress else unif(1e-3, 0.1, b, d, l)
        delta_bias = unif(0.0, 0.05, d) if bias else None
    bc_shape = (b, n, l) if G == "3d" else (b, G, n, l)
    return dict(
        u=randn(b, d, l),
        delta=delta,
        A=-torch.arange(1, n + 1, dtype=torch.float64).repeat(d, 1) * (1 + 0.1 * unif(0, 1, d, n)),
        B=randn(*bc_shape),
        C=randn(*bc_shape),
        D=randn(d) if D else None,
        z=randn(b, d, l) if z else None,
        delta_bias=delta_bias,
    )


def run(fn, inputs, dtype, R=None, softplus=True, reset=None, **kw):
    """Forward (+ backward of ⟨out, R⟩) on leaf copies in ``dtype``; returns out, last, grads."""
    leaves = {k: v.detach().to(dtype).requires_grad_(R is not None) for k, v in inputs.items() if v is not None}
    out, last = fn(
        leaves["u"], leaves["delta"], leaves["A"], leaves["B"], leaves["C"], D=leaves.get("D"), z=leaves.get("z"),
        delta_bias=leaves.get("delta_bias"), delta_softplus=softplus, return_last_state=True, reset=reset, **kw,
    )
    grads = {}
    if R is not None:
        (out * R.to(out.dtype)).sum().backward()
        grads = {k: v.grad for k, v in leaves.items()}
    return out, last, grads


def check_against_reference(inputs, softplus, reset=None, tol=RTOL, label=""):
    R = torch.randn(inputs["u"].shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref_out, ref_last, ref_g = run(selective_scan_reference, inputs, torch.float64, R, softplus, reset)
    out, last, g = run(selective_scan, inputs, torch.float32, R, softplus, reset, backend="torch")
    assert out.dtype == torch.float32 and last.dtype == torch.float32 and not last.requires_grad
    assert torch.isfinite(ref_out).all(), label
    errs = {"out": rel(out, ref_out), "last_state": rel(last, ref_last)}
    errs.update({f"grad {k}": rel(g[k], ref_g[k]) for k in ref_g})
    assert set(g) == set(ref_g) and all(g[k] is not None for k in g), label
    bad = {k: f"{e:.2e}" for k, e in errs.items() if not e <= tol}
    assert not bad, f"{label}: {bad}"


@pytest.fixture(autouse=True)
def _fresh_dispatch_state(monkeypatch):
    """Each test starts from default dispatch: no programmatic default, no env var, no cached probe or warning."""
    monkeypatch.setattr(scan, "_default_backend", None)
    monkeypatch.setattr(scan, "_cuda_probe", None)
    monkeypatch.setattr(scan, "_cuda_fallback_warned", False)
    monkeypatch.setattr(scan, "_logged_backends", set())
    monkeypatch.delenv(scan.ENV_BACKEND, raising=False)


def fake_cpu_kernel(monkeypatch, available: bool):
    """Install a stand-in ``engine.ssm.cpu_kernel`` (the real one may need a compiler build)."""
    mod = types.ModuleType("engine.ssm.cpu_kernel")
    mod.calls = 0

    def scan_core(*args, **kw):
        mod.calls += 1
        return chunked_scan_core(*args, **kw)

    mod.is_available = lambda: available
    mod.build_error = lambda: None if available else "RuntimeError: no compiler (test stand-in)"
    mod.scan_core = scan_core
    monkeypatch.setitem(sys.modules, "engine.ssm.cpu_kernel", mod)
    monkeypatch.setattr(sys.modules["engine.ssm"], "cpu_kernel", mod, raising=False)
    return mod


# ---------------------------------------------------------------------------------------- T1 grid


@pytest.mark.parametrize("b", [1, 2, 3])
@pytest.mark.parametrize("G", ["3d", 1, 2, 8])
@pytest.mark.parametrize("l", [1, 7, 64])
def test_grid_small_l_full_product(b, G, l):
    """Every combination of softplus / delta_bias / D / z at small l: outputs, last state, 8 grads."""
    for softplus, bias, D, z in itertools.product([False, True], repeat=4):
        inputs = make_inputs(b, 8, 16, l, G, softplus=softplus, bias=bias, D=D, z=z, seed=l + b)
        check_against_reference(inputs, softplus, label=f"b={b} G={G} l={l} sp={softplus} bias={bias} D={D} z={z}")


@pytest.mark.parametrize(
    "b, G, softplus, bias, D, z, stress",
    [
        (2, 1, True, True, True, True, False),
        (3, 2, False, False, False, False, False),
        (1, 8, True, False, True, False, False),
        (2, "3d", False, True, False, True, False),
        (3, 2, True, True, True, True, True),  # stress: pre-activation delta ~ N(0, 2²)
        (1, 1, False, False, True, True, True),  # stress without softplus: Δ in [0.5, 4]
    ],
)
def test_grid_l1000(b, G, softplus, bias, D, z, stress):
    inputs = make_inputs(b, 8, 16, 1000, G, softplus=softplus, bias=bias, D=D, z=z, stress=stress, seed=3)
    if stress:
        dt = inputs["delta"] + (0 if inputs["delta_bias"] is None else inputs["delta_bias"][:, None])
        dt = F.softplus(dt) if softplus else dt
        assert (dt.amax() * inputs["A"].abs().amax()).item() > 60  # per-step |Δ·A| reaches ≈ 64+
    check_against_reference(inputs, softplus, label=f"l=1000 b={b} G={G} stress={stress}")


@pytest.mark.parametrize("l", [7, 200])
def test_stress_small_l(l):
    inputs = make_inputs(2, 8, 16, l, 2, stress=True, seed=11)
    check_against_reference(inputs, True, label=f"stress l={l}")


def test_constant_and_mixed_bc_forms():
    """Constant (d, n) B/C and different group counts for B and C (each channel reads its own group)."""
    inputs = make_inputs(2, 8, 16, 50, 2, seed=4)
    inputs["C"] = inputs["C"][:, 0]  # 3-D C, grouped B
    check_against_reference(inputs, True, label="mixed groups")
    inputs = make_inputs(2, 8, 16, 50, 1, seed=5)
    inputs["B"] = inputs["B"][0, 0, :, :8].T.contiguous()  # constant (d, n)
    check_against_reference(inputs, True, label="constant B")


# ---------------------------------------------------------------------------------------- T2–T5


@pytest.mark.parametrize("softplus", [False, True])
def test_t2_bias_before_softplus(softplus):
    x = make_inputs(2, 8, 16, 40, 2, softplus=softplus, seed=6)
    kw = dict(D=x["D"], z=x["z"], backend="torch")
    with_bias = selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], delta_bias=x["delta_bias"],
                               delta_softplus=softplus, **kw)
    pre = x["delta"] + x["delta_bias"][:, None]
    folded = selective_scan(x["u"], F.softplus(pre) if softplus else pre, x["A"], x["B"], x["C"], **kw)
    assert rel(with_bias, folded) < 1e-12
    unbiased = selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], delta_softplus=softplus, **kw)
    assert rel(unbiased, folded) > 1e-3  # the bias matters, so the equality above is not vacuous


def test_t3_zero_C_leaves_gated_skip():
    x = make_inputs(2, 8, 16, 70, 2, seed=7)
    out = selective_scan(x["u"].float(), x["delta"].float(), x["A"].float(), x["B"].float(),
                         torch.zeros_like(x["C"]).float(), x["D"].float(), x["z"].float(), x["delta_bias"].float(),
                         True, backend="torch")
    expected = x["D"][:, None] * x["u"] * F.silu(x["z"])
    assert rel(out, expected) < 1e-6


def test_t4_groups():
    x = make_inputs(2, 8, 16, 90, "3d", seed=8)
    kw = dict(D=x["D"], z=x["z"], delta_bias=x["delta_bias"], delta_softplus=True, backend="torch")
    three_d = selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], **kw)
    g1 = selective_scan(x["u"], x["delta"], x["A"], x["B"][:, None], x["C"][:, None], **kw)
    assert torch.equal(three_d, g1)
    x = make_inputs(2, 8, 16, 90, 8, seed=9)
    full = selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], True,
                          backend="torch")
    for j in range(8):
        one = selective_scan(x["u"][:, j:j + 1], x["delta"][:, j:j + 1], x["A"][j:j + 1], x["B"][:, j], x["C"][:, j],
                             x["D"][j:j + 1], x["z"][:, j:j + 1], x["delta_bias"][j:j + 1], True, backend="torch")
        assert rel(full[:, j:j + 1], one) < 1e-12


def test_t5_split_and_carry_state():
    """out[k:] of the full scan = scan of [k:) from zero + the carried state h_{k−1} decayed and read by C."""
    x = make_inputs(2, 8, 16, 300, 2, seed=10)
    k = 137

    def part(sl):
        return selective_scan(x["u"][..., sl], x["delta"][..., sl], x["A"], x["B"][..., sl], x["C"][..., sl], x["D"],
                              x["z"][..., sl], x["delta_bias"], True, True, backend="torch")

    full, last = part(slice(None))
    first, h_k = part(slice(0, k))
    second, last2 = part(slice(k, None))
    assert rel(first, full[..., :k]) < 1e-12
    dt = F.softplus(x["delta"] + x["delta_bias"][:, None])[..., k:]  # (b, d, l−k)
    decay = torch.exp(x["A"][None, :, :, None] * dt.cumsum(-1)[:, :, None, :])  # (b, d, n, l−k)
    carried = decay * h_k[..., None]
    C = x["C"][..., k:].repeat_interleave(4, dim=1)  # (b, d, n, l−k)
    expected = second + (C * carried).sum(2) * F.silu(x["z"][..., k:])
    assert rel(full[..., k:], expected) < 1e-10
    assert rel(last, last2 + carried[..., -1]) < 1e-10
    ref_last = selective_scan_reference(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"],
                                        True, True)[1]
    assert rel(last, ref_last) < 1e-12


# ---------------------------------------------------------------------------------------- T6 gradcheck


@pytest.mark.parametrize("with_reset", [False, True])
def test_t6_gradcheck_chunked_function(with_reset):
    """float64 gradcheck of the custom Function over 3 chunks (l = 37, Q = 16), grouped g = 2."""
    x = make_inputs(1, 4, 2, 37, 2, seed=12)
    dt = F.softplus(x["delta"] + x["delta_bias"][:, None]).detach()
    reset = None
    if with_reset:
        reset = torch.zeros(1, 37, dtype=torch.bool)
        reset[0, [0, 5, 16, 30]] = True
    args = [t.detach().clone().requires_grad_() for t in (dt, x["u"], x["A"], x["B"], x["C"])]
    assert torch.autograd.gradcheck(lambda *a: chunked_scan_core(*a, reset)[0], args)


def test_t6_gradcheck_public_and_reference():
    x = make_inputs(2, 4, 3, 21, 2, seed=13)
    args = [x[k].detach().clone().requires_grad_() for k in GRAD_NAMES]
    for fn, kw in ((selective_scan, dict(backend="torch")), (selective_scan_reference, {})):
        assert torch.autograd.gradcheck(
            lambda u, dl, A, B, C, D, z, bias: fn(u, dl, A, B, C, D, z, bias, True, **kw), args, fast_mode=True
        )


# ---------------------------------------------------------------------------------------- reset


def test_reset_equals_separate_scans():
    b, l = 2, 300
    x = make_inputs(b, 8, 16, l, 2, seed=14)
    starts = {0: [0, 16, 17, 47, 100, 299], 1: [0, 64, 65, 66, 200]}  # chunk starts/ends, runs, last token
    reset = torch.zeros(b, l, dtype=torch.bool)
    for i, s in starts.items():
        reset[i, s] = True
    check_against_reference(x, True, reset=reset, label="reset vs reference")
    out, last = selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], True, True,
                               reset=reset, backend="torch")
    for i, s in starts.items():
        for lo, hi in zip(s, s[1:] + [l]):
            sl = slice(lo, hi)
            seg, seg_last = selective_scan(
                x["u"][i:i + 1, :, sl], x["delta"][i:i + 1, :, sl], x["A"], x["B"][i:i + 1, ..., sl],
                x["C"][i:i + 1, ..., sl], x["D"], x["z"][i:i + 1, :, sl], x["delta_bias"], True, True, backend="torch",
            )
            assert rel(out[i:i + 1, :, sl], seg) < 1e-12, (i, lo, hi)
        assert rel(last[i:i + 1], seg_last) < 1e-12


# ---------------------------------------------------------------------------------------- long, tiling, sizes


def test_long_sequence_stress():
    """L = 200,000 with large |Δ·A|: finite everywhere, and exact on windows whose past is forgotten.

    R is nonzero only on [s, e), so every output, gradient and the last state there depend only on
    [s − warm, e) up to Π a ≤ exp(max A · Σ Δ) over the warm-up, asserted to be negligible.
    """
    b, d, n, l = 1, 4, 16, 200_000
    x = make_inputs(b, d, n, l, 1, bias=False, D=True, z=True, stress=True, seed=15)
    s, e, warm = 123_457, 124_457, 1_500
    R = torch.zeros(b, d, l, dtype=torch.float64)
    R[..., s:e] = torch.randn(b, d, e - s, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    out, last, g = run(selective_scan, x, torch.float32, R, True, backend="torch")
    assert torch.isfinite(out).all() and torch.isfinite(last).all()
    assert all(torch.isfinite(t).all() for t in g.values())
    assert all((t[..., e:] == 0).all() for k, t in g.items() if k in ("u", "delta", "B", "C", "z"))

    dt = F.softplus(x["delta"])
    for lo in (s - warm, l - warm):
        forgotten = torch.exp(x["A"].amax() * dt[..., lo - warm:lo].sum(-1)).max().item()
        assert forgotten < 1e-30
    def cut(lo, hi):
        return {k: v[..., lo:hi] if v is not None and v.shape[-1] == l else v for k, v in x.items()}

    win = cut(s - warm, e)
    ref_out, _, ref_g = run(selective_scan_reference, win, torch.float64, R[..., s - warm:e], True)
    assert rel(out[..., s:e], ref_out[..., warm:]) < RTOL
    for k in ("u", "delta", "B", "C", "z"):
        assert rel(g[k][..., s - warm:e], ref_g[k]) < RTOL, k
    for k in ("A", "D"):
        assert rel(g[k], ref_g[k]) < RTOL, k
    assert rel(last, run(selective_scan_reference, cut(l - warm, l), torch.float64, None, True)[1]) < RTOL


@pytest.mark.parametrize("backend", ["torch", "cpp"])
def test_without_autograd_the_result_is_the_same_and_the_inputs_are_untouched(backend):
    # prediction runs the epilogue (D skip, SiLU gate) in place on the scan's own output
    inputs = {k: v.float() if v is not None else None for k, v in make_inputs(2, 8, 4, 50).items()}
    before = {k: v.clone() for k, v in inputs.items() if v is not None}
    with_grad = selective_scan(**{k: v.clone().requires_grad_() if v is not None else None
                                  for k, v in inputs.items()}, delta_softplus=True, backend=backend)
    with torch.no_grad():
        plain = selective_scan(**inputs, delta_softplus=True, backend=backend)
    with torch.inference_mode():
        inference = selective_scan(**inputs, delta_softplus=True, backend=backend)
    assert torch.equal(plain, with_grad.detach()) and torch.equal(inference, with_grad.detach())
    assert all(torch.equal(inputs[k], v) for k, v in before.items())


def test_chunk_size_formula():
    expected = {1: 1, 7: 7, 16: 16, 17: 16, 64: 16, 1000: 16, 2048: 32, 4096: 32, 32768: 128, 207_400: 256,
                10**6: 512, 10**9: 512}
    assert {l: chunk_size(l) for l in expected} == expected
    assert chunk_size(207_400, "cuda") == 64 and chunk_size(7, "cuda") == 7
    with pytest.raises(ValueError):
        chunk_size(0)


def test_tiling_and_recursive_carry_match_untiled(monkeypatch):
    """Tiny tile budgets (3 chunks per step tile, 1 per backward tile) and a recursive carry change
    nothing: tiles only partition independent chunks."""
    b, d, n, l = 2, 8, 16, 1000  # Q = 16, nc = 63, m = 126
    x = make_inputs(b, d, n, l, 2, seed=16)
    reset = torch.zeros(b, l, dtype=torch.bool)
    reset[0, [333, 512]] = True
    R = torch.randn(b, d, l, dtype=torch.float64)
    base = run(selective_scan, x, torch.float64, R, True, reset, backend="torch")
    monkeypatch.setattr(scan, "_CPU_STEP_BYTES", 3 * d * n * 8)
    monkeypatch.setattr(scan, "_CPU_TRANSIENT_BYTES", 1)
    monkeypatch.setattr(scan, "_CARRY_LOOP_MAX", 3)
    tiled = run(selective_scan, x, torch.float64, R, True, reset, backend="torch")
    assert rel(tiled[0], base[0]) < 1e-13 and rel(tiled[1], base[1]) < 1e-13
    for k in base[2]:
        assert rel(tiled[2][k], base[2][k]) < 1e-13, k


def test_short_sequences_with_a_large_batch_tile_the_backward_within_its_buffers(monkeypatch):
    """The spectral shape (many pixels, L = 4, one chunk): the backward's recompute budget allows
    wider tiles than the per-step buffers; it must use the narrower ones (a bench run once failed)."""
    b, d, n, l = 37, 8, 16, 4
    x = make_inputs(b, d, n, l, 1, seed=18)
    R = torch.randn(b, d, l, dtype=torch.float64)
    base = run(selective_scan, x, torch.float64, R, True, None, backend="torch")
    monkeypatch.setattr(scan, "_CPU_STEP_BYTES", 3 * d * n * 8)  # 3 pixels per step tile
    tiled = run(selective_scan, x, torch.float64, R, True, None, backend="torch")
    assert rel(tiled[0], base[0]) < 1e-13
    for k in base[2]:
        assert rel(tiled[2][k], base[2][k]) < 1e-13, k
    reference = run(selective_scan_reference, x, torch.float64, R, True, None)
    for k in base[2]:
        assert rel(tiled[2][k], reference[2][k]) < 1e-12, k


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_keep_fp32_state(dtype):
    x = make_inputs(2, 8, 16, 100, 2, seed=17)
    half = {k: (v.to(dtype) if k in ("u", "delta", "z", "B", "C") else v.float()) for k, v in x.items()}
    leaves = {k: v.clone().requires_grad_() for k, v in half.items()}
    out, last = selective_scan(*(leaves[k] for k in GRAD_NAMES), True, True, backend="torch")
    assert out.dtype == dtype and last.dtype == torch.float32
    ref_out, ref_last = selective_scan_reference(*(half[k].double() for k in GRAD_NAMES), True, True)
    assert rel(out, ref_out) < 1e-2 and rel(last, ref_last) < 1e-5  # output rounding only; state fp32
    out.float().sum().backward()
    assert all(leaves[k].grad.dtype == leaves[k].dtype for k in GRAD_NAMES)


# ---------------------------------------------------------------------------------------- validation


def _bad_cases():
    def mod(**changes):
        return changes

    return [
        ("u", mod(u=torch.zeros(2, 8, 100, dtype=torch.int64)), "u has dtype torch.int64"),
        ("u", mod(u=torch.zeros(8, 100)), "u has shape (8, 100)"),
        ("u", mod(u=torch.zeros(2, 8, 0), delta=torch.zeros(2, 8, 0)), "u has shape (2, 8, 0)"),
        ("delta", mod(delta=torch.zeros(2, 8, 99)), "delta has shape (2, 8, 99) but expected (b=2, d=8, l=100)"),
        ("delta", mod(delta=torch.zeros(2, 8, 100, dtype=torch.float64)), "delta has dtype torch.float64"),
        ("z", mod(z=torch.zeros(2, 4, 100)), "z has shape (2, 4, 100)"),
        ("A", mod(A=torch.zeros(9, 16)), "A has shape (9, 16) but expected (d=8, n)"),
        ("A", mod(A=torch.zeros(8)), "A has shape (8,)"),
        ("A", mod(A=torch.zeros(8, 16, dtype=torch.complex64)), "A has dtype torch.complex64"),
        ("A", mod(A=torch.zeros(8, 16, device="meta")), "A is on meta"),
        ("B", mod(B=torch.zeros(2, 3, 16, 100)),
         "B has shape (2, 3, 16, 100) but expected (b=2, g, n=16, l=100) with d=8 divisible by g"),
        ("B", mod(B=torch.zeros(2, 16, 99)), "B has shape (2, 16, 99)"),
        ("C", mod(C=torch.zeros(2, 2, 15, 100)), "C has shape (2, 2, 15, 100)"),
        ("C", mod(C=torch.zeros(3, 16, 100)), "C has shape (3, 16, 100)"),
        ("B", mod(B=[[0.0]]), "B must be a torch.Tensor"),
        ("D", mod(D=torch.zeros(9)), "D has shape (9,) but expected (d=8,)"),
        ("D", mod(D=torch.zeros(8, dtype=torch.int32)), "D has dtype torch.int32"),
        ("delta_bias", mod(delta_bias=torch.zeros(8, 1)), "delta_bias has shape (8, 1)"),
        ("reset", mod(reset=torch.zeros(2, 100)), "reset must be a torch.bool tensor"),
        ("reset", mod(reset=torch.zeros(2, 99, dtype=torch.bool)), "reset has shape (2, 99) but expected (b=2, l=100)"),
    ]


@pytest.mark.parametrize("fn", [selective_scan, selective_scan_reference])
@pytest.mark.parametrize("arg, changes, message", _bad_cases(), ids=[c[2][:40] for c in _bad_cases()])
def test_validation_errors(fn, arg, changes, message):
    good = dict(u=torch.zeros(2, 8, 100), delta=torch.zeros(2, 8, 100), A=-torch.ones(8, 16),
                B=torch.zeros(2, 16, 100), C=torch.zeros(2, 16, 100), D=torch.zeros(8), z=torch.zeros(2, 8, 100),
                delta_bias=torch.zeros(8), reset=None)
    good.update(changes)
    with pytest.raises(ValueError) as info:
        fn(**good)
    assert message in str(info.value) and arg in str(info.value)


def test_validation_backend_and_core():
    x = make_inputs(1, 8, 16, 10, 1)
    with pytest.raises(ValueError, match="backend"):
        selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], backend="gpu")
    with pytest.raises(ValueError, match="set_default_backend"):
        set_default_backend("gpu")
    with pytest.raises(ValueError, match="B has shape"):
        chunked_scan_core(x["delta"], x["u"], x["A"], x["B"][:, 0], x["C"])


# ---------------------------------------------------------------------------------------- dispatch


class _ImportSpy(importlib.abc.MetaPathFinder):
    """Records any attempt to import mamba-ssm or its extension (and lets it proceed)."""

    def __init__(self):
        self.seen = []

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("mamba_ssm", "selective_scan_cuda"):
            self.seen.append(name)
        return None


def test_cpu_call_never_imports_mamba_ssm(monkeypatch):
    fake_cpu_kernel(monkeypatch, available=False)
    spy = _ImportSpy()
    monkeypatch.setattr(sys, "meta_path", [spy, *sys.meta_path])
    x = make_inputs(1, 8, 16, 20, 1)
    selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"])
    assert spy.seen == [] and "mamba_ssm" not in sys.modules and last_backend() == "torch"


def test_auto_falls_back_to_torch_without_cpu_kernel(monkeypatch, caplog):
    kernel = fake_cpu_kernel(monkeypatch, available=False)
    x = make_inputs(1, 8, 16, 20, 1)
    with caplog.at_level(logging.INFO, logger=scan.__name__):
        for _ in range(2):
            selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], backend="auto")
    assert last_backend() == "torch" and kernel.calls == 0
    lines = [r.getMessage() for r in caplog.records if "selective scan backend" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("selective scan backend: torch (chunked, CPU;")
    assert "no compiler (test stand-in)" in lines[0]
    with pytest.raises(RuntimeError, match="backend='cpp' requested but compiled kernel unavailable: .*no compiler"):
        selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], backend="cpp")


def test_auto_uses_cpu_kernel_when_available(monkeypatch):
    kernel = fake_cpu_kernel(monkeypatch, available=True)
    x = make_inputs(2, 8, 16, 20, 2)
    got = selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], True)
    assert last_backend() == "cpp" and kernel.calls == 1
    want = selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], True,
                          backend="torch")
    assert last_backend() == "torch" and torch.equal(got, want)


def test_explicit_cuda_on_cpu_tensors_raises():
    x = make_inputs(1, 8, 16, 20, 1)
    with pytest.raises(RuntimeError, match="backend='cuda' needs CUDA tensors"):
        selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], backend="cuda")


def test_env_var_and_default_precedence(monkeypatch):
    x = make_inputs(1, 8, 16, 20, 1)
    args = (x["u"], x["delta"], x["A"], x["B"], x["C"])
    monkeypatch.setenv(scan.ENV_BACKEND, "cuda")
    with pytest.raises(RuntimeError, match="CUDA tensors"):
        selective_scan(*args)
    selective_scan(*args, backend="torch")  # the call argument wins
    assert last_backend() == "torch"
    set_default_backend("torch")  # a programmatic default beats the env var
    selective_scan(*args)
    assert last_backend() == "torch"
    set_default_backend(None)
    monkeypatch.setenv(scan.ENV_BACKEND, "Torch ")
    selective_scan(*args)
    assert last_backend() == "torch"
    monkeypatch.setenv(scan.ENV_BACKEND, "bogus")
    with pytest.raises(ValueError, match=scan.ENV_BACKEND):
        selective_scan(*args)


def test_cuda_probe_failure_is_reported_and_cached(monkeypatch):
    monkeypatch.setitem(sys.modules, "selective_scan_cuda", None)  # import fails deterministically
    fn, why = scan._probe_cuda()
    assert fn is None and "selective_scan_cuda" in why
    assert scan._probe_cuda() is scan._cuda_probe
    name, reason, _ = scan._choose_backend("auto", True, False)
    assert name == "torch" and "mamba-ssm unavailable" in reason and "selective_scan_cuda" in reason
    with pytest.raises(RuntimeError, match="selective_scan_cuda"):
        scan._choose_backend("cuda", True, False)


def test_cuda_dispatch_decisions_with_mocked_probe(monkeypatch):
    def kernel(*a):
        raise AssertionError("never called here")

    monkeypatch.setattr(scan, "_probe_cuda", lambda: (kernel, ""))
    assert scan._choose_backend("auto", True, False)[::2] == ("cuda", kernel)
    assert scan._choose_backend("auto", True, True)[0] == "torch"  # reset forces the torch path
    assert scan._choose_backend("torch", True, False)[0] == "torch"
    with pytest.raises(RuntimeError, match="reset"):
        scan._choose_backend("cuda", True, True)
    with pytest.raises(RuntimeError, match="CUDA"):
        scan._choose_backend("cpp", True, False)


# ---------------------------------------------------------------------------------------- GPU (T7)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@needs_cuda
def test_torch_path_on_cuda_matches_reference():
    x = make_inputs(2, 8, 16, 1000, 2, seed=18)
    R = torch.randn(2, 8, 1000, dtype=torch.float64)
    cuda_x = {k: None if v is None else v.cuda() for k, v in x.items()}
    out, last, g = run(selective_scan, cuda_x, torch.float32, R.cuda(), True, backend="torch")
    ref_out, ref_last, ref_g = run(selective_scan_reference, x, torch.float64, R, True)
    assert rel(out.cpu(), ref_out) < RTOL and rel(last.cpu(), ref_last) < RTOL
    assert all(rel(g[k].cpu(), ref_g[k]) < RTOL for k in ref_g)


@needs_cuda
def test_t7_mamba_ssm_kernel_matches_reference():
    if scan._probe_cuda()[0] is None:
        pytest.skip(f"mamba-ssm unavailable: {scan._probe_cuda()[1]}")
    x = make_inputs(2, 8, 16, 1000, 2, seed=19)
    R = torch.randn(2, 8, 1000, dtype=torch.float64)
    cuda_x = {k: None if v is None else v.cuda() for k, v in x.items()}
    out, last, g = run(selective_scan, cuda_x, torch.float32, R.cuda(), True, backend="cuda")
    ref_out, ref_last, ref_g = run(selective_scan_reference, x, torch.float64, R, True)
    assert rel(out.cpu(), ref_out) < 5e-4 and rel(last.cpu(), ref_last) < 5e-4
    assert all(rel(g[k].cpu(), ref_g[k]) < 5e-4 for k in ref_g)

