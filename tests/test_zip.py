"""`make zip` builds a plugin zip QGIS can install: one `cssmamba/` folder, nothing for developers."""

import configparser
import os
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_plugin_zip_holds_the_plugin_and_nothing_else(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_zip.py"), "--out", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(result.stdout.strip()) as archive:
        names = archive.namelist()
        metadata = configparser.ConfigParser()
        metadata.read_string(archive.read("cssmamba/metadata.txt").decode())
    assert all(name.startswith("cssmamba/") for name in names)
    for needed in ("cssmamba/__init__.py", "cssmamba/plugin.py", "cssmamba/provider/provider.py",
                   "cssmamba/engine/ssm/scan.py", "cssmamba/resources/icons/cssmamba.svg", "cssmamba/LICENSE"):
        assert needed in names
    for unwanted in ("tests/", "bench/", ".venv/", "__pycache__", ".ci/", "scripts/", ".qgis-profile"):
        assert not any(unwanted in name for name in names), unwanted
    general = metadata["general"]
    for key in ("name", "description", "about", "version", "author", "email", "qgisMinimumVersion", "category",
                "tags", "icon", "homepage", "tracker", "repository"):
        assert general.get(key), key
    assert general["qgisMinimumVersion"] == "3.22" and general["hasProcessingProvider"] == "yes"
    assert f"cssmamba/{general['icon']}" in names
    assert "pip" in general["about"], "about must say how to install the Python dependencies"
