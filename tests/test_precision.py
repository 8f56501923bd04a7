"""Mixed precision that cannot crash: every model and option, forward and backward, under bf16 and fp16
autocast on the CPU (the CUDA dtype path emulated where CI can run it), agrees with fp32.

Tolerance: a model at its initialisation on random data; the logits differ from fp32 by at most 8 % of
their largest magnitude (bf16 keeps 8 bits of mantissa, ~0.4 % per rounding, over a few dozen layers) and
the predicted class agrees on at least 95 % of the pixels. The gradients are finite.
"""

import numpy as np
import pytest
import torch

from engine.models.m3amba import m3amba_loss
from engine.models.registry import build_model, build_multimodal_model
from engine.precision import Precision, choose_precision
from engine.data.splits import Split
from engine.training.train import TrainConfig, train_model

LOGIT_TOLERANCE = 0.08
AGREEMENT = 0.95
CSSMAMBA_OPTIONS = [{}, {"local_weights": "shared"}, {"partition": "topk"}, {"token_selection": False},
                    {"cluster_loss": "lb"}, {"cluster_loss": "none"}, {"pooling": True}, {"gate": "prior"},
                    {"gate": "attention"}, {"keep_ratio": 0.5}, {"clusters_per_class": 1}]
TINY_CLIP = dict(width=64, layers=2, heads=1, patch_size=32, image_size=64, output_dim=32)


def hsi_case(name, options, batch):
    torch.manual_seed(0)
    net = build_model(name, 12, 3, dim=8, **options)
    x = torch.rand(batch, 12, 16, 16)
    guide = None
    if name == "cssmamba":
        labels = np.full((16, 16), -1)
        labels[::3, ::3] = np.arange(36).reshape(6, 6) % 3
        one = net.make_guide(x[0].numpy(), labels, np.ones((16, 16), bool))
        guide = one[None].expand(batch, -1, -1, -1).contiguous()
    return net, x, guide


def run(net, x, guide, dtype):
    """(logits in fp32, finite gradients?) of one training forward + backward under ``dtype`` autocast."""
    net.zero_grad(set_to_none=True)
    context = torch.autocast("cpu", dtype=dtype) if dtype is not None else torch.autocast("cpu", enabled=False)
    with context:
        out = net(x, guide)
        loss = out.logits.float().square().mean() + (0 if out.aux_loss is None else out.aux_loss.float())
    loss.backward()
    finite = all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
    return out.logits.detach().float(), finite


def assert_agrees(reference, low):
    scale = float(reference.abs().max())
    assert float((reference - low).abs().max()) <= LOGIT_TOLERANCE * scale
    assert float((reference.argmax(1) == low.argmax(1)).float().mean()) >= AGREEMENT


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("name, options", [("mambahsi", {})] + [("cssmamba", o) for o in CSSMAMBA_OPTIONS])
def test_hsi_models_train_under_autocast_and_agree_with_fp32(name, options, batch, dtype):
    net, x, guide = hsi_case(name, options, batch)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    reference, finite = run(net, x, guide, None)
    assert finite
    net.load_state_dict(state)                         # the EMA prototypes moved in the fp32 forward
    low, finite = run(net, x, guide, dtype)
    assert finite
    assert_agrees(reference, low)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("use_clip", [False, True])
def test_m3amba_trains_under_autocast_and_agrees_with_fp32(use_clip, dtype):
    torch.manual_seed(0)
    net = build_multimodal_model("m3amba", 12, 2, 3, dim=16, depth=2, use_clip=use_clip,
                                 clip=TINY_CLIP if use_clip else None)
    hsi, aux = torch.rand(2, 12, net.crop, net.crop), torch.rand(2, 2, net.crop, net.crop)
    labels = torch.randint(-1, 3, (2, net.crop, net.crop))
    results = []
    for autocast in (torch.autocast("cpu", enabled=False), torch.autocast("cpu", dtype=dtype)):
        net.zero_grad(set_to_none=True)
        with autocast:
            outputs = net(hsi, aux)
            loss = m3amba_loss([o.float() for o in outputs], labels)
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
        results.append(outputs[1].detach().float())
    assert_agrees(*results)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_windowed_training_runs_in_each_precision(precision, monkeypatch):
    """The trainer's own autocast and GradScaler path, with a budget that forces several windows."""
    import engine.training.train as train_module

    monkeypatch.setattr(train_module, "estimate_training_bytes_per_pixel", lambda *a, **k: 10_000.0)
    torch.manual_seed(0)
    net, x, _ = hsi_case("cssmamba", {}, 1)
    image = x[0].numpy()
    labels = np.full((16, 16), -1)
    labels[::2, ::2] = np.arange(64).reshape(8, 8) % 3
    validation = np.full((16, 16), -1)
    validation[1::4, 1::4] = np.arange(16).reshape(4, 4) % 3
    split = Split(train=labels, validation=validation, test=np.full((16, 16), -1))
    config = TrainConfig(epochs=2, precision=precision, memory_budget_mb=2.0 + 4 * 4 * sum(
        p.numel() for p in net.parameters()) / 2**20, device="cpu")
    result = train_model(net, image, image, np.ones((16, 16), bool), split, config)
    assert len(result.windows) > 1 and result.precision.startswith(precision)
    assert all(np.isfinite(h["loss"]) for h in result.history)


def test_the_precision_rule(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert choose_precision(cpu).name == "fp32"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))   # an H100
    assert choose_precision(cuda).name == "bf16"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))   # a T4: bf16 emulated
    chosen = choose_precision(cuda)
    assert chosen.name == "fp16" and chosen.scaler(cpu) is not None and "gradient scaling" in chosen.describe()
    assert choose_precision(cuda, "fp32").dtype is None and Precision("fp32").scaler(cpu) is None
    with pytest.raises(ValueError, match="precision must be one of"):
        choose_precision(cpu, "int8")
