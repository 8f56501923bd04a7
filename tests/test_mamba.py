"""Mamba block (MODELS.md §2.2, acceptance tests T8–T11), checked against a naive per-step loop.

The loop below is written from the §2.1/§2.2 formulas, one token at a time, with a ring-buffer conv
state and an SSM state, in float64. It shares no code with the block or the scan.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from engine.ssm.mamba import Mamba

# mamba-ssm 1.2.0 `Mamba(d_model=32)` state dict (d_state 16, d_conv 4, expand 2 -> e = 64, dt_rank 2),
# written out by hand: key -> shape.
MAMBA_SSM_1_2_0_D32 = {
    "in_proj.weight": (128, 32),
    "conv1d.weight": (64, 1, 4),
    "conv1d.bias": (64,),
    "x_proj.weight": (34, 64),
    "dt_proj.weight": (64, 2),
    "dt_proj.bias": (64,),
    "A_log": (64, 16),
    "D": (64,),
    "out_proj.weight": (32, 64),
}
# 'torch' pins the chunked scan; None is the default dispatch (the compiled CPU kernel where it builds).
SCAN_BACKENDS = ["torch", None]
BACKWARD_KEYS = {"conv1d_b.weight", "conv1d_b.bias", "x_proj_b.weight", "dt_proj_b.weight", "dt_proj_b.bias",
                 "A_b_log", "D_b"}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def direction(sd: dict, suffix: str = "") -> dict:
    """One direction's tensors under mamba-ssm's names; suffix '_b' picks Vision Mamba's backward ones."""
    p = {k: v for k, v in sd.items() if k.startswith(("in_proj.", "out_proj."))}
    for name in ("conv1d.weight", "conv1d.bias", "x_proj.weight", "dt_proj.weight", "dt_proj.bias"):
        module, leaf = name.split(".")
        if f"{module}{suffix}.{leaf}" in sd:
            p[name] = sd[f"{module}{suffix}.{leaf}"]
    p["A_log"] = sd["A_b_log" if suffix else "A_log"]
    p["D"] = sd["D" + suffix]
    return {k: v.double() for k, v in p.items()}


def naive_mamba(p: dict, h: torch.Tensor, reset=None) -> torch.Tensor:
    """(b, l, m) -> (b, l, m), token by token; `reset[i, t]` clears both states before token t."""
    w_in, w_conv, w_x, w_dt = p["in_proj.weight"], p["conv1d.weight"][:, 0], p["x_proj.weight"], p["dt_proj.weight"]
    e, k = w_conv.shape
    n = p["A_log"].shape[1]
    r = w_dt.shape[1]
    A = -torch.exp(p["A_log"])
    out = torch.zeros(h.shape[0], h.shape[1], p["out_proj.weight"].shape[0], dtype=torch.float64)
    for i in range(h.shape[0]):
        ring = torch.zeros(e, k, dtype=torch.float64)  # slot t % k holds x_t
        state = torch.zeros(e, n, dtype=torch.float64)
        for t in range(h.shape[1]):
            if reset is not None and reset[i, t]:
                ring.zero_()
                state.zero_()
            xz = w_in @ h[i, t] + p.get("in_proj.bias", 0)
            x, z = xz[:e], xz[e:]
            ring[:, t % k] = x
            window = torch.stack([ring[:, (t - (k - 1) + j) % k] for j in range(k)], 1)  # x_{t-k+1} … x_t
            xc = F.silu((w_conv * window).sum(1) + p.get("conv1d.bias", 0))
            proj = w_x @ xc
            dt, B, C = proj[:r], proj[r:r + n], proj[r + n:]
            delta = F.softplus(w_dt @ dt + p["dt_proj.bias"])
            state = torch.exp(delta[:, None] * A) * state + delta[:, None] * B[None, :] * xc[:, None]
            y = (state @ C + p["D"] * xc) * F.silu(z)
            out[i, t] = p["out_proj.weight"] @ y + p.get("out_proj.bias", 0)
    return out


def randomize_(block: Mamba, seed: int = 0) -> Mamba:
    """Random values everywhere (A_log, D, biases too), kept in the range where Δ·A stays moderate."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in block.named_parameters():
            v = torch.randn(p.shape, generator=g, dtype=torch.float64)
            if name.startswith(("A_log", "A_b_log")):
                v = v.mul(0.5).add(1.0)
            elif name.startswith(("dt_proj.bias", "dt_proj_b.bias")):
                v = v.mul(0.5).sub(2.0)
            else:
                v = v.mul(0.5)
            p.copy_(v)
    return block


@pytest.mark.parametrize("scan_backend", SCAN_BACKENDS)
def test_t8_block_equals_naive_per_step_loop_at_every_position(scan_backend):
    torch.manual_seed(0)
    for kwargs in ({}, {"d_state": 5, "d_conv": 3, "dt_rank": 3, "conv_bias": False, "bias": True}):
        block = randomize_(Mamba(8, scan_backend=scan_backend, **kwargs)).double()
        h = torch.randn(2, 11, 8, dtype=torch.float64)
        out = block(h)
        assert out.shape == h.shape and out.dtype == torch.float64
        assert rel(out, naive_mamba(direction(block.state_dict()), h)) < 1e-5, kwargs


@pytest.mark.parametrize("scan_backend", SCAN_BACKENDS)
@pytest.mark.parametrize("no_grad", [torch.no_grad, torch.inference_mode])
def test_prediction_without_gradient_equals_the_training_path_and_the_naive_loop(no_grad, scan_backend):
    """On the CPU a forward without gradient runs the causal conv as shifted multiply-adds in place
    (faster than the depthwise conv1d there); it must give what the training path and the loop give,
    with and without a reset mask."""
    block = randomize_(Mamba(8, scan_backend=scan_backend), seed=3).double()
    h = torch.randn(2, 23, 8, dtype=torch.float64)
    reset = torch.zeros(2, 23, dtype=torch.bool)
    reset[0, [0, 2, 9]] = True
    reset[1, [0, 1, 20]] = True
    for mask in (None, reset):
        trained = block(h, reset=mask)
        with no_grad():
            predicted = block(h, reset=mask)
        assert not predicted.requires_grad
        assert rel(predicted, trained) < 1e-12, mask is None
        assert rel(predicted, naive_mamba(direction(block.state_dict()), h, mask)) < 1e-5, mask is None


@pytest.mark.parametrize("scan_backend", SCAN_BACKENDS)
def test_lean_float32_prediction_equals_the_training_path(monkeypatch, scan_backend):
    """Without a gradient a float32, one-direction block on the CPU runs ``_forward_lean`` (the gate's half of
    in_proj after the scan, buffers dropped once spent): the same values as the training path."""
    block = randomize_(Mamba(8, scan_backend=scan_backend), seed=4)
    with torch.no_grad():
        block.A_log.mul_(0.5)                         # float32: keep the products moderate
    h = torch.randn(3, 40, 8)
    reset = torch.zeros(3, 40, dtype=torch.bool)
    reset[:, 0] = True
    reset[1, [7, 30]] = True
    calls = []
    lean = Mamba._forward_lean
    monkeypatch.setattr(Mamba, "_forward_lean", lambda self, *a: calls.append(1) or lean(self, *a))
    for mask in (None, reset):
        trained = block(h, reset=mask)
        with torch.inference_mode():
            predicted = block(h, reset=mask)
        assert rel(predicted, trained) < 1e-6, mask is None
    assert len(calls) == 2
    assert not Mamba(8)._lean(h)                      # with a gradient: the usual path
    with torch.no_grad():
        assert not Mamba(8, bidirectional=True)._lean(h) and not Mamba(8).double()._lean(h.double())


@pytest.mark.parametrize("scan_backend", SCAN_BACKENDS)
def test_t9_perturbing_token_t_leaves_earlier_outputs_bit_identical(scan_backend):
    torch.manual_seed(0)
    block = randomize_(Mamba(8, scan_backend=scan_backend), seed=1)
    h = torch.randn(2, 150, 8)  # longer than a scan chunk, so chunk carries are exercised
    with torch.no_grad():
        ref = block(h)
        for t in (0, 1, 63, 64, 100, 149):
            h2 = h.clone()
            h2[:, t] += 1.0
            out = block(h2)
            assert torch.equal(out[:, :t], ref[:, :t]), t
            assert not torch.equal(out[:, t], ref[:, t]), t


@pytest.mark.parametrize("d_model, count", [(32, 9_920), (128, 116_480), (256, 437_760)])
def test_t10_parameter_count(d_model, count):
    assert sum(p.numel() for p in Mamba(d_model).parameters()) == count


def test_t10_initialisation():
    torch.manual_seed(0)
    block = Mamba(128)
    dt = F.softplus(block.dt_proj.bias.detach())
    assert dt.min() >= 1e-3 * (1 - 1e-6) and dt.max() <= 1e-1 * (1 + 1e-6)
    assert dt.max() / dt.min() > 10  # spread log-uniformly, not a constant
    r = block.dt_rank
    assert block.dt_proj.weight.abs().max() <= r**-0.5
    A = -torch.exp(block.A_log.detach())
    assert torch.allclose(A, -torch.arange(1.0, 17.0).expand(256, 16), rtol=1e-6, atol=0)
    assert torch.equal(block.D.detach(), torch.ones(256))
    assert block.A_log.dtype == block.D.dtype == torch.float32
    assert block.A_log._no_weight_decay and block.D._no_weight_decay
    bf16 = Mamba(32, dtype=torch.bfloat16)
    assert bf16.in_proj.weight.dtype == torch.bfloat16 and bf16.A_log.dtype == bf16.D.dtype == torch.float32


def test_t11_mamba_ssm_1_2_0_state_dict_loads_strictly_and_matches_naive_loop():
    g = torch.Generator().manual_seed(3)
    sd = {k: 0.3 * torch.randn(shape, generator=g) for k, shape in MAMBA_SSM_1_2_0_D32.items()}
    sd["A_log"] = sd["A_log"] + 1.0
    sd["dt_proj.bias"] = sd["dt_proj.bias"] - 2.0
    block = Mamba(32)
    assert {k: tuple(v.shape) for k, v in block.state_dict().items()} == MAMBA_SSM_1_2_0_D32
    result = block.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    block = block.double()
    h = torch.randn(2, 9, 32, generator=g, dtype=torch.float64)
    assert rel(block(h), naive_mamba(direction(sd), h)) < 1e-5


def concat_with_reset(seqs_per_row):
    """Rows of concatenated sequences (equal total length) and their reset mask."""
    rows, resets = [], []
    for seqs in seqs_per_row:
        rows.append(torch.cat(seqs, 0))
        mask = torch.zeros(rows[-1].shape[0], dtype=torch.bool)
        start = 0
        for s in seqs:
            mask[start] = True
            start += s.shape[0]
        resets.append(mask)
    return torch.stack(rows), torch.stack(resets)


@pytest.mark.parametrize("scan_backend", SCAN_BACKENDS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_reset_concatenated_sequences_equal_separate_runs(bidirectional, scan_backend):
    torch.manual_seed(0)
    block = randomize_(Mamba(8, bidirectional=bidirectional, scan_backend=scan_backend), seed=2).double()
    lengths = [[5, 1, 9, 3], [2, 16], [18]]  # includes sequences shorter than d_conv
    seqs = [[torch.randn(n, 8, dtype=torch.float64) for n in row] for row in lengths]
    h, reset = concat_with_reset(seqs)
    reset[1, 0] = False  # position 0 starts a sequence with or without the flag
    out = block(h, reset=reset)
    for i, row in enumerate(seqs):
        start = 0
        for s in row:
            alone = block(s[None])[0]
            assert rel(out[i, start:start + len(s)], alone) < 1e-5, (bidirectional, i, start)
            start += len(s)
    # a mask without boundaries takes the masked-conv path and still equals the plain forward
    no_boundary = torch.zeros_like(reset)
    assert rel(block(h, reset=no_boundary), block(h)) < 1e-12


def test_bidirectional_equals_forward_plus_reversed_pass_of_b_parameters():
    torch.manual_seed(0)
    block = randomize_(Mamba(8, bidirectional=True, bias=True), seed=4).double()
    sd = block.state_dict()
    assert BACKWARD_KEYS <= set(sd)
    assert set(sd) - BACKWARD_KEYS == set(Mamba(8, bias=True).state_dict())
    h = torch.randn(2, 10, 8, dtype=torch.float64)
    forward = naive_mamba(direction(sd), h)
    backward = naive_mamba(direction(sd, "_b"), h.flip(1)).flip(1)
    # out_proj is affine, so out_proj((y_f + flip(y_b)) / 2) is the mean of the two full passes
    assert rel(block(h), (forward + backward) / 2) < 1e-5


@pytest.mark.parametrize("bidirectional", [False, True])
def test_gradients_reach_every_parameter_in_a_training_step(bidirectional):
    torch.manual_seed(0)
    block = Mamba(16, bidirectional=bidirectional)
    h = torch.randn(2, 12, 16)
    reset = torch.zeros(2, 12, dtype=torch.bool)
    reset[0, 5] = True
    before = {k: v.clone() for k, v in block.state_dict().items()}
    opt = torch.optim.Adam(block.parameters(), lr=1e-3)  # unit-size steps: tiny init grads still move
    block(h, reset=reset).pow(2).mean().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    opt.step()
    assert all(not torch.equal(before[k], v) for k, v in block.state_dict().items())


@pytest.mark.parametrize(
    "hidden, reset, match",
    [
        (torch.randn(4, 8), None, "hidden_states must be 3-D"),
        (torch.randn(1, 4, 8, 1), None, "hidden_states must be 3-D"),
        (torch.randn(2, 4, 7), None, "hidden_states last dim must be d_model=8"),
        (torch.ones(2, 4, 8, dtype=torch.long), None, "hidden_states must be a floating dtype"),
        (torch.randn(2, 0, 8), None, "hidden_states must have length >= 1"),
        (torch.randn(2, 4, 8), torch.zeros(2, 5, dtype=torch.bool), r"reset must have shape .*\(2, 4\)"),
        (torch.randn(2, 4, 8), torch.zeros(2, 4), "reset must be a torch.bool tensor, got torch.float32"),
    ],
)
def test_forward_rejects_bad_inputs(hidden, reset, match):
    with pytest.raises(ValueError, match=match):
        Mamba(8)(hidden, reset=reset)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"d_model": 0}, "d_model"),
        ({"d_model": 8.0}, "d_model"),
        ({"d_model": 8, "d_state": 0}, "d_state"),
        ({"d_model": 8, "d_conv": -1}, "d_conv"),
        ({"d_model": 8, "expand": 0}, "expand"),
        ({"d_model": 8, "dt_rank": 0}, "dt_rank"),
        ({"d_model": 8, "dt_rank": "full"}, "dt_rank"),
        ({"d_model": 8, "dt_min": 0.2, "dt_max": 0.1}, "dt_min"),
        ({"d_model": 8, "dt_min": 0.0}, "dt_min"),
        ({"d_model": 8, "dt_init_floor": 0.0}, "dt_init_floor"),
        ({"d_model": 8, "scan_backend": "gpu"}, "scan_backend"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Mamba(**kwargs)


def test_dt_rank_auto_is_ceil_d_model_over_16():
    assert Mamba(8).dt_rank == 1 and Mamba(33).dt_rank == math.ceil(33 / 16) == 3
