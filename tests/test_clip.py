"""CLIP ViT image encoder (MODELS.md §5.2, §7 T32): built without weights, loaded strictly from the
published file layouts (generated here at a tiny size), refused with a clear message otherwise."""

import copy
import hashlib
import json
import logging
import struct
import warnings

import pytest
import torch
from torch import nn

from engine.models import clip as clip_module
from engine.models.clip import (
    VIT_B_32,
    ClipVisionConfig,
    ClipVisionEncoder,
    LayerNormFp32,
    QuickGELU,
    config_from_state_dict,
    load_clip_encoder,
    load_clip_weights,
    read_clip_state_dict,
)

TINY = ClipVisionConfig(width=64, layers=2, heads=1, patch_size=32, image_size=64, output_dim=32)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def tiny_encoder(seed: int = 0) -> ClipVisionEncoder:
    """A tiny encoder whose weights are exactly representable in float16, like OpenAI's released file."""
    torch.manual_seed(seed)
    encoder = ClipVisionEncoder(TINY).eval()
    with torch.no_grad():
        for p in encoder.parameters():
            p.copy_(p.half().float())
    return encoder


class FullClip(nn.Module):
    """Stands in for a whole CLIP model: the image tower under ``visual.`` plus text-tower tensors whose
    names collide with the tower's once the prefix is gone (``positional_embedding``, ``transformer.*``)."""

    def __init__(self, visual: ClipVisionEncoder) -> None:
        super().__init__()
        self.visual = visual
        self.positional_embedding = nn.Parameter(torch.zeros(7, 16))
        self.transformer = nn.Linear(16, 16)
        self.logit_scale = nn.Parameter(torch.ones(()))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual(images) * self.logit_scale


def save_torchscript(encoder: ClipVisionEncoder, path) -> None:
    """A TorchScript archive with float16 weights, the format of OpenAI's ViT-B-32.pt (traced from a
    copy: the trace shares its parameters, and ``half()`` would convert the caller's encoder too)."""
    with warnings.catch_warnings():  # the shape checks in forward are constants of the trace, as intended
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated; OpenAI's file still is one
        traced = torch.jit.trace(FullClip(copy.deepcopy(encoder)).eval(),
                                 torch.rand(1, 3, TINY.image_size, TINY.image_size), check_trace=False)
    traced.half().save(str(path))


def images(b: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.rand(b, 3, TINY.image_size, TINY.image_size, generator=torch.Generator().manual_seed(seed))


# ---- architecture -------------------------------------------------------------------------------


def test_vit_b_32_builds_without_weights_with_the_published_key_names_and_size():
    with torch.device("meta"):  # shapes only, no 350 MB allocation
        encoder = ClipVisionEncoder()
    keys = set(encoder.state_dict())
    published = {"conv1.weight", "class_embedding", "positional_embedding", "ln_pre.weight", "ln_pre.bias",
                 "ln_post.weight", "ln_post.bias", "proj"}
    for i in range(12):
        published |= {f"transformer.resblocks.{i}.{name}" for name in (
            "attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight", "attn.out_proj.bias",
            "ln_1.weight", "ln_1.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias",
            "ln_2.weight", "ln_2.bias")}
    assert keys == published
    state = encoder.state_dict()
    assert state["transformer.resblocks.0.attn.in_proj_weight"].shape == (2304, 768)
    assert state["positional_embedding"].shape == (50, 768) and state["proj"].shape == (768, 512)
    assert sum(p.numel() for p in encoder.parameters()) == 87_849_216  # CLIP ViT-B/32 image tower
    assert config_from_state_dict(state) == VIT_B_32


def test_encoder_without_weights_maps_images_to_output_dim():
    out = tiny_encoder()(images(3))
    assert out.shape == (3, TINY.output_dim) and torch.isfinite(out).all()


def test_encoder_refuses_images_of_the_wrong_resolution():
    with pytest.raises(ValueError, match=r"expects images \(B, 3, 64, 64\)"):
        tiny_encoder()(torch.rand(1, 3, 32, 32))


def test_config_is_inferred_from_shapes_of_a_tiny_checkpoint():
    assert config_from_state_dict(tiny_encoder().state_dict()) == TINY


def test_quick_gelu_and_float32_layer_norm():
    x = torch.linspace(-4, 4, 9)
    assert torch.equal(QuickGELU()(x), x * torch.sigmoid(1.702 * x))
    norm = LayerNormFp32(8)
    x16 = (torch.randn(3, 8) * 1e3).half()
    out = norm(x16)
    assert out.dtype == torch.float16
    assert torch.equal(out, torch.nn.functional.layer_norm(x16.float(), (8,)).half())


# ---- loading ------------------------------------------------------------------------------------


def test_openai_torchscript_archive_loads_and_reproduces_the_encoder(tmp_path):
    source = tiny_encoder()
    path = tmp_path / "ViT-tiny.pt"
    save_torchscript(source, path)
    encoder, checkpoint = load_clip_encoder(str(path))
    assert checkpoint.config == TINY and checkpoint.known_as is None
    assert checkpoint.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert encoder.proj.dtype == torch.float32  # float16 file, float32 encoder
    with torch.no_grad():
        assert torch.equal(encoder.eval()(images()), source(images()))


@pytest.mark.parametrize("layout", ["visual_prefix", "no_prefix", "wrapped_module_prefix"])
def test_state_dict_layouts_load(tmp_path, layout):
    source = tiny_encoder(seed=3)
    state = source.state_dict()
    if layout == "visual_prefix":  # open_clip's full-model state dict, text tower included
        obj = FullClip(source).state_dict()
    elif layout == "no_prefix":  # the image tower saved alone
        obj = state
    else:  # an open_clip training checkpoint of a DataParallel model
        obj = {"epoch": 3, "state_dict": {f"module.visual.{k}": v for k, v in state.items()}}
    path = tmp_path / "clip.pt"
    torch.save(obj, path)
    encoder = ClipVisionEncoder(TINY)
    checkpoint = load_clip_weights(encoder, str(path))
    assert checkpoint.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    with torch.no_grad():
        assert torch.equal(encoder.eval()(images()), source(images()))


def write_safetensors(state, path) -> None:
    """The safetensors layout (8-byte header length, JSON header, raw little-endian data), by hand."""
    header, blobs, offset = {}, [], 0
    for key, tensor in state.items():
        data = tensor.contiguous().numpy().tobytes()
        header[key] = {"dtype": "F32", "shape": list(tensor.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def test_safetensors_file_loads_or_names_the_missing_package(tmp_path):
    source = tiny_encoder(seed=4)
    path = tmp_path / "open_clip_model.safetensors"
    write_safetensors({f"visual.{k}": v for k, v in source.state_dict().items()}, path)
    try:
        import safetensors  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="'safetensors' package is not installed"):
            load_clip_encoder(str(path))
    else:
        encoder, _ = load_clip_encoder(str(path))
        with torch.no_grad():
            assert torch.equal(encoder.eval()(images()), source(images()))


def test_checkpoint_with_a_wrong_shape_is_refused_with_the_key(tmp_path):
    state = {f"visual.{k}": v for k, v in tiny_encoder().state_dict().items()}
    state["visual.transformer.resblocks.1.mlp.c_fc.weight"] = torch.zeros(128, 64)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"is not a CLIP ViT image encoder: shape mismatches: "
                                         r"transformer\.resblocks\.1\.mlp\.c_fc\.weight \(128, 64\) \(expected \(256, 64\)\)"):
        load_clip_encoder(str(path))


def test_checkpoint_with_missing_and_extra_keys_is_refused_listing_both(tmp_path):
    state = tiny_encoder().state_dict()
    del state["ln_post.bias"]
    state["attnpool.k_proj.weight"] = torch.zeros(2, 2)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"missing keys: ln_post\.bias; unexpected keys: attnpool\.k_proj\.weight"):
        load_clip_encoder(str(path))


def test_a_non_vit_file_is_refused(tmp_path):
    resnet_like = tmp_path / "RN50.pt"
    torch.save({"visual.layer1.0.conv1.weight": torch.zeros(64, 64, 1, 1), "visual.attnpool.c_proj.weight": torch.zeros(2, 2)},
               resnet_like)
    with pytest.raises(ValueError, match=r"is not a CLIP ViT image encoder: missing visual\.conv1\.weight"):
        load_clip_encoder(str(resnet_like))
    tensor_file = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor_file)
    with pytest.raises(ValueError, match="is not a CLIP ViT image encoder: it holds Tensor"):
        load_clip_encoder(str(tensor_file))
    text = tmp_path / "notes.pt"
    text.write_text("not weights")
    with pytest.raises(ValueError, match="could not be read as CLIP weights"):
        load_clip_encoder(str(text))
    with pytest.raises(ValueError, match="CLIP weights file not found"):
        read_clip_state_dict(str(tmp_path / "absent.pt"))


def test_loading_into_an_encoder_of_another_size_names_both_sizes(tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(tiny_encoder().state_dict(), path)
    other = ClipVisionEncoder(ClipVisionConfig(width=64, layers=3, heads=1, patch_size=32, image_size=64, output_dim=32))
    with pytest.raises(ValueError, match=r"of another size: .*layers=2.*built for .*layers=3"):
        load_clip_weights(other, str(path))


def test_hash_check_warns_only_for_a_known_architecture_with_another_hash(tmp_path, monkeypatch, caplog):
    path = tmp_path / "tiny.pt"
    torch.save(tiny_encoder().state_dict(), path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    caplog.set_level(logging.INFO, logger=clip_module.__name__)

    monkeypatch.setattr(clip_module, "KNOWN_CHECKPOINTS", {TINY: ("tiny release", "0" * 64)})
    _, checkpoint = load_clip_encoder(str(path))
    assert checkpoint.known_as is None
    assert any(r.levelno == logging.WARNING and sha in r.message and "tiny release" in r.message for r in caplog.records)

    caplog.clear()
    monkeypatch.setattr(clip_module, "KNOWN_CHECKPOINTS", {TINY: ("tiny release", sha)})
    _, checkpoint = load_clip_encoder(str(path))
    assert checkpoint.known_as == "tiny release"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_vit_b_32_is_registered_with_openai_release_hash():
    assert clip_module.KNOWN_CHECKPOINTS[VIT_B_32] == (
        "OpenAI ViT-B-32.pt", "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af")


@needs_cuda
def test_float16_on_cuda_agrees_with_float32():
    torch.manual_seed(0)
    encoder = ClipVisionEncoder(VIT_B_32).cuda().eval()
    x = torch.rand(4, 3, 224, 224, device="cuda")
    with torch.no_grad():
        full = encoder(x)
        half = encoder.half()(x)
    assert half.dtype == torch.float16
    cos = torch.nn.functional.cosine_similarity(full, half.float(), dim=1)
    assert cos.min().item() >= 0.999
