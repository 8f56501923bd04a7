"""Base class shared by the plugin's Processing algorithms, and the adapters every algorithm uses."""

import logging
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Tuple

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeatureSourceDefinition,
    QgsProcessingFeedback,
    QgsProviderRegistry,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QCoreApplication

from .dependencies import as_html, torch_import_error

ENGINE_LOGGER = __name__.rsplit(".", 2)[0] + ".engine"  # "cssmamba.engine" as QGIS imports the plugin


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
        """QGIS shows the reason as rich text, so it is HTML-escaped (``prepareAlgorithm`` raises the plain text)."""
        problem = self._missing_dependency()
        return (False, as_html(problem)) if problem else (True, "")

    def _missing_dependency(self) -> str:
        return (torch_import_error() or "") if self.NEEDS_TORCH else ""

    def vector_layer(self, parameters: dict, name: str, context: QgsProcessingContext) -> Optional[QgsVectorLayer]:
        """The layer behind the feature-source parameter ``name`` (its style, edit state), or None."""
        value = parameters.get(name)
        if isinstance(value, QgsProcessingFeatureSourceDefinition):
            value = value.source.staticValue()
        return self.parameterAsVectorLayer({name: value}, name, context)

    def source_files(self, parameters: dict, names: Tuple[str, ...], context: QgsProcessingContext) -> dict:
        """{parameter: the file on disk behind that vector layer}, for the engine's rule that no output may
        overwrite an input: ``vector_file`` may hand the engine a temporary export instead of the user's file."""
        files = {}
        for name in names:
            layer = self.vector_layer(parameters, name, context)
            if layer is not None:
                path = QgsProviderRegistry.instance().decodeUri(layer.providerType(), layer.source()).get("path")
                if path:
                    files[name] = path
        return files

    def vector_file(self, parameters: dict, name: str, context: QgsProcessingContext,
                    feedback: QgsProcessingFeedback) -> str:
        """A file GDAL can read holding the features of the vector parameter ``name``, as the user sees them.

        Memory layers, 'selected features only' and non-file layers are exported to a temporary
        GeoPackage. A file layer with unsaved edits is exported too: QGIS 3.22 would otherwise hand
        back the file on disk and the edits would be silently lost.
        """
        layer = self.vector_layer(parameters, name, context)
        unsaved = layer is not None and layer.isModified()
        if unsaved:
            feedback.pushInfo(self.tr("{} has unsaved edits; they are used.").format(layer.name()))
        return self.parameterAsCompatibleSourceLayerPath(
            parameters, name, context, [] if unsaved else ["gpkg", "shp"], "gpkg", feedback)

    def prepareAlgorithm(self, parameters, context, feedback) -> bool:  # noqa: N802 (QGIS API)
        """Refuse to start with the reason when a dependency is missing.

        The toolbox dialog asks ``canExecute`` itself, but ``qgis_process`` does not, so the check
        is repeated here, where every way of running an algorithm passes.
        """
        problem = self._missing_dependency()
        if problem:
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



class _FeedbackHandler(logging.Handler):
    """Sends engine log records to the algorithm log: warnings as warnings, the rest as info."""

    def __init__(self, feedback: QgsProcessingFeedback) -> None:
        super().__init__(logging.INFO)
        self.feedback = feedback

    def emit(self, record: logging.LogRecord) -> None:
        message = self.format(record)
        if record.levelno >= logging.WARNING:
            self.feedback.pushWarning(message)
        else:
            self.feedback.pushInfo(message)


@contextmanager
def engine_run(feedback: QgsProcessingFeedback) -> Iterator[None]:
    """Run an engine call inside an algorithm: its log goes to ``feedback`` and the errors it raises
    for bad input (ValueError, OSError: messages that name the problem and the fix) become
    QgsProcessingException, which QGIS shows without a Python traceback."""
    logger = logging.getLogger(ENGINE_LOGGER)
    handler = _FeedbackHandler(feedback)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    except (ValueError, OSError) as exc:
        raise QgsProcessingException(str(exc)) from exc
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
