"""Base class shared by the plugin's Processing algorithms."""

from typing import Callable, Tuple

from qgis.core import QgsProcessingAlgorithm, QgsProcessingException, QgsProcessingFeedback
from qgis.PyQt.QtCore import QCoreApplication

from .dependencies import torch_import_error


class CSSMambaAlgorithm(QgsProcessingAlgorithm):
    """Holds what every algorithm repeats: naming, translation, the torch check, callbacks.

    Subclasses set ``ALGORITHM_ID``, ``DISPLAY_NAME``, ``GROUP``/``GROUP_ID``, ``HELP`` and
    ``NEEDS_TORCH``, and implement ``initAlgorithm`` and ``processAlgorithm``.
    """

    ALGORITHM_ID = ""
    DISPLAY_NAME = ""
    GROUP = ""
    GROUP_ID = ""
    HELP = ""
    NEEDS_TORCH = True

    def tr(self, text: str) -> str:
        return QCoreApplication.translate("CSSMamba", text)

    def createInstance(self) -> "CSSMambaAlgorithm":  # noqa: N802 (QGIS API)
        return type(self)()

    def name(self) -> str:
        return self.ALGORITHM_ID

    def displayName(self) -> str:  # noqa: N802 (QGIS API)
        return self.tr(self.DISPLAY_NAME)

    def group(self) -> str:
        return self.tr(self.GROUP)

    def groupId(self) -> str:  # noqa: N802 (QGIS API)
        return self.GROUP_ID

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        return self.tr(self.HELP)

    def canExecute(self) -> Tuple[bool, str]:  # noqa: N802 (QGIS API)
        if self.NEEDS_TORCH:
            problem = torch_import_error()
            if problem:
                return False, self.tr(problem)
        return True, ""

    def prepareAlgorithm(self, parameters, context, feedback) -> bool:  # noqa: N802 (QGIS API)
        """Refuse to start with the reason when a dependency is missing.

        The toolbox dialog asks ``canExecute`` itself, but ``qgis_process`` does not, so the check
        is repeated here, where every way of running an algorithm passes.
        """
        ok, problem = self.canExecute()
        if not ok:
            raise QgsProcessingException(problem)
        return True


def engine_callbacks(
    feedback: QgsProcessingFeedback,
) -> Tuple[Callable[[float, str], None], Callable[[], bool]]:
    """Map the engine's ``progress(fraction, text)`` and cancel check onto QGIS feedback."""

    def progress(fraction: float, text: str = "") -> None:
        feedback.setProgress(100.0 * fraction)
        if text:
            feedback.pushInfo(text)

    return progress, feedback.isCanceled

