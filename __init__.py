"""QGIS entry point: QGIS calls ``classFactory`` when it loads the plugin.

Kept import-light on purpose: nothing heavy (torch) is imported here, so a missing or broken
optional dependency can never stop QGIS from starting.
"""

import os

# OpenMP workers that spin while they wait compete with QGIS's own threads: training CSSMamba on the
# built-in sample with 2 threads took 4.6-5.3 s per epoch in qgis_process but 2.2 s from the command
# line, and 2.3 s in qgis_process with passive waiting (2-core machine). It must be set before torch
# (and its OpenMP runtime) loads, which happens only when an algorithm runs; a user's own value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def classFactory(iface):  # noqa: N802 (name fixed by QGIS)
    """Return the plugin instance QGIS manages (``iface`` is None under qgis_process)."""
    from .plugin import CSSMambaPlugin

    return CSSMambaPlugin(iface)
