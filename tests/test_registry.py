"""Model registry: names, default configurations, overrides and rebuilding from a stored config."""

import json

import pytest
import torch

from engine.models.cssmamba import CSSMamba
from engine.models.mambahsi import MambaHSI
from engine.models.registry import MODEL_NAMES, build_model, default_config


def _shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_model_names():
    assert MODEL_NAMES == ("cssmamba", "mambahsi")


def test_constructors_keep_the_papers_widths_and_the_registry_the_measured_plugin_defaults():
    assert MambaHSI(103, 9).config["dim"] == 128 and CSSMamba(103, 9).config["dim"] == 128
    assert default_config("mambahsi") == dict(dim=32, spectral_groups=4, pooling=True, scan_backend=None)
    assert default_config("cssmamba")["dim"] == 32 and default_config("cssmamba")["pooling"] is False
    assert build_model("cssmamba", 20, 3).config["pooling"] is False
    assert build_model("cssmamba", 20, 3, pooling=True).config["pooling"] is True


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_default_config_is_json_and_leaves_out_the_data_sizes(name):
    config = default_config(name)
    assert "in_bands" not in config and "n_classes" not in config
    assert json.loads(json.dumps(config)) == config


def test_build_model_applies_overrides_and_stores_them_in_the_config():
    model = build_model("mambahsi", 6, 3, dim=8, pooling=False)
    assert isinstance(model, MambaHSI)
    assert model.config == dict(in_bands=6, n_classes=3, dim=8, spectral_groups=4, pooling=False, scan_backend=None)


def test_build_model_uses_the_defaults_without_overrides():
    model = build_model("mambahsi", 103, 9)
    assert model.config == dict(in_bands=103, n_classes=9, **default_config("mambahsi"))
    assert sum(p.numel() for p in build_model("mambahsi", 103, 9, dim=128).parameters()) == 412_239


@pytest.mark.parametrize("name, overrides", [("mambahsi", dict(dim=8)), ("cssmamba", dict(dim=8))])
def test_a_stored_config_rebuilds_the_same_architecture(name, overrides):
    model = build_model(name, 5, 3, **overrides)
    rebuilt = build_model(name, **json.loads(json.dumps(model.config)))
    assert type(rebuilt) is type(model) and rebuilt.name == name
    assert _shapes(rebuilt) == _shapes(model)


def test_cssmamba_builds_and_classifies():
    model = build_model("cssmamba", 5, 3, dim=8)
    assert isinstance(model, CSSMamba)
    model.eval()
    with torch.no_grad():
        assert model(torch.rand(1, 5, 6, 7)).logits.shape == (1, 3, 6, 7)


def test_unknown_model_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown model 'mamba'; choose one of cssmamba, mambahsi"):
        build_model("mamba", 5, 3)
    with pytest.raises(ValueError, match="choose one of cssmamba, mambahsi"):
        default_config("MambaHSI")


def test_unknown_option_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown option\(s\) depth, width for model 'mambahsi'; "
                                         r"valid options: dim, spectral_groups, pooling, scan_backend"):
        build_model("mambahsi", 5, 3, width=64, depth=2)
