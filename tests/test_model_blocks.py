"""Shared model blocks (MODELS.md §2.3–§2.7): formulas, token layouts and exactness of the fast paths."""

import pytest
import torch
import torch.nn.functional as F

from engine.models.blocks import ClassifierHead, Embedding, RMSNorm, SoftmaxFusion, SpatialMamba, SpectralMamba


def _capture_mamba_input(block):
    """Record the token tensor each call hands to ``block.mamba``."""
    seen = []
    block.mamba.register_forward_pre_hook(lambda module, args, kwargs: seen.append(args[0].detach().clone()),
                                          with_kwargs=True)
    return seen


def test_rmsnorm_adds_eps_to_the_rms_not_under_the_square_root():
    torch.manual_seed(0)
    norm = RMSNorm(8).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
    for scale in (1.0, 1e-7):  # at 1e-7 "eps under the sqrt" would give ~1e-4 instead of ~0.09
        x = torch.randn(3, 5, 8, dtype=torch.float64) * scale
        expected = norm.weight * x / (x.pow(2).mean(-1, keepdim=True).sqrt() + 1e-6)
        torch.testing.assert_close(norm(x), expected, rtol=1e-12, atol=0)


def test_rmsnorm_weight_starts_at_one():
    assert torch.equal(RMSNorm(5).weight.data, torch.ones(5))


def test_spectral_mamba_second_group_holds_channels_32_to_63():
    block = SpectralMamba(128, groups=4)
    seen = _capture_mamba_input(block)
    x = torch.randn(2, 128, 3, 5)
    block(x)
    tokens = seen[0]
    assert tokens.shape == (2 * 3 * 5, 4, 32)
    pixel = 1 * 15 + 2 * 5 + 4  # image 1, row 2, col 4 (raster order within each image)
    assert torch.equal(tokens[pixel, 1], x[1, 32:64, 2, 4])
    assert torch.equal(tokens[pixel, 3], x[1, 96:128, 2, 4])


@pytest.mark.parametrize("scan_backend", ["torch", None])
def test_spectral_mamba_equals_a_separate_mamba_run_per_pixel(scan_backend):
    torch.manual_seed(1)
    block = SpectralMamba(16, groups=4, scan_backend=scan_backend).double()
    x = torch.randn(2, 16, 2, 3, dtype=torch.float64)
    per_pixel = torch.empty_like(x)
    for b in range(2):
        for r in range(2):
            for c in range(3):
                tokens = x[b, :, r, c].reshape(1, 4, 4)
                per_pixel[b, :, r, c] = block.mamba(tokens).reshape(16)
    expected = x + F.silu(block.norm(per_pixel))
    torch.testing.assert_close(block(x), expected, rtol=1e-12, atol=1e-12)


def test_spectral_mamba_predicts_in_slices_of_pixels_exactly_as_in_one_batch(monkeypatch):
    torch.manual_seed(2)
    block = SpectralMamba(16, groups=4)
    x = torch.randn(2, 16, 5, 7)
    whole = block(x)                                     # with a gradient: one batch of 70 pixels
    monkeypatch.setattr(SpectralMamba, "PREDICT_PIXELS", 9)  # 70 pixels in 8 slices, the last short
    with torch.no_grad():
        sliced = block(x)
    torch.testing.assert_close(sliced, whole, rtol=1e-6, atol=1e-6)


def test_spectral_mamba_refuses_dim_not_divisible_by_groups():
    with pytest.raises(ValueError, match="dim=30, groups=4"):
        SpectralMamba(30, groups=4)


def test_spatial_mamba_reads_pixels_in_raster_order():
    block = SpatialMamba(8)
    seen = _capture_mamba_input(block)
    x = torch.randn(1, 8, 3, 4)
    block(x)
    assert seen[0].shape == (1, 12, 8)
    assert torch.equal(seen[0][0, 2 * 4 + 1], x[0, :, 2, 1])


def test_spatial_mamba_scans_each_image_of_a_batch_separately():
    torch.manual_seed(2)
    block = SpatialMamba(8, scan_backend="torch").double()
    x = torch.randn(2, 8, 3, 4, dtype=torch.float64)
    together = block(x)
    torch.testing.assert_close(together[1:], block(x[1:]), rtol=1e-12, atol=1e-12)
    scanned_alone = block.mamba(x[1:].flatten(2).transpose(1, 2)).transpose(1, 2).reshape(1, 8, 3, 4)
    torch.testing.assert_close(together[1:], x[1:] + F.silu(block.norm(scanned_alone)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("block", [SpatialMamba(8), SpectralMamba(8, groups=4)], ids=["spatial", "spectral"])
def test_mamba_blocks_refuse_a_wrong_layout(block):
    with pytest.raises(ValueError, match=r"\(batch, 8, height, width\)"):
        block(torch.randn(1, 3, 4, 8))


def test_softmax_fusion_starts_equal_and_weights_by_softmax():
    fusion = SoftmaxFusion()
    assert torch.equal(fusion.theta.data, torch.tensor([0.5, 0.5]))
    x, spa, spe = torch.randn(3, 2, 4, 2, 2).unbind(0)
    torch.testing.assert_close(fusion(x, spa, spe), x + 0.5 * spa + 0.5 * spe)
    with torch.no_grad():
        fusion.theta.copy_(torch.tensor([1.0, 0.0]))
    w0 = torch.exp(torch.tensor(1.0)) / (torch.exp(torch.tensor(1.0)) + 1)
    torch.testing.assert_close(fusion(x, spa, spe), x + w0 * spa + (1 - w0) * spe)


def test_embedding_maps_bands_to_dim_per_pixel():
    embedding = Embedding(7, 16)
    assert embedding(torch.randn(2, 7, 3, 5)).shape == (2, 16, 3, 5)
    assert sum(p.numel() for p in embedding.parameters()) == 7 * 16 + 16 + 2 * 16


def test_classifier_head_keeps_the_grid_for_odd_kernels_and_refuses_even_ones():
    assert ClassifierHead(8, 5, kernel_size=3)(torch.randn(1, 8, 4, 6)).shape == (1, 5, 4, 6)
    with pytest.raises(ValueError, match="odd"):
        ClassifierHead(8, 5, kernel_size=2)
