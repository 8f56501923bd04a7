"""bench/gpu.py, the prepared GPU check: on the CPU with --quick (tiny scene and models, one repeat) it
writes the table and the JSON with every scan and model row; the widths it compares are the plugin's
and the papers'. About 10 s on a 2-core machine."""

import json
import os

import pytest

from bench import gpu as bench
from engine.models.registry import PLUGIN_DEFAULTS

MODELS = {(name, width) for name in ("cssmamba", "mambahsi", "m3amba") for width in ("plugin", "paper")}


def test_quick_cpu_run_writes_every_row(tmp_path):
    out = tmp_path / "gpu.json"
    assert bench.main(["--device", "cpu", "--quick", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    markdown = out.with_suffix(".md").read_text()

    scan = {(r["label"], r["backend"]): r for r in report["scan"]}
    shapes = [label for label, _ in bench.QUICK.scan_shapes]
    assert set(scan) == {(s, b) for s in shapes for b in ("chunked torch (CPU)", "mamba-ssm")}
    for label in shapes:
        assert scan[(label, "chunked torch (CPU)")]["fwd_ms"] > 0 and scan[(label, "chunked torch (CPU)")]["fb_ms"] > 0
        assert scan[(label, "mamba-ssm")]["note"] == "skipped: needs CUDA"

    models = {(r["model"], r["width"]): r for r in report["models"]}
    assert set(models) == MODELS
    for key, row in models.items():
        assert "note" not in row, f"{key}: {row.get('note')}"
        assert row["train_ms"] > 0 and row["classify_ms"] > 0 and row["parameters"] > 0
        assert row["precision"] == "fp32"  # the engine runs fp32 on the CPU; bf16 only for the agreement
        assert 0.9 <= row["argmax_agreement"] <= 1
        assert 0 <= row["max_abs_logit_diff"] < 0.1 * row["max_abs_logit"]
    assert models[("m3amba", "paper")]["config"]["use_clip"] is False

    assert report["environment"]["mamba_ssm"] in ("not installed", "available") or \
        report["environment"]["mamba_ssm"].startswith("installed but failed")
    assert "| shape | B × d × L | backend |" in markdown and "| model | width | config |" in markdown
    assert "| m3amba | paper |" in markdown and "| spectral, tiny | 32 × 8 × 4 | mamba-ssm |" in markdown


def test_rows_after_the_budget_are_skipped_but_still_reported(tmp_path):
    out = tmp_path / "gpu.json"
    assert bench.main(["--device", "cpu", "--quick", "--budget-s", "0", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert {(r["model"], r["width"]) for r in report["models"]} == MODELS
    measured = [r for r in report["scan"] + report["models"] if r.get("note") != "skipped: needs CUDA"]
    assert {r["note"] for r in measured} == {"skipped: time budget spent"}


def test_widths_are_the_plugin_defaults_and_the_paper_constructors():
    assert bench.model_config("cssmamba", "plugin", bench.FULL) == PLUGIN_DEFAULTS["cssmamba"]
    assert bench.model_config("cssmamba", "paper", bench.FULL) == {"dim": 128}
    assert bench.model_config("mambahsi", "paper", bench.FULL) == {"dim": 128}
    assert bench.model_config("m3amba", "paper", bench.FULL) == {"dim": 384, "depth": 9, "use_clip": False}


def test_cuda_is_refused_where_there_is_none(monkeypatch):
    monkeypatch.setattr(bench.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        bench.parse_args(["--device", "cuda"])
    assert os.access(bench.REPO_ROOT / "bench" / "gpu.sh", os.X_OK)


def test_cuda_scan_rows_follow_the_mamba_ssm_probe(monkeypatch):
    """The CUDA rows without a GPU: mamba-ssm is timed when it imports, else skipped with the probe's reason."""
    cuda = bench.torch.device("cuda")
    monkeypatch.setattr(bench, "mamba_ssm_status", lambda: "available")
    assert bench.scan_backends(cuda) == [("chunked torch (CUDA)", "torch", ""), ("mamba-ssm", "cuda", "")]
    monkeypatch.setattr(bench, "mamba_ssm_status", lambda: "installed but failed: ImportError: no triton")
    assert bench.scan_backends(cuda)[1] == ("mamba-ssm", None, "installed but failed: ImportError: no triton")
