"""The mamba-ssm probe (SCAN.md §5): it loads only ``mamba_ssm.ops.selective_scan_interface``, never the
package's heavy ``__init__``, warns once when a CUDA run falls back to the torch scan, and reports its
state to *Check installation*. mamba-ssm is stood in for by fake packages written to tmp_path."""

import logging
import sys
from pathlib import Path
from typing import Dict

import pytest

from engine.selfcheck import SelfCheckReport
from engine.ssm import scan

# The real mamba-ssm 2.x __init__ imports Mamba2/Mamba3 (triton, transformers); the fake fails the same way.
BROKEN_INIT = 'raise ImportError("mamba_ssm/__init__ needs transformers (test stand-in)")\n'
# Like the real interface: it imports a sibling module of the package and the compiled extension.
INTERFACE = (
    "import selective_scan_cuda\n"
    "from mamba_ssm.utils.torch import custom_fwd\n\n"
    "def selective_scan_fn(*args, **kwargs):\n"
    "    return 'fake selective_scan_fn'\n"
)
BROKEN_INTERFACE = 'raise ImportError("No module named \'triton\' (test stand-in)")\n'


def write_fake_mamba_ssm(root: Path, init: str, interface: str) -> None:
    """mamba_ssm/{__init__, ops/selective_scan_interface, utils/torch}.py and selective_scan_cuda.py under root."""
    files: Dict[str, str] = {
        "selective_scan_cuda.py": "",
        "mamba_ssm/__init__.py": init,
        "mamba_ssm/ops/__init__.py": "",
        "mamba_ssm/ops/selective_scan_interface.py": interface,
        "mamba_ssm/utils/__init__.py": "",
        "mamba_ssm/utils/torch.py": "def custom_fwd(fn):\n    return fn\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def _is_fake(name: str) -> bool:
    return name.partition(".")[0] in ("mamba_ssm", "selective_scan_cuda")


@pytest.fixture(autouse=True)
def fresh_probe(monkeypatch):
    """No cached probe, no warning given yet, and no (fake) mamba-ssm module left behind afterwards."""
    monkeypatch.setattr(scan, "_cuda_probe", None)
    monkeypatch.setattr(scan, "_cuda_fallback_warned", False)
    assert not any(_is_fake(name) for name in sys.modules), "a real mamba-ssm is imported; these tests need none"
    yield
    for name in [name for name in sys.modules if _is_fake(name)]:
        del sys.modules[name]


def test_probe_finds_selective_scan_fn_although_the_package_init_fails(tmp_path, monkeypatch):
    write_fake_mamba_ssm(tmp_path, BROKEN_INIT, INTERFACE)
    monkeypatch.syspath_prepend(str(tmp_path))
    fn, why = scan._probe_cuda()
    assert why == "" and fn() == "fake selective_scan_fn"
    assert sys.modules["mamba_ssm.utils.torch"].custom_fwd  # siblings import normally under the light package
    assert scan._choose_backend("auto", True, False)[::2] == ("cuda", fn)
    assert scan.mamba_ssm_status() == "available"


def test_an_already_imported_mamba_ssm_is_used_as_it_is(tmp_path, monkeypatch):
    write_fake_mamba_ssm(tmp_path, "FULL_INIT_RAN = True\n", INTERFACE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import mamba_ssm

    assert scan._probe_cuda()[0] is not None
    assert sys.modules["mamba_ssm"] is mamba_ssm and mamba_ssm.FULL_INIT_RAN


def test_a_failing_interface_warns_once_with_the_reason_and_the_cost(tmp_path, monkeypatch, caplog):
    write_fake_mamba_ssm(tmp_path, BROKEN_INIT, BROKEN_INTERFACE)
    monkeypatch.syspath_prepend(str(tmp_path))
    with caplog.at_level(logging.INFO, logger=scan.__name__):
        for _ in range(3):
            name, why, _ = scan._choose_backend("auto", True, False)
    assert name == "torch" and "triton" in why
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "No module named 'triton' (test stand-in)" in warnings[0] and "10-20x slower" in warnings[0]
    assert not any(name.startswith("mamba_ssm") for name in sys.modules)  # the failed import left nothing behind
    assert scan.mamba_ssm_status() == "installed but failed: ImportError: No module named 'triton' (test stand-in)"


def test_cpu_runs_and_a_reset_mask_never_warn(tmp_path, monkeypatch, caplog):
    write_fake_mamba_ssm(tmp_path, BROKEN_INIT, BROKEN_INTERFACE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(scan, "_cpu_kernel_status", lambda: (None, "no compiler (test stand-in)"))
    with caplog.at_level(logging.WARNING, logger=scan.__name__):
        assert scan._choose_backend("auto", False, False)[0] == "torch"
        assert scan._choose_backend("auto", True, True)[0] == "torch"  # mamba-ssm has no reset: not its absence
    assert caplog.records == []


def test_status_says_not_installed_without_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "mamba_ssm", None)  # as if absent, even where it is installed
    assert scan.mamba_ssm_status() == "not installed"


def test_check_installation_report_shows_the_mamba_ssm_line():
    report = SelfCheckReport("cpu", 2, "2.x", "r.tif", 10, 64, 16, "torch", 0.0, 0.0,
                             mamba_ssm="installed but failed: ImportError: no triton")
    assert "mamba-ssm (CUDA scan kernel): installed but failed: ImportError: no triton" in report.lines()
