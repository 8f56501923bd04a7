"""QGIS entry point: QGIS calls ``classFactory`` when it loads the plugin.

Kept import-light on purpose: nothing heavy (torch) is imported here, so a missing or broken
optional dependency can never stop QGIS from starting.
"""


def classFactory(iface):  # noqa: N802 (name fixed by QGIS)
    """Return the plugin instance QGIS manages (``iface`` is None under qgis_process)."""
    from .plugin import CSSMambaPlugin

    return CSSMambaPlugin(iface)
