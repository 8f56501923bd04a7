"""scripts/setup.sh (what `make demo` and `make test` run first) fails readably, naming the package."""

import os
import stat
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETUP = os.path.join(ROOT, "scripts", "setup.sh")


def run_setup(tmp_path, **env):
    return subprocess.run(["bash", SETUP], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, **env))


def test_setup_is_idempotent_and_quiet_when_everything_is_installed(tmp_path):
    result = run_setup(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "installing" not in result.stdout


def test_missing_debian_package_is_named_without_traceback(tmp_path):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    apt = fake_bin / "apt-get"
    apt.write_text('#!/bin/sh\n[ "$1" = update ] && exit 0\necho "E: Unable to locate package no-such-pkg-xyz"\nexit 100\n')
    apt.chmod(apt.stat().st_mode | stat.S_IEXEC)
    result = run_setup(tmp_path, CSSMAMBA_EXTRA_APT_PACKAGES="no-such-pkg-xyz",
                       PATH=f"{fake_bin}:{os.environ['PATH']}")
    assert result.returncode != 0
    assert "could not install the Debian package(s): no-such-pkg-xyz" in result.stderr
    assert "Unable to locate package no-such-pkg-xyz" in result.stderr
    assert "Traceback" not in result.stderr


def test_uninstallable_python_package_is_named_without_traceback(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("no-such-package-cssmamba-xyz==9.9.9\n")
    result = run_setup(tmp_path, CSSMAMBA_VENV=str(tmp_path / "venv"), CSSMAMBA_REQUIREMENTS=str(requirements))
    assert result.returncode != 0
    assert "pip could not install no-such-package-cssmamba-xyz" in result.stderr
    assert "Traceback" not in result.stderr
