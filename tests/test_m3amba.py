"""M3amba (MODELS.md §5, §7 T29–T35) at a tiny size: cross-scan/merge, Cross-SS2D's swapped B and
averaged A, frozen CLIP with trainable pre-CLIP convs, output shapes, drop path, init and the loss."""

import copy
import json

import pytest
import torch
import torch.nn.functional as F

from engine.models.clip import ClipVisionEncoder, ClipVisionConfig
from engine.models.m3amba import (
    SS2D,
    CrossSS2D,
    DirectionalSSM,
    M3amba,
    cross_merge,
    cross_scan,
    m3amba_loss,
)
from engine.ssm.scan import selective_scan_reference

TINY_CLIP = dict(width=64, layers=2, heads=1, patch_size=32, image_size=64, output_dim=32)
HSI, AUX, NCLS = 5, 2, 4


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp(min=1e-12)).item()


def tiny_model(use_clip: bool = True, seed: int = 0, **overrides) -> M3amba:
    torch.manual_seed(seed)
    config = dict(dim=16, depth=2, use_clip=use_clip, clip=TINY_CLIP if use_clip else None)
    config.update(overrides)
    return M3amba(HSI, AUX, NCLS, **config)


def crops(b: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, HSI, 32, 32, generator=g), torch.rand(b, AUX, 32, 32, generator=g)


def randomise(ssm: DirectionalSSM, seed: int) -> None:
    """Move every SSM parameter off its structured init, so equalities cannot hold by coincidence."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in ssm.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))


# ---- T29: cross-scan and cross-merge --------------------------------------------------------------


def test_scan_directions_are_the_stated_permutations():
    h, w = 3, 5  # not square, so rows and columns cannot be confused
    x = torch.arange(h * w, dtype=torch.float64).view(1, 1, h, w)
    xs = cross_scan(x)[0, :, 0]  # (4, L)
    row_major = [x[0, 0, r, c] for r in range(h) for c in range(w)]
    col_major = [x[0, 0, r, c] for c in range(w) for r in range(h)]  # token c·H + r
    assert xs[0].tolist() == row_major
    assert xs[1].tolist() == col_major
    assert xs[2].tolist() == row_major[::-1]
    assert xs[3].tolist() == col_major[::-1]


def test_merge_inverts_scan_and_is_its_adjoint():
    h, w = 4, 7
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    assert torch.equal(cross_merge(cross_scan(x), h, w), 4 * x.flatten(2))
    y = torch.randn(2, 4, 3, h * w, dtype=torch.float64)
    lhs = (cross_scan(x) * y).sum()
    rhs = (x.flatten(2) * cross_merge(y, h, w)).sum()
    assert abs(lhs - rhs).item() <= 1e-12 * abs(rhs).item()


# ---- T30/T31: Cross-SS2D -------------------------------------------------------------------------


def test_cross_ss2d_with_equal_inputs_and_tied_parameters_is_plain_ss2d():
    torch.manual_seed(0)
    cross = CrossSS2D(8, d_state=4).double()
    randomise(cross.ssm_x, seed=1)
    cross.ssm_z.load_state_dict(cross.ssm_x.state_dict())
    plain = SS2D(8, d_state=4).double()
    shared = {k: v for k, v in cross.state_dict().items() if not k.startswith("ssm_")}
    ssm = {f"ssm.{k}": v for k, v in cross.ssm_x.state_dict().items()}
    plain.load_state_dict({**shared, **ssm})
    x = torch.randn(2, 5, 6, 8, dtype=torch.float64)
    o_x, o_z = cross(x, x)
    expected = plain(x)
    assert rel(o_x, expected) <= 1e-5 and rel(o_z, expected) <= 1e-5


def direct_direction_scan(u, x_ssm, z_ssm, zs, k):
    """Direction k of x's scan written out alone (3-D B/C, no channel batching): Ā from both streams,
    B from z's projection, Δ, C, D and bias from x's."""
    r, n = x_ssm.dt_rank, x_ssm.d_state
    e = u.shape[1]
    rows = slice(k * e, (k + 1) * e)
    proj_x = torch.einsum("ce,bel->bcl", x_ssm.x_proj_weight[k], u)
    delta = torch.einsum("er,brl->bel", x_ssm.dt_projs_weight[k], proj_x[:, :r])
    B = torch.einsum("ce,bel->bcl", z_ssm.x_proj_weight[k][r:r + n], zs[:, k])
    A = (-torch.exp(x_ssm.A_logs[rows]) - torch.exp(z_ssm.A_logs[rows])) / 2
    return selective_scan_reference(u, delta, A, B, proj_x[:, r + n:], x_ssm.Ds[rows],
                                    delta_bias=x_ssm.dt_projs_bias[k], delta_softplus=True)


def test_cross_ss2d_scan_of_x_uses_averaged_A_and_B_of_z():
    torch.manual_seed(0)
    cross = CrossSS2D(8, d_state=4).double()
    randomise(cross.ssm_x, seed=1)
    randomise(cross.ssm_z, seed=2)
    x, z = torch.randn(2, 2, 5, 6, 8, dtype=torch.float64).unbind(0)
    xs, _ = cross._branch(x)
    zs, _ = cross._branch(z)
    y_x, y_z = cross.selective(xs, zs)
    for k in range(4):
        assert rel(y_x[:, k], direct_direction_scan(xs[:, k], cross.ssm_x, cross.ssm_z, zs, k)) <= 1e-5
        assert rel(y_z[:, k], direct_direction_scan(zs[:, k], cross.ssm_z, cross.ssm_x, xs, k)) <= 1e-5


def test_cross_ss2d_x_output_ignores_z_delta_C_dt_and_D_but_not_z_B_or_A():
    torch.manual_seed(0)
    cross = CrossSS2D(8, d_state=4).double()
    randomise(cross.ssm_x, seed=1)
    randomise(cross.ssm_z, seed=2)
    x, z = torch.randn(2, 2, 5, 6, 8, dtype=torch.float64).unbind(0)
    o_x = cross(x, z)[0]
    r, n = cross.dt_rank, cross.d_state

    def o_x_after(change) -> torch.Tensor:
        other = copy.deepcopy(cross)
        with torch.no_grad():
            change(other.ssm_z)
        return other(x, z)[0]

    unchanged = {
        "delta rows": lambda s: s.x_proj_weight[:, :r].mul_(-2),
        "C rows": lambda s: s.x_proj_weight[:, r + n:].mul_(-2),
        "dt weights": lambda s: s.dt_projs_weight.mul_(3),
        "dt bias": lambda s: s.dt_projs_bias.add_(1),
        "D": lambda s: s.Ds.mul_(-1),
    }
    for what, change in unchanged.items():
        assert torch.equal(o_x_after(change), o_x), what
    for what, change in {"B rows": lambda s: s.x_proj_weight[:, r:r + n].mul_(-2),
                         "A_log": lambda s: s.A_logs.add_(0.5)}.items():
        assert rel(o_x_after(change), o_x) > 1e-3, what
    o_x_alone, o_z_skipped = cross(x, z, with_z=False)
    assert o_z_skipped is None and rel(o_x_alone, o_x) <= 1e-12  # skipping z's scan changes nothing for x


# ---- T32/T33: the CLIP branch ---------------------------------------------------------------------


def test_frozen_clip_is_unchanged_after_a_step_while_pre_clip_convs_learn():
    model = tiny_model().train()
    assert not model.clip.training and all(not p.requires_grad for p in model.clip.parameters())
    before = copy.deepcopy(model.clip.state_dict())
    embeds = {name: getattr(model, name).embed.weight.detach().clone() for name in ("adapter_hsi", "adapter_aux")}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.05)  # frozen ones included on purpose
    x_hsi, x_aux = crops(1)
    labels = torch.randint(-1, NCLS, (1, 32, 32), generator=torch.Generator().manual_seed(2))
    m3amba_loss(model(x_hsi, x_aux), labels).backward()
    for name in embeds:
        grad = getattr(model, name).embed.weight.grad
        assert grad is not None and grad.abs().sum() > 0, f"{name}.embed got no gradient through CLIP"
    assert all(p.grad is None for p in model.clip.parameters())
    optimizer.step()
    after = model.clip.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not torch.equal(getattr(model, name).embed.weight, embeds[name]) for name in embeds)


def test_inference_runs_clip_without_autograd():
    model = tiny_model().eval()
    x_hsi, x_aux = crops()
    _, fused, _ = model(x_hsi[:1], x_aux[:1])
    fused.sum().backward()  # the streams are still on the tape, CLIP is not
    assert model.adapter_hsi.embed.weight.grad is None and model.adapter_hsi.fc.weight.grad is not None


def test_clip_weights_load_record_their_hash_and_travel_in_the_state_dict(tmp_path):
    model = tiny_model()
    with pytest.raises(ValueError, match=r"needs CLIP image-encoder weights.*--clip-weights FILE.*--no-clip"):
        model.require_clip_weights()
    assert model.clip_sha256 is None
    torch.manual_seed(5)
    source = ClipVisionEncoder(ClipVisionConfig(**TINY_CLIP))
    path = tmp_path / "clip.pt"
    torch.save({f"visual.{k}": v for k, v in source.state_dict().items()}, path)
    checkpoint = model.load_clip_weights(str(path))
    model.require_clip_weights()
    assert model.clip_sha256 == checkpoint.sha256 and len(checkpoint.sha256) == 64
    assert all(not p.requires_grad for p in model.clip.parameters())
    rebuilt = M3amba(**json.loads(json.dumps(model.config)))
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.clip_sha256 == checkpoint.sha256
    assert torch.equal(rebuilt.clip.proj, source.proj)


def test_clip_file_of_another_size_is_refused(tmp_path):
    other = ClipVisionEncoder(ClipVisionConfig(**{**TINY_CLIP, "output_dim": 48}))
    path = tmp_path / "clip.pt"
    torch.save(other.state_dict(), path)
    with pytest.raises(ValueError, match="of another size"):
        tiny_model().load_clip_weights(str(path))


def test_ablation_without_clip_needs_no_weights_and_has_no_clip_parameters(tmp_path):
    model = tiny_model(use_clip=False)
    model.require_clip_weights()
    assert model.clip is None and not any(k.startswith(("clip", "adapter")) for k in model.state_dict())
    with pytest.raises(ValueError, match="use_clip=False"):
        model.load_clip_weights(str(tmp_path / "any.pt"))


# ---- T34: shapes, drop path, init, config --------------------------------------------------------


@pytest.mark.parametrize("use_clip", [True, False])
def test_forward_gives_three_maps_per_crop(use_clip):
    model = tiny_model(use_clip=use_clip).eval()
    with torch.no_grad():
        outputs = model(*crops(3))
    assert len(outputs) == 3 and all(o.shape == (3, NCLS, 32, 32) for o in outputs)
    assert all(torch.isfinite(o).all() for o in outputs)
    assert not torch.equal(outputs[0], outputs[1]) and not torch.equal(outputs[1], outputs[2])


def test_drop_path_rates_rise_linearly_in_each_stream():
    model = tiny_model(depth=9)
    expected = [0.1 * i / 8 for i in range(9)]
    for blocks in (model.blocks_hsi, model.blocks_aux, model.blocks_fusion):
        assert [b.drop_path.p for b in blocks] == pytest.approx(expected, abs=1e-12)


def test_initialisation_follows_the_spec():
    model = tiny_model(use_clip=False, dim=64, depth=1)
    linear = model.blocks_fusion[0].mlp.fc1
    assert abs(linear.weight.std().item() - 0.02) < 0.002
    assert torch.equal(linear.bias, torch.zeros_like(linear.bias))
    norm = model.blocks_hsi[0].norm
    assert torch.equal(norm.weight, torch.ones(64)) and torch.equal(norm.bias, torch.zeros(64))
    ssm = model.blocks_hsi[0].op.ssm_z
    assert ssm.x_proj_weight.shape == (4, 4 + 2 * 16, 128) and ssm.A_logs.shape == (4 * 128, 16)
    assert torch.allclose(torch.exp(ssm.A_logs), torch.arange(1, 17.0).expand(4 * 128, 16), rtol=1e-6, atol=0)
    assert torch.equal(ssm.Ds, torch.ones(4 * 128))
    dt = F.softplus(ssm.dt_projs_bias)
    assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 1e-1 * (1 + 1e-5)


def test_paper_size_layout():
    with torch.device("meta"):
        model = M3amba(64, 2, 11)  # MUUFL: 64 HSI bands, 2 LiDAR rasters, 11 classes
    op = model.blocks_hsi[0].op
    assert (op.d_inner, op.d_state, op.dt_rank) == (768, 16, 24)
    assert op.ssm_x.x_proj_weight.shape == (4, 24 + 32, 768) and op.ssm_x.dt_projs_weight.shape == (4, 768, 24)
    assert model.blocks_fusion[0].mlp.fc1.weight.shape == (1536, 384)
    assert len(model.blocks_hsi) == len(model.blocks_aux) == len(model.blocks_fusion) == 9
    assert model.clip.config.image_size == 224 and model.adapter_hsi.fc.weight.shape == (1024, 512)


def test_config_is_json_and_rebuilds_the_same_architecture():
    model = tiny_model()
    rebuilt = M3amba(**json.loads(json.dumps(model.config)))
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_bad_inputs_and_config_are_refused():
    model = tiny_model(use_clip=False)
    x_hsi, x_aux = crops()
    with pytest.raises(ValueError, match=r"x_aux must be \(B, 2, 32, 32\) crops, got \(2, 3, 32, 32\)"):
        model(x_hsi, torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"x_hsi must be \(B, 5, 32, 32\)"):
        model(torch.rand(2, HSI, 16, 16), x_aux)
    with pytest.raises(ValueError, match="pair them"):
        model(x_hsi, x_aux[:1])
    with pytest.raises(ValueError, match="drop_path"):
        M3amba(HSI, AUX, NCLS, drop_path=1.0, use_clip=False)
    with pytest.raises(ValueError, match="use_clip=False"):
        M3amba(HSI, AUX, NCLS, use_clip=False, clip=TINY_CLIP)
    with pytest.raises(ValueError, match="scan_backend"):
        M3amba(HSI, AUX, NCLS, use_clip=False, scan_backend="gpu")


# ---- T35 (loss part) -----------------------------------------------------------------------------


def test_loss_masks_unlabelled_pixels_in_cross_entropy():
    g = torch.Generator().manual_seed(0)
    outputs = [torch.randn(2, NCLS, 8, 8, generator=g) for _ in range(3)]
    labels = torch.randint(0, NCLS, (2, 8, 8), generator=g)
    labels[:, :4] = -1
    expected = sum(F.cross_entropy(o.permute(0, 2, 3, 1)[labels >= 0], labels[labels >= 0]) for o in outputs)
    assert m3amba_loss(outputs, labels, lambda2=0.0).item() == pytest.approx(expected.item(), rel=1e-6)
    changed = [o.clone() for o in outputs]
    for o in changed:
        o[:, :, :4] = 100 * torch.randn(2, NCLS, 4, 8, generator=g)
    assert m3amba_loss(changed, labels, lambda2=0.0).item() == pytest.approx(expected.item(), rel=1e-6)
    unlabelled = torch.full((2, 8, 8), -1)
    assert m3amba_loss(outputs, unlabelled, lambda2=0.0).item() == 0.0


def test_consistency_term_is_zero_when_heads_agree_and_counts_every_pixel():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, NCLS, 8, 8, generator=g)
    labels = torch.full((2, 8, 8), -1)
    assert m3amba_loss([logits, logits + 5.0, logits], labels).item() == pytest.approx(0.0, abs=1e-6)
    m1, m2 = logits.clone(), logits.clone()
    m1[:, :, 0, 0] = torch.tensor([9.0, -9.0, -9.0, -9.0])  # disagree on one pixel of 128
    mf = logits.clone()
    mf[:, :, 0, 0] = torch.tensor([-9.0, 9.0, -9.0, -9.0])
    m2[:, :, 0, 0] = mf[:, :, 0, 0]
    pf, p1 = mf[:, :, 0, 0].softmax(1), m1[:, :, 0, 0].softmax(1)
    per_pixel = 1 - F.cosine_similarity(p1, pf, dim=1)  # (2,)
    assert m3amba_loss([m1, mf, m2], labels, lambda2=1.0).item() == pytest.approx(per_pixel.sum().item() / 128, rel=1e-5)


def test_loss_refuses_labels_of_another_shape():
    outputs = [torch.randn(2, NCLS, 8, 8) for _ in range(3)]
    with pytest.raises(ValueError, match=r"labels must be \(B, H, W\)"):
        m3amba_loss(outputs, torch.zeros(2, 4, 4, dtype=torch.long))
