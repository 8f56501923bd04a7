"""Shared fixtures: the real datasets in ../shared/data and a QGIS application (offscreen)."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")
PLUGIN_PARENT = os.path.join(ROOT, "build", "plugins")
QGIS_PLUGINS = "/usr/share/qgis/python/plugins"  # Debian's home of the `processing` plugin

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session")
def shared_data() -> str:
    """Path of ../shared/data. In CI its absence fails the run; elsewhere it skips with a reason."""
    if not os.path.isdir(SHARED_DATA):
        message = f"the real datasets are missing: expected {SHARED_DATA} (the shared/ folder beside the checkout)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return SHARED_DATA


@pytest.fixture(scope="session")
def qgis_app():
    """One QgsApplication with Processing initialised, shared by every QGIS test of the run."""
    from qgis.core import QgsApplication

    if QGIS_PLUGINS not in sys.path:
        sys.path.append(QGIS_PLUGINS)
    app = QgsApplication([], False)
    app.initQgis()
    from processing.core.Processing import Processing

    Processing.initialize()
    yield app
    # exitQgis() during interpreter shutdown can crash in Qt's destructors; the process ends anyway.


@pytest.fixture(scope="session")
def plugin_module():
    """The repository imported as the QGIS plugin package ``cssmamba`` (as QGIS imports it)."""
    os.makedirs(PLUGIN_PARENT, exist_ok=True)
    link = os.path.join(PLUGIN_PARENT, "cssmamba")
    if not os.path.islink(link):
        os.symlink(ROOT, link)
    if PLUGIN_PARENT not in sys.path:
        sys.path.insert(0, PLUGIN_PARENT)
    import cssmamba

    return cssmamba
