"""Find out, without importing torch at QGIS start-up, whether the engine can run here."""

import html
import importlib
import importlib.util
from functools import lru_cache
from typing import Optional

INSTALL_HINT = (
    "Install the Python packages into the Python that QGIS uses, e.g. on Debian/Ubuntu: "
    "'python3 -m pip install --user torch scikit-learn \"numpy<2\"' "
    "(on Windows: the OSGeo4W Shell, 'python -m pip install torch scikit-learn'). "
    "See the plugin's README for CUDA builds of torch."
)


def torch_is_installed() -> bool:
    """Cheap check used at start-up: is there a ``torch`` package at all?"""
    return importlib.util.find_spec("torch") is not None


@lru_cache(maxsize=1)
def torch_import_error() -> Optional[str]:
    """None when torch imports, else a sentence saying why not and how to fix it.

    Imports torch for real (a broken install only shows then); called when an algorithm that
    needs torch is about to run, never at QGIS start-up.
    """
    if not torch_is_installed():
        return "PyTorch (torch) is not installed. " + INSTALL_HINT
    try:
        importlib.import_module("torch")
    except Exception as exc:  # any import failure means the same thing to the user
        return f"PyTorch (torch) is installed but does not import: {exc}. " + INSTALL_HINT
    return None


def as_html(text: str) -> str:
    """``text`` for the QGIS widgets that render messages as rich text (the toolbox's warning bar, the
    "cannot be run" box): without escaping, ``"numpy<2"`` opens an HTML tag and the rest of the install
    hint disappears."""
    return html.escape(text, quote=False)
