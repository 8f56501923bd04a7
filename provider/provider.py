"""The ``cssmamba`` Processing provider."""

import os

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms.accuracy import AccuracyAlgorithm
from .algorithms.check_installation import CheckInstallationAlgorithm
from .algorithms.classify import ClassifyAlgorithm
from .algorithms.compare import CompareAlgorithm
from .algorithms.create_roi_layer import CreateRoiLayerAlgorithm
from .algorithms.create_sample import CreateSampleAlgorithm
from .algorithms.roi_statistics import RoiStatisticsAlgorithm
from .algorithms.suggest import SuggestAlgorithm
from .algorithms.train import TrainAlgorithm
from .algorithms.train_multimodal import TrainMultimodalAlgorithm
from .dependencies import INSTALL_HINT, as_html, torch_is_installed

ICON_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "resources", "icons", "cssmamba.svg")


class CSSMambaProvider(QgsProcessingProvider):
    """Lists the plugin's algorithms in the Processing Toolbox and ``qgis_process``.

    Loading never imports torch: when it is missing the provider still loads, says why in
    ``warningMessage`` (shown above each algorithm dialog), and the algorithms that need torch
    refuse to run with the same message.
    """

    def id(self) -> str:
        return "cssmamba"

    def name(self) -> str:
        return "CSSMamba"

    def longName(self) -> str:  # noqa: N802 (QGIS API)
        return "CSSMamba: Mamba classifiers for hyperspectral and multi-modal rasters"

    def icon(self) -> QIcon:
        return QIcon(ICON_PATH)

    def svgIconPath(self) -> str:  # noqa: N802 (QGIS API)
        return ICON_PATH

    def warningMessage(self) -> str:  # noqa: N802 (QGIS API)
        if torch_is_installed():
            return ""
        return as_html("PyTorch (torch) is not installed, so training and classification cannot run. " + INSTALL_HINT)

    def loadAlgorithms(self) -> None:  # noqa: N802 (QGIS API)
        for algorithm in (CreateSampleAlgorithm(), CheckInstallationAlgorithm(), CreateRoiLayerAlgorithm(),
                          RoiStatisticsAlgorithm(), AccuracyAlgorithm(), TrainAlgorithm(), TrainMultimodalAlgorithm(),
                          ClassifyAlgorithm(), CompareAlgorithm(), SuggestAlgorithm()):
            self.addAlgorithm(algorithm)
