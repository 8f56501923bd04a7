"""MambaHSI (MODELS.md §3): shapes (T13), parameter counts (T14), gradients, determinism, input checks."""

import pytest
import torch

from engine.models.mambahsi import MambaHSI
from engine.ssm.mamba import Mamba


@pytest.mark.parametrize(
    "scene, bands, classes, expected",
    [
        ("Pavia University", 103, 9, 412_239),
        ("Indian Pines", 200, 16, 425_558),
        ("Houston 2013", 144, 15, 418_261),
        ("HanChuan", 274, 16, 435_030),
        ("HongHu", 270, 22, 435_292),
    ],
)
def test_parameter_count_matches_the_paper_configuration(scene, bands, classes, expected):
    model = MambaHSI(bands, classes)
    assert sum(p.numel() for p in model.parameters()) == expected, scene


def test_pavia_university_shapes_pool_twice_then_upsample_to_full_resolution():
    # The real PU size; dim=4 (spectral tokens of width 1) keeps the real code path within seconds,
    # the shapes do not depend on the width.
    model = MambaHSI(103, 9, dim=4)
    head_shapes = []
    model.head.register_forward_hook(
        lambda module, inputs, output: head_shapes.append((tuple(inputs[0].shape), tuple(output.shape)))
    )
    with torch.no_grad():
        out = model(torch.rand(1, 103, 610, 340))
    assert head_shapes == [((1, 4, 152, 85), (1, 9, 152, 85))]
    assert out.logits.shape == (1, 9, 610, 340)
    assert out.aux_loss is None and out.clusters is None


def test_upsampling_is_bilinear_with_aligned_corners():
    model = MambaHSI(3, 2, dim=8)
    low = []
    model.head.register_forward_hook(lambda module, inputs, output: low.append(output))
    with torch.no_grad():
        logits = model(torch.rand(1, 3, 9, 13)).logits
    # align_corners=True maps the corner pixels of the (2, 3) head output onto the input's corners.
    assert low[0].shape[-2:] == (2, 3)
    torch.testing.assert_close(logits[..., 0, 0], low[0][..., 0, 0])
    torch.testing.assert_close(logits[..., -1, -1], low[0][..., -1, -1])


@pytest.mark.parametrize("size", [(5, 7), (1, 1), (3, 1), (1, 9), (2, 2)])
def test_small_and_odd_inputs_give_full_resolution_logits(size):
    model = MambaHSI(6, 3, dim=8)
    with torch.no_grad():
        assert model(torch.rand(2, 6, *size)).logits.shape == (2, 3, *size)


def test_without_pooling_every_stage_runs_at_full_resolution():
    model = MambaHSI(6, 3, dim=8, pooling=False)
    head_inputs = []
    model.head.register_forward_hook(lambda module, inputs, output: head_inputs.append(inputs[0].shape))
    with torch.no_grad():
        assert model(torch.rand(1, 6, 5, 7)).logits.shape == (1, 3, 5, 7)
    assert head_inputs == [(1, 8, 5, 7)]


def test_gradient_reaches_every_parameter():
    torch.manual_seed(0)
    model = MambaHSI(5, 3, dim=8)
    labels = torch.randint(0, 3, (1, 9, 10))
    loss = torch.nn.functional.cross_entropy(model(torch.rand(1, 5, 9, 10)).logits, labels)
    loss.backward()
    without = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert without == []


def test_same_seed_gives_the_same_model_and_logits():
    x = torch.rand(1, 5, 8, 9)

    def logits_at_seed(seed):
        torch.manual_seed(seed)
        with torch.no_grad():
            return MambaHSI(5, 4, dim=8)(x).logits

    assert torch.equal(logits_at_seed(3), logits_at_seed(3))
    assert not torch.equal(logits_at_seed(3), logits_at_seed(4))


def test_config_holds_every_constructor_argument_and_rebuilds_the_model():
    model = MambaHSI(7, 4, dim=16, spectral_groups=2, pooling=False, scan_backend="torch")
    assert model.name == "mambahsi"
    assert model.config == dict(in_bands=7, n_classes=4, dim=16, spectral_groups=2, pooling=False,
                                scan_backend="torch")
    rebuilt = MambaHSI(**model.config)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_scan_backend_reaches_every_mamba():
    model = MambaHSI(4, 2, dim=8, scan_backend="torch")
    backends = [m.scan_backend for m in model.modules() if isinstance(m, Mamba)]
    assert backends == ["torch"] * 6


def test_wrong_band_count_is_refused_naming_both():
    with pytest.raises(ValueError, match=r"built for 6 bands.*\(1, 5, 4, 4\)"):
        MambaHSI(6, 3, dim=8)(torch.rand(1, 5, 4, 4))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(dim=10), "multiple of 4"),
        (dict(dim=8, spectral_groups=3), "dim=8, groups=3"),
        (dict(n_classes=0), "n_classes must be an int >= 1"),
    ],
)
def test_bad_configuration_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MambaHSI(**{"in_bands": 6, "n_classes": 3, **kwargs})
