"""The optional compiled CPU selective scan (engine/ssm/cpu_kernel.py) against a float64 loop.

Skipped when the extension cannot be built locally (no compiler or ninja) or is switched off with
``CSSMAMBA_NO_CPP=1``. In CI (``CI`` set) a build failure fails the run instead: CI has gcc and
ninja.
"""

from __future__ import annotations

import os

import pytest
import torch

from engine.ssm import cpu_kernel

_DISABLED = os.environ.get("CSSMAMBA_NO_CPP", "").strip() not in ("", "0")
if (_DISABLED or not os.environ.get("CI")) and not cpu_kernel.is_available():
    pytest.skip(
        f"compiled CPU scan kernel unavailable here: {cpu_kernel.build_error()}",
        allow_module_level=True,
    )

RTOL = 1e-5


def reference_scan(delta, u, A, B, C, reset=None):
    """Obviously-correct sequential scan (float64 in, float64 out); `unbind` keeps autograd O(L)."""
    b, d, l = delta.shape
    g = B.shape[1]
    Bx = B.repeat_interleave(d // g, dim=1)  # (b, d, n, l)
    Cx = C.repeat_interleave(d // g, dim=1)
    keep = None if reset is None else (~reset).to(delta.dtype)  # (b, l)
    h = delta.new_zeros(b, d, A.shape[1])
    ys = []
    steps = zip(delta.unbind(2), u.unbind(2), Bx.unbind(3), Cx.unbind(3))
    for t, (dt, ut, Bt, Ct) in enumerate(steps):
        a = torch.exp(dt[..., None] * A)
        if keep is not None:
            a = a * keep[:, t, None, None]
        h = a * h + (dt * ut)[..., None] * Bt
        ys.append((Ct * h).sum(-1))
    return torch.stack(ys, dim=2), h


def make_inputs(b, d, n, l, g, *, reset=False, stress=False, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    if stress:  # Δ up to ~8 and A down to -16: per-step |Δ·A| far beyond fp32 exp underflow
        delta = torch.nn.functional.softplus(2.0 * torch.randn(b, d, l, generator=gen))
    else:  # Mamba init: Δ in [1e-3, 0.1]
        delta = torch.nn.functional.softplus(0.5 * torch.randn(b, d, l, generator=gen) - 3.0)
        delta = delta.clamp(1e-3, 0.1)
    A = -torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1)
    A = A * (1 + 0.1 * torch.rand(d, n, generator=gen))
    u = torch.randn(b, d, l, generator=gen)
    B = torch.randn(b, g, n, l, generator=gen)
    C = torch.randn(b, g, n, l, generator=gen)
    rs = (torch.rand(b, l, generator=gen) < 0.05) if reset else None
    if rs is not None and l > 3:
        rs[:, l // 2] = True  # at least one mid-sequence restart
    return [x.to(dtype) for x in (delta, u, A, B, C)], rs


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).abs().max() / max(b.abs().max().item(), 1e-12)).item()


def check_against_reference(b, d, n, l, g, *, reset=False, stress=False):
    inputs, rs = make_inputs(b, d, n, l, g, reset=reset, stress=stress)
    ins = [x.clone().requires_grad_() for x in inputs]
    ref_ins = [x.double().requires_grad_() for x in inputs]
    y, last = cpu_kernel.scan_core(*ins, reset=rs)
    y_ref, last_ref = reference_scan(*ref_ins, reset=rs)
    assert y.dtype == torch.float32 and y.shape == (b, d, l)
    assert last.shape == (b, d, n) and not last.requires_grad
    R = torch.randn(b, d, l, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (y.double() * R).sum().backward()
    (y_ref * R).sum().backward()
    errs = {"y": rel_err(y, y_ref), "last_state": rel_err(last, last_ref)}
    for name, x, xr in zip(("delta", "u", "A", "B", "C"), ins, ref_ins):
        assert x.grad is not None and x.grad.shape == x.shape, name
        errs["grad_" + name] = rel_err(x.grad, xr.grad)
    bad = {k: v for k, v in errs.items() if not v <= RTOL}
    assert not bad, f"relative error above {RTOL}: {bad}"


def test_kernel_builds_or_reports_why():
    assert cpu_kernel.is_available(), f"build failed: {cpu_kernel.build_error()}"
    assert cpu_kernel.build_error() is None


@pytest.mark.parametrize("reset", [False, True], ids=["plain", "reset"])
@pytest.mark.parametrize("g", [1, 2, 8])
@pytest.mark.parametrize("l", [1, 7, 64, 1000])
@pytest.mark.parametrize("b", [1, 2])
def test_matches_float64_reference(b, l, g, reset):
    check_against_reference(b, 8, 16, l, g, reset=reset)


@pytest.mark.parametrize("reset", [False, True], ids=["plain", "reset"])
def test_matches_reference_with_large_delta_times_A(reset):
    check_against_reference(2, 8, 16, 300, 2, reset=reset, stress=True)


@pytest.mark.parametrize("n", [1, 5, 20, 40, 64])
def test_matches_reference_for_other_state_sizes(n):
    check_against_reference(1, 4, n, 150, 2, reset=True)


def test_matches_reference_for_a_huge_batch_of_short_sequences():
    # More than 256 batches: the backward sums gA over blocks of batches (the spectral shape).
    check_against_reference(300, 4, 16, 5, 2, reset=True)


def test_gradcheck_float64():
    inputs, rs = make_inputs(2, 4, 3, 9, 2, reset=True, dtype=torch.float64)
    ins = [x.requires_grad_() for x in inputs]
    assert torch.autograd.gradcheck(
        lambda *xs: cpu_kernel.scan_core(*xs, reset=rs)[0], ins, eps=1e-6, atol=1e-7, rtol=1e-5
    )


def test_float64_inputs_give_float64_outputs():
    inputs, _ = make_inputs(1, 4, 16, 33, 1, dtype=torch.float64)
    y, last = cpu_kernel.scan_core(*inputs)
    y_ref, last_ref = reference_scan(*inputs)
    assert y.dtype == last.dtype == torch.float64
    assert rel_err(y, y_ref) < 1e-12 and rel_err(last, last_ref) < 1e-12


def test_long_sequence_stays_finite():
    inputs, rs = make_inputs(1, 4, 16, 200_000, 1, reset=True)
    ins = [x.requires_grad_() for x in inputs]
    y, last = cpu_kernel.scan_core(*ins, reset=rs)
    y.square().mean().backward()
    for name, t in [("y", y), ("last", last)] + [(f"grad{i}", x.grad) for i, x in enumerate(ins)]:
        assert torch.isfinite(t).all(), name


@pytest.mark.parametrize(
    "b,d,g,l",
    [(1, 16, 1, 1500), (2, 16, 8, 700), (600, 4, 2, 6)],
    ids=["sliced", "grouped", "batched"],
)
def test_thread_count_does_not_change_results(b, d, g, l):
    inputs, rs = make_inputs(b, d, 16, l, g, reset=True)
    gy = torch.randn(b, d, l, generator=torch.Generator().manual_seed(2))
    old = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            ins = [x.clone().requires_grad_() for x in inputs]
            y, last = cpu_kernel.scan_core(*ins, reset=rs)
            y.backward(gy)
            results.append([y, last] + [x.grad for x in ins])
    finally:
        torch.set_num_threads(old)
    for one, two in zip(*results):
        assert torch.equal(one, two)


def test_no_grad_matches_grad_path_and_partial_grads():
    inputs, rs = make_inputs(1, 8, 16, 300, 2, reset=True)
    with torch.no_grad():
        y0, last0 = cpu_kernel.scan_core(*inputs, reset=rs)
    delta, u, A, B, C = inputs
    A = A.clone().requires_grad_()
    y1, last1 = cpu_kernel.scan_core(delta, u, A, B, C, reset=rs)
    assert torch.equal(y0, y1.detach()) and torch.equal(last0, last1)
    y1.sum().backward()
    assert A.grad is not None and torch.isfinite(A.grad).all()


def test_time_major_views_of_B_and_C_give_the_same_result_and_gradients():
    """Mamba hands B and C over as transposed (b, l, n) projections; the kernel lays them out
    time-major without first copying them to (n, l) order, and nothing may change for it."""
    (delta, u, A, B, C), rs = make_inputs(2, 8, 16, 37, 1, reset=True)
    runs = []
    for layout in ("contiguous", "time-major view"):
        if layout == "contiguous":
            Bi, Ci = B.clone().requires_grad_(), C.clone().requires_grad_()
            Bv, Cv = Bi, Ci
        else:
            Bi = B.transpose(-1, -2).contiguous().requires_grad_()   # (b, g, l, n) storage
            Ci = C.transpose(-1, -2).contiguous().requires_grad_()
            Bv, Cv = Bi.transpose(-1, -2), Ci.transpose(-1, -2)      # (b, g, n, l) views
            assert not Bv.is_contiguous()
        y, last = cpu_kernel.scan_core(delta, u, A, Bv, Cv, reset=rs)
        y.square().sum().backward()
        runs.append((y, last, Bi.grad.transpose(-1, -2) if Bi is not Bv else Bi.grad,
                     Ci.grad.transpose(-1, -2) if Ci is not Cv else Ci.grad))
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_reset_restarts_the_state():
    inputs, _ = make_inputs(1, 4, 16, 40, 1)
    rs = torch.zeros(1, 40, dtype=torch.bool)
    rs[0, 25] = True
    y, _ = cpu_kernel.scan_core(*inputs, reset=rs)
    tail = [x[..., 25:] for x in inputs[:2]] + [inputs[2]] + [x[..., 25:] for x in inputs[3:]]
    y_tail, _ = cpu_kernel.scan_core(*tail)
    assert torch.allclose(y[..., 25:], y_tail, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("b,d,l", [(1, 4, 0), (0, 4, 5), (2, 0, 5)])
def test_empty_sizes(b, d, l):
    (delta, u, A, B, C), _ = make_inputs(b, d, 16, l, 1)
    ins = [x.requires_grad_() for x in (delta, u, A, B, C)]
    y, last = cpu_kernel.scan_core(*ins)
    y.sum().backward()
    assert y.shape == (b, d, l) and last.shape == (b, d, 16) and not last.any()
    assert all(x.grad is not None and x.grad.shape == x.shape for x in ins)


def test_rejects_bad_shapes():
    (delta, u, A, B, C), _ = make_inputs(1, 6, 16, 10, 1)
    with pytest.raises(ValueError, match="multiple of the group count"):
        cpu_kernel.scan_core(delta, u, A, B.expand(1, 4, 16, 10), C.expand(1, 4, 16, 10))
    with pytest.raises(ValueError, match="limit of 256"):
        big = torch.zeros(6, 300)
        cpu_kernel.scan_core(delta, u, big, torch.zeros(1, 1, 300, 10), torch.zeros(1, 1, 300, 10))


def test_env_var_disables_the_kernel(monkeypatch):
    monkeypatch.setenv("CSSMAMBA_NO_CPP", "1")
    monkeypatch.setattr(cpu_kernel, "_tried", False)
    monkeypatch.setattr(cpu_kernel, "_ops", None)
    monkeypatch.setattr(cpu_kernel, "_error", None)
    assert cpu_kernel.is_available() is False
    assert "CSSMAMBA_NO_CPP" in (cpu_kernel.build_error() or "")
    with pytest.raises(RuntimeError, match="unavailable"):
        cpu_kernel.scan_core(*make_inputs(1, 2, 16, 3, 1)[0])


def test_float32_exp_is_accurate_over_the_whole_range():
    # With l = 2, delta = 1, u = (1, 0) and B = 1 the last state is exactly exp(A).
    x = torch.linspace(-87.0, 88.0, 1000 * 16)
    x = torch.cat([x, torch.tensor([-1e30, -200.0, -87.5, -1e-30, 0.0, 1e-30, 88.5, 200.0, 1e30])])
    x = torch.cat([x, torch.full((16 - x.numel() % 16,), float("nan"))])
    A = x.reshape(-1, 16)
    d = A.shape[0]
    delta = torch.ones(1, d, 2)
    u = torch.tensor([1.0, 0.0]).expand(1, d, 2).contiguous()
    ones = torch.ones(1, 1, 16, 2)
    _, last = cpu_kernel.scan_core(delta, u, A, ones, ones)
    got = last.reshape(-1)
    want = torch.exp(x.double()).float()  # float64 exp rounded once: 0 below, inf above range
    finite = (x >= -87.3) & (x <= 88.37)  # normal float results
    rel = ((got[finite].double() - want[finite].double()).abs() / want[finite].double()).max()
    assert rel < 2e-7, f"max relative error {rel:.2e}"
    assert (got[x < -87.34] == 0).all()  # below FLT_MIN the kernel flushes to 0
    # exp overflows (from x > 88.38, slightly early); inf * h_{-1} = inf * 0 gives NaN, as in torch
    assert not torch.isfinite(got[x > 88.4]).any()
    assert torch.isnan(got[x.isnan()]).all()
