"""MODELS.md T20–T28: CSSMamba's partition, EMA prototypes, memberships, gate, top-k routing, shared
local weights, cluster loss, PU-size shapes and every §4.12 configuration."""

import io
import json

import numpy as np
import pytest
import torch
from torch import nn

from engine.models.cssmamba import (
    ClusterSpatialMamba,
    CSSMamba,
    LearnableClustering,
    LocalBranch,
    TokenSelector,
    cluster_loss_la,
    hard_partition,
    la_terms,
    mode_pool2x2,
    segment_softmax,
    topk_partition,
)


@pytest.fixture(autouse=True)
def one_thread():
    """These shapes are tiny: one thread avoids OpenMP hand-offs, which dominate on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp(min=1e-12)).item()


def scene(seed=0, size=16, bands=6, classes=2):
    """Raw spectra (bands, H, W) with one class per image half, a 20-per-class training map, valid mask."""
    rng = np.random.default_rng(seed)
    labels = np.repeat((np.arange(size) * classes // size)[None], size, axis=0)
    means = rng.uniform(0.1, 0.9, (classes, bands))
    raw = (means[labels].transpose(2, 0, 1) + rng.normal(0, 0.05, (bands, size, size))).astype(np.float32)
    train = np.full(labels.shape, -1, dtype=np.int64)
    for cls in range(classes):
        train.flat[rng.choice(np.flatnonzero(labels == cls), 20, replace=False)] = cls
    return raw, train, np.ones(labels.shape, dtype=bool)


def model_and_guide(**config):
    raw, train, valid = scene()
    torch.manual_seed(0)
    model = CSSMamba(in_bands=raw.shape[0], n_classes=2, **{"dim": 8, "stages": 1, **config})
    return model, torch.from_numpy(raw)[None], model.make_guide(raw, train, valid)[None], torch.from_numpy(train)[None]


# ---------------------------------------------------------------------------------------------- T20


def test_hard_partition_is_a_permutation_ordered_by_ascending_score_with_stable_ties():
    assign = torch.tensor([[2, 0, 1, 0, 2, 0, 1, 1, 0, 2]])
    score = torch.tensor([[0.5, 0.3, 0.1, 0.3, 0.2, 0.1, 0.4, 0.1, 0.9, 0.5]])
    part = hard_partition(assign, n_clusters=4, score=score)
    assert part.index.tolist() == [5, 1, 3, 8, 2, 7, 6, 4, 0, 9]
    assert part.cluster.tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert part.spans == [(0, 0, 4), (1, 4, 7), (2, 7, 10)]   # empty cluster 3 skipped
    assert part.reset.nonzero().flatten().tolist() == [0, 4, 7]
    raster = hard_partition(assign, n_clusters=4)
    assert raster.index.tolist() == [1, 3, 5, 8, 2, 6, 7, 0, 4, 9]


def test_descending_token_order_puts_the_best_first_and_keeps_the_leading_ones():
    assign = torch.tensor([[2, 0, 1, 0, 2, 0, 1, 1, 0, 2]])
    score = torch.tensor([[0.5, 0.3, 0.1, 0.3, 0.2, 0.1, 0.4, 0.1, 0.9, 0.5]])
    part = hard_partition(assign, n_clusters=4, score=score, descending=True)
    assert part.index.tolist() == [8, 1, 3, 5, 6, 2, 7, 0, 9, 4]     # ties (1, 3), (2, 7), (0, 9) in raster order
    assert part.reset.nonzero().flatten().tolist() == [0, 4, 7]
    kept = hard_partition(assign, n_clusters=4, score=score, keep_ratio=0.5, descending=True)
    assert kept.index.tolist() == [8, 1, 6, 2, 0, 9]                 # the ⌈n/2⌉ highest, ties in raster order
    model, x, guide, _ = model_and_guide(token_order="descending")
    assert model(x, guide).logits.shape[-2:] == x.shape[-2:]
    with pytest.raises(ValueError, match="token_order orders the hard partition"):
        model_and_guide(token_order="descending", partition="topk")


@pytest.mark.parametrize("kernel", [3, 1, 5])
def test_head_kernel_sets_how_far_a_pixel_s_features_reach_in_the_head(kernel):
    """The head's first conv, before its GroupNorm (which spans the image whatever the kernel)."""
    model, x, guide, _ = model_and_guide(head_kernel=kernel)
    features = torch.randn(1, 8, 7, 7)
    moved = features.clone()
    moved[0, :, 3, 3] += 1.0
    with torch.no_grad():
        changed = (model.head.hidden(moved) - model.head.hidden(features)).abs().amax(1)[0] > 0
    assert changed.sum().item() == kernel * kernel
    assert changed[3 - kernel // 2:4 + kernel // 2, 3 - kernel // 2:4 + kernel // 2].all()
    assert model(x, guide).logits.shape[-2:] == x.shape[-2:]


@pytest.mark.parametrize("bad", [2, 7, 3.0, True, "1"])
def test_a_head_kernel_other_than_1_3_or_5_is_refused(bad):
    with pytest.raises(ValueError, match="head_kernel must be one of"):
        model_and_guide(head_kernel=bad)


def test_gather_then_identity_then_scatter_restores_the_tokens_exactly():
    torch.manual_seed(0)
    tokens = torch.randn(2, 50, 5)
    part = hard_partition(torch.randint(0, 4, (2, 50)), 4, torch.rand(2, 50))
    assert torch.equal(torch.sort(part.index).values, torch.arange(100))
    assert torch.equal(part.scatter(part.gather(tokens), 2, 50), tokens)


def test_batched_partition_runs_cluster_major_then_image_and_keep_ratio_keeps_the_best():
    assign = torch.tensor([[0, 1, 0, 0], [0, 0, 1, 1]])
    score = torch.tensor([[0.3, 0.5, 0.1, 0.2], [0.4, 0.6, 0.9, 0.8]])
    part = hard_partition(assign, 2, score)
    assert part.index.tolist() == [2, 3, 0, 4, 5, 1, 7, 6]   # (c0, img0), (c0, img1), (c1, img0), (c1, img1)
    assert part.reset.tolist() == [True, False, False, True, False, True, True, False]
    kept = hard_partition(assign, 2, score, keep_ratio=0.5)   # ⌈0.5·n⌉ highest of each (cluster, image)
    assert kept.index.tolist() == [3, 0, 5, 1, 6]
    assert kept.spans == [(0, 0, 3), (1, 3, 5)]
    assert kept.reset.tolist() == [True, False, True, True, True]


def test_dropped_tokens_keep_only_the_residual():
    model, x, guide, _ = model_and_guide(keep_ratio=0.5)
    spatial = model.stages[0].spatial
    spatial.local = nn.ModuleList(_Ones(8) for _ in spatial.local)
    seen = {}
    spatial.norm2.register_forward_pre_hook(lambda module, args: seen.update(o=args[0]))
    tokens = model.embed(x).flatten(2).transpose(1, 2)
    model.train()
    model(x, guide)
    routed = seen["o"] - tokens
    counts = routed[0, :, 0]
    assert set(counts.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(seen["o"][0][counts == 0], tokens[0][counts == 0])
    assert 0.5 <= counts.mean().item() < 0.6   # ⌈0.5·n_c⌉ per cluster


class _Ones(nn.Module):
    """A stand-in local branch whose output (1, T, dim) is all ones, to count how often a token is routed."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, u, reset=None):
        return u.new_ones(u.shape[0], u.shape[1], self.dim)


# ---------------------------------------------------------------------------------------------- T21


def test_ema_first_update_sets_the_mean_then_blends_and_skips_empty_groups():
    torch.manual_seed(0)
    lcm = LearnableClustering(4, 3, momentum=0.9)
    u1 = torch.randn(1, 6, 4)
    lcm.update(u1, torch.tensor([[0, 0, 1, -1, 1, -1]]))
    assert torch.allclose(lcm.prototypes[0], u1[0, :2].mean(0))
    assert torch.allclose(lcm.prototypes[1], u1[0, [2, 4]].mean(0))
    assert torch.equal(lcm.prototypes[2], torch.zeros(4)) and lcm.used.tolist() == [True, True, False]
    old = lcm.prototypes.clone()
    u2 = torch.randn(1, 3, 4)
    lcm.update(u2, torch.tensor([[0, -1, 0]]))
    assert torch.allclose(lcm.prototypes[0], 0.9 * old[0] + 0.1 * u2[0, [0, 2]].mean(0))
    assert torch.equal(lcm.prototypes[1:], old[1:])


def test_deferred_ema_takes_one_step_over_every_window_of_the_optimizer_step():
    """Label windows: one EMA step per optimizer step over all windows' pixels, as one whole-scene forward
    takes; an id first seen in a window is still set at once."""
    torch.manual_seed(0)
    whole, windows = LearnableClustering(4, 3, momentum=0.9), LearnableClustering(4, 3, momentum=0.9)
    start = torch.randn(1, 4, 4)
    for lcm in (whole, windows):
        lcm.update(start, torch.tensor([[0, 0, 1, 1]]))
    u1, u2 = torch.randn(1, 5, 4), torch.randn(1, 3, 4)
    g1, g2 = torch.tensor([[0, 1, -1, 0, 2]]), torch.tensor([[1, 0, -1]])
    whole.update(torch.cat([u1, u2], 1), torch.cat([g1, g2], 1))
    before = windows.prototypes[:2].clone()
    windows.deferring = True
    windows.update(u1, g1)
    assert torch.allclose(windows.prototypes[2], u1[0, 4]) and windows.used.all()   # new id: set at once
    assert torch.equal(windows.prototypes[:2], before)                               # the others wait
    windows.update(u2, g2)
    windows.flush()
    torch.testing.assert_close(windows.prototypes, whole.prototypes)
    windows.flush()                                                                  # nothing pending: no step
    torch.testing.assert_close(windows.prototypes, whole.prototypes)


def test_ema_runs_only_in_training_with_groups_and_never_gets_a_gradient():
    torch.manual_seed(0)
    lcm = LearnableClustering(4, 2)
    u = torch.randn(1, 5, 4, requires_grad=True)
    groups = torch.tensor([[0, 1, 1, -1, 0]])
    lcm.train()
    logits = lcm(u, groups)   # first step: the means exist before they are compared with
    assert torch.allclose(lcm.prototypes[0], u[0, [0, 4]].mean(0))
    assert torch.isfinite(logits).all()
    logits.softmax(-1)[..., 0].sum().backward()
    assert not lcm.prototypes.requires_grad and lcm.prototypes.grad is None
    assert u.grad.abs().sum() > 0
    lcm.eval()
    before = lcm.prototypes.clone()
    lcm(torch.randn(1, 5, 4), groups)
    assert torch.equal(lcm.prototypes, before)
    lcm.train()
    lcm(torch.randn(1, 5, 4))
    assert torch.equal(lcm.prototypes, before)


def test_prototypes_round_trip_through_the_state_dict():
    model, x, guide, _ = model_and_guide()
    model.train()
    model(x, guide)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer)
    assert "stages.0.spatial.lcm.prototypes" in state and "stages.0.spatial.lcm.used" in state
    clone = CSSMamba(**model.config)
    clone.load_state_dict(state)
    assert torch.equal(clone.stages[0].spatial.lcm.prototypes, model.stages[0].spatial.lcm.prototypes)
    model.eval()
    clone.eval()
    with torch.no_grad():
        assert torch.equal(clone(x).logits, model(x).logits)


# ---------------------------------------------------------------------------------------------- T22


def test_memberships_sum_to_one_ignore_the_scale_of_u_and_skip_unused_ids():
    torch.manual_seed(0)
    lcm = LearnableClustering(6, 4, tau=0.5)
    lcm.update(torch.randn(1, 9, 6), torch.tensor([[0, 1, 2, 0, 1, 2, -1, -1, -1]]))
    u = torch.randn(2, 7, 6)
    p = lcm.logits(u).softmax(-1)
    assert torch.allclose(p.sum(-1), torch.ones(2, 7))
    assert torch.allclose(lcm.logits(3.7 * u).softmax(-1), p, atol=1e-6)
    assert torch.all(p[..., 3] == 0)   # id 3 was never updated


# ---------------------------------------------------------------------------------------------- T23


def test_gate_limits_are_attention_only_and_prior_only():
    torch.manual_seed(0)
    selector = TokenSelector(16, "sigmoid")
    prior_only = TokenSelector(16, "prior")
    u, prior = torch.randn(1, 12, 16), torch.rand(1, 12)
    segment = torch.randint(0, 3, (1, 12))
    with torch.no_grad():
        attention = segment_softmax(selector.attention(u).flatten(), segment.flatten(), 3).view(1, 12)
        selector.alpha.fill_(50.0)
        assert torch.allclose(selector.cluster_scores(u, prior, segment, 3), attention)
        selector.alpha.fill_(-50.0)
        expected = prior_only.cluster_scores(u, prior, segment, 3)
        assert torch.allclose(selector.cluster_scores(u, prior, segment, 3), expected)
        assert torch.allclose(expected, segment_softmax(prior.flatten(), segment.flatten(), 3).view(1, 12))
    assert abs(TokenSelector(16).gate_value().item() - 0.6225) < 1e-4   # σ(0.5)


def test_scale_averages_one_per_cluster_and_gate_and_attention_weights_get_gradients():
    torch.manual_seed(0)
    spatial = ClusterSpatialMamba(8, 3)
    x = torch.randn(1, 8, 6, 6)
    groups = torch.randint(-1, 3, (1, 6, 6))
    spatial.train()
    spatial(x, groups)   # prototypes exist from now on
    u = spatial.lin_in(spatial.norm1(x.flatten(2).transpose(1, 2)))
    p = spatial.lcm(u).softmax(-1)
    part, scale = spatial._hard(u, p, p.argmax(-1))
    for c, start, stop in part.spans:
        assert abs(scale[start:stop].mean().item() - 1) < 1e-5
    cspa, loss, _ = spatial(x, groups)
    (cspa.square().mean() + loss).backward()
    selector = spatial.selector
    for weight in (selector.alpha, selector.query.weight, selector.key.weight):
        assert weight.grad is not None and weight.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------- T24


def test_topk_picks_k_ascending_indices_per_cluster():
    torch.manual_seed(0)
    score = torch.rand(2, 10, 3)
    part = topk_partition(score, [2, 3, 1])
    for c, start, stop in part.spans:
        k = [2, 3, 1][c]
        picked = part.index[start:stop].view(2, k)
        for b in range(2):
            local = picked[b] - b * 10
            assert torch.equal(local, torch.sort(local).values)
            assert set(local.tolist()) == set(score[b, :, c].topk(k).indices.tolist())
    assert part.reset.sum() == 6   # one sequence per (cluster, image)


def test_topk_sums_duplicates_and_unselected_tokens_keep_only_the_residual():
    torch.manual_seed(0)
    spatial = ClusterSpatialMamba(8, 3, partition="topk").eval()
    spatial.local = nn.ModuleList(_Ones(8) for _ in range(3))
    spatial.static_share.copy_(torch.tensor([0.5, 0.5, 0.1], dtype=torch.float64))
    seen = {}
    spatial.norm2.register_forward_pre_hook(lambda module, args: seen.update(o=args[0]))
    x = torch.randn(1, 8, 4, 5)
    spatial(x)
    tokens = x.flatten(2).transpose(1, 2)
    u = spatial.lin_in(spatial.norm1(tokens))
    score = spatial.selector.topk_scores(u, spatial.lcm(u).softmax(-1))[0]
    expected = torch.zeros(20)
    for c, k in enumerate([10, 10, 2]):
        expected[score[:, c].topk(k).indices] += 1
    routed = seen["o"][0] - tokens[0]
    assert torch.allclose(routed, expected[:, None].expand(20, 8))
    assert expected.max() >= 2 and expected.min() == 0   # both cases occur
    assert torch.equal(seen["o"][0][expected == 0], tokens[0][expected == 0])


# ---------------------------------------------------------------------------------------------- T25


def test_shared_weights_equal_the_per_cluster_loop_when_all_branches_are_identical():
    torch.manual_seed(0)
    per_cluster = ClusterSpatialMamba(8, 3)
    for branch in per_cluster.local[1:]:
        branch.load_state_dict(per_cluster.local[0].state_dict())
    x = torch.randn(2, 8, 6, 7)
    per_cluster.train()
    per_cluster(x, torch.randint(-1, 3, (2, 6, 7)))
    shared = ClusterSpatialMamba(8, 3, local_weights="shared")
    missing, unexpected = shared.load_state_dict(per_cluster.state_dict(), strict=False)
    assert not missing and all(key.startswith(("local.1.", "local.2.")) for key in unexpected)
    per_cluster.eval()
    shared.eval()
    with torch.no_grad():
        a, _, assign = per_cluster(x)
        b, _, _ = shared(x)
        assert len(assign.unique()) > 1
        assert rel(b, a) < 1e-5
        alone = per_cluster(x[1:])[0]   # the batch's second image, run alone
        assert rel(a[1:], alone) < 1e-5


def test_local_branch_restarts_at_resets_and_ignores_right_padding():
    torch.manual_seed(0)
    branch = LocalBranch(8, 4)
    first, second = torch.randn(1, 5, 8), torch.randn(1, 9, 8)
    reset = torch.zeros(1, 14, dtype=torch.bool)
    reset[0, [0, 5]] = True
    with torch.no_grad():
        joined = branch(torch.cat([first, second], 1), reset)
        assert rel(joined[:, :5], branch(first)) < 1e-5
        assert rel(joined[:, 5:], branch(second)) < 1e-5
        padded = branch(torch.cat([first, torch.zeros(1, 4, 8)], 1))
        assert rel(padded[:, :5], branch(first)) < 1e-6


# ---------------------------------------------------------------------------------------------- T26


def test_cluster_loss_expanded_form_equals_the_naive_form():
    torch.manual_seed(0)
    u = torch.randn(2, 30, 6, dtype=torch.float64)
    p = torch.randn(2, 30, 4, dtype=torch.float64).softmax(-1)
    compactness, separation = la_terms(u, p)
    unit = u / u.norm(dim=-1, keepdim=True)
    centroids = (p[..., None] * unit[:, :, None]).sum(1) / (p.sum(1)[..., None] + 1e-8)   # (B, K, C)
    naive = (p * (unit[:, :, None] - centroids[:, None]).square().sum(-1)).sum((1, 2)) / 30
    cos = torch.nn.functional.cosine_similarity(centroids[:, :, None], centroids[:, None], dim=-1)
    naive_sep = (cos.sum((1, 2)) - cos.diagonal(dim1=1, dim2=2).sum(-1)) / 12
    assert torch.allclose(compactness, naive, atol=1e-12)
    assert torch.allclose(separation, naive_sep, atol=1e-12)
    assert torch.all(separation.abs() <= 1)
    assert torch.allclose(cluster_loss_la(u, p), (naive + naive_sep).mean())


def test_compactness_vanishes_for_identical_tokens_with_one_hot_memberships():
    torch.manual_seed(0)
    centres = torch.randn(3, 5, dtype=torch.float64)
    assign = torch.tensor([0, 0, 1, 2, 2, 2, 1, 0])
    u = (centres[assign] * torch.rand(8, 1, dtype=torch.float64) * 3)[None]   # same direction per cluster
    p = torch.nn.functional.one_hot(assign, 3).double()[None]
    compactness, separation = la_terms(u, p)
    assert abs(compactness.item()) <= 1e-12
    assert -1 <= separation.item() <= 1


# ---------------------------------------------------------------------------------------------- T27


def test_pu_size_forward_gives_full_resolution_logits():
    # (1, 103, 610, 340) -> (1, 9, 610, 340). Narrow (dim 4, one stage, K = 1): at dim 128 the forward
    # takes minutes on two cores; the shapes do not depend on the width.
    torch.manual_seed(0)
    model = CSSMamba(in_bands=103, n_classes=9, dim=4, stages=1, clusters_per_class=1).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 103, 610, 340))
    assert out.logits.shape == (1, 9, 610, 340)
    assert out.clusters.shape == (1, 610, 340) and out.aux_loss is None


# ---------------------------------------------------------------------------------------------- T28

ABLATIONS = [
    {},
    *({"clusters_per_class": k} for k in (1, 2, 4, 5)),
    {"cluster_loss": "none"},
    {"cluster_loss_weight": 0.0},
    {"cluster_loss": "lb"},
    {"gate": "prior"},
    {"gate": "attention"},
    {"token_selection": False},
    {"partition": "topk"},
    {"local_weights": "shared"},
    {"pooling": True},
    {"keep_ratio": 0.5},
]


@pytest.mark.parametrize("overrides", ABLATIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_every_ablation_trains_one_step_and_evaluates(overrides):
    rng = np.random.default_rng(0)
    labels = np.repeat((np.arange(64) * 3 // 64)[None], 64, axis=0)
    raw = (rng.uniform(0, 1, (3, 20))[labels].transpose(2, 0, 1) + rng.normal(0, 0.05, (20, 64, 64))).astype(np.float32)
    train = np.full(labels.shape, -1, dtype=np.int64)
    for cls in range(3):
        train.flat[rng.choice(np.flatnonzero(labels == cls), 15, replace=False)] = cls
    torch.manual_seed(0)
    model = CSSMamba(in_bands=20, n_classes=3, **{"dim": 8, **overrides})
    guide = model.make_guide(raw, train, np.ones(labels.shape, dtype=bool))[None]
    x, target = torch.from_numpy(raw)[None], torch.from_numpy(train)[None]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = model.head.classify.weight.clone()
    model.train()
    out = model(x, guide)
    loss = nn.functional.cross_entropy(out.logits, target, ignore_index=-1)
    loss_off = overrides.get("cluster_loss") == "none" or overrides.get("cluster_loss_weight") == 0
    assert (out.aux_loss is None) == loss_off
    if not loss_off:
        assert torch.isfinite(out.aux_loss) and out.aux_loss.dim() == 0
        loss = loss + out.aux_loss
    loss.backward()
    optimizer.step()
    assert not torch.equal(model.head.classify.weight, before)
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert out.logits.shape == (1, 3, 64, 64) and torch.isfinite(out.logits).all()
    assert out.aux_loss is None
    assert out.clusters.shape == (1, 64, 64) and out.clusters.max() < 3 * model.config["clusters_per_class"]
    # HSIClassifier's contract, on which the trainer's validation relies: a training forward with the
    # guide gives exactly the eval forward's logits (EMA prototypes move only after them).
    model.train()
    with torch.no_grad():
        assert torch.equal(model(x, guide).logits, out.logits)


# ---------------------------------------------------------------------------------------------- API


def test_config_is_json_and_rebuilds_the_same_architecture():
    model = CSSMamba(in_bands=5, n_classes=2, dim=8, stages=2, local_weights="shared", partition="topk")
    config = json.loads(json.dumps(model.config))
    assert config["in_bands"] == 5 and config["partition"] == "topk" and config["scan_backend"] is None
    rebuilt = CSSMamba(**config)
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    assert model.name == "cssmamba"


@pytest.mark.parametrize("overrides, message", [
    ({"dim": 6}, "multiple of 4"),
    ({"clusters_per_class": 6}, "1..5"),
    ({"clusters_per_class": 0}, "positive integer"),
    ({"cluster_loss": "lc"}, "cluster_loss"),
    ({"gate": "learned"}, "gate"),
    ({"partition": "soft"}, "partition"),
    ({"local_weights": "tied"}, "local_weights"),
    ({"keep_ratio": 0.0}, "keep_ratio"),
    ({"tau": 0}, "tau"),
    ({"ema_momentum": 1.0}, "ema_momentum"),
    ({"cluster_loss_weight": -0.1}, "cluster_loss_weight"),
    ({"pooling": "yes"}, "pooling"),
    ({"scan_backend": "gpu"}, "scan_backend"),
    ({"token_selection": False, "partition": "topk"}, "token_selection"),
    ({"token_selection": False, "keep_ratio": 0.5}, "token_selection"),
])
def test_bad_config_is_refused_with_a_clear_message(overrides, message):
    with pytest.raises(ValueError, match=message):
        CSSMamba(in_bands=5, n_classes=2, **overrides)


def test_bad_inputs_and_guides_are_refused():
    model, x, guide, _ = model_and_guide()
    with pytest.raises(ValueError, match="expects images"):
        model(x[:, :3])
    with pytest.raises(ValueError, match="guide must be int64"):
        model(x, guide[:, :1])
    with pytest.raises(ValueError, match="ids must lie"):
        model(x, guide + 10)
    lb, x, guide, _ = model_and_guide(cluster_loss="lb")
    with pytest.raises(ValueError, match="static map"):
        lb.train()(x)


def test_mode_pooling_keeps_the_majority_id_and_ignores_unlabelled():
    maps = torch.tensor([[[[3, 3, -1, -1, 7],
                           [1, 3, -1, 2, 7],
                           [4, 5, 0, 0, 7],
                           [5, 4, 1, 1, 7]]]])
    assert mode_pool2x2(maps).tolist() == [[[[3, 2], [4, 0]]]]


# ------------------------------------------------------------------------------------ nodata tokens


def test_hard_partition_routes_only_the_routable_tokens_in_the_same_order():
    assign = torch.tensor([[2, 0, 1, 0, 2, 0, 1, 1, 0, 2]])
    score = torch.tensor([[0.5, 0.3, 0.1, 0.3, 0.2, 0.1, 0.4, 0.1, 0.9, 0.5]])
    routable = torch.tensor([[True, True, False, True, True, False, True, True, True, False]])
    part = hard_partition(assign, n_clusters=4, score=score, routable=routable)
    full = hard_partition(assign, n_clusters=4, score=score).index.tolist()
    assert part.index.tolist() == [i for i in full if routable[0, i]] == [1, 3, 8, 7, 6, 4, 0]
    assert part.cluster.tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert part.spans == [(0, 0, 3), (1, 3, 5), (2, 5, 7)]
    assert part.reset.nonzero().flatten().tolist() == [0, 3, 5]


def test_nodata_tokens_join_no_local_scan_and_no_cluster_loss():
    """A nodata frame (all bands 0, as apply_stretch fills it) must not fill one cluster's local
    sequence: the local branches see exactly the pixels with data, and L_a is computed over them."""
    model, x, guide, _ = model_and_guide()
    x = x.clone()
    x[..., :5, :] = 0.0                                 # 5 nodata rows of 16
    guide[:, 1, :5, :] = -1
    seen = []
    for branch in model.stages[0].spatial.local:
        branch.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[1]))
    model.train()
    model(x, guide)
    assert sum(seen) == 11 * 16
    u = torch.randn(1, 20, 6)
    p = torch.randn(1, 20, 3).softmax(-1)
    keep = torch.zeros(1, 20, dtype=torch.bool)
    keep[0, ::2] = True
    masked = la_terms(u, p, keep)
    subset = la_terms(u[:, ::2], p[:, ::2])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(masked, subset))


def test_the_valid_mask_not_the_values_decides_what_is_nodata():
    """Issue 13, lead 5: a valid pixel at the stretch's low limit in every band is all zero, like nodata.
    With the raster's mask it is routed like any pixel with data; without a mask the zero test still holds."""
    model, x, guide, _ = model_and_guide()
    x = x.clone()
    x[..., :5, :] = 0.0                                 # 5 all-zero rows of 16: 3 nodata, 2 dark but valid
    guide[:, 1, :3, :] = -1
    valid = torch.ones(1, 16, 16, dtype=torch.bool)
    valid[:, :3, :] = False
    seen = []
    for branch in model.stages[0].spatial.local:
        branch.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[1]))
    model.eval()
    model(x, valid=valid)
    assert sum(seen) == 13 * 16
    seen.clear()
    model(x)
    assert sum(seen) == 11 * 16
    with pytest.raises(ValueError, match="valid must be a bool mask"):
        model(x, valid=valid.float())


def test_top_k_routing_gives_nodata_tokens_no_weight():
    model, x, guide, _ = model_and_guide(partition="topk", keep_ratio=0.5)
    x = x.clone()
    x[..., :8, :] = 0.0
    spatial = model.stages[0].spatial
    u = torch.randn(1, 256, 16)
    p = torch.randn(1, 256, spatial.n_clusters).softmax(-1)
    routable = (x.abs().amax(1) > 0).reshape(1, 256)
    part, scale = spatial._topk(u, p, None, routable)
    assert bool((scale[~routable.reshape(-1)[part.index]] == 0).all())
