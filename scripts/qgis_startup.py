"""Run by `make qgis` (``qgis --code``) as QGIS starts: show the CSSMamba tools in the Processing Toolbox,
so the sample loaded beside them is one double click away from training."""

from qgis.PyQt.QtCore import QTimer
from qgis.utils import plugins

# Once the event loop runs: QGIS restores its window layout after the --code script.
QTimer.singleShot(0, plugins["cssmamba"].show_toolbox)
