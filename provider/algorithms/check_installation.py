"""Processing algorithm ``cssmamba:checkinstallation``: verify and time the selective scan."""

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputBoolean,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterRasterLayer,
)

from ..algorithm import CSSMambaAlgorithm, engine_callbacks

DEVICES = ["auto", "cpu", "cuda"]


class CheckInstallationAlgorithm(CSSMambaAlgorithm):
    ALGORITHM_ID = "checkinstallation"
    DISPLAY_NAME = "Check installation"
    GROUP = "Tools"
    GROUP_ID = "tools"
    HELP = (
        "Checks that the plugin's Mamba engine computes correctly on this computer and shows how fast it is. "
        "The selective scan (the core of every Mamba model) runs over the pixels of the chosen raster and is "
        "compared with a slow, exact float64 reference; then each available scan backend (pure PyTorch, the "
        "optional compiled CPU kernel, CUDA) is timed on the whole image.\n\n"
        "Raster: any raster; its pixels, in raster order, form the scan sequence (one token per pixel).\n"
        "Device: Auto uses the GPU when PyTorch sees one.\n"
        "The log lists the device, PyTorch version, thread count, backend and timings, and whether the "
        "optional GPU accelerator mamba-ssm is available, not installed, or installed but failing (with the "
        "reason)."
    )

    INPUT, DEVICE = "INPUT", "DEVICE"
    PASSED, REPORT = "PASSED", "REPORT"

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Raster")))
        self.addParameter(QgsProcessingParameterEnum(
            self.DEVICE, self.tr("Device"), options=[self.tr("Auto"), self.tr("CPU"), self.tr("CUDA")], defaultValue=0))
        self.addOutput(QgsProcessingOutputBoolean(self.PASSED, self.tr("Self-check passed")))
        self.addOutput(QgsProcessingOutputString(self.REPORT, self.tr("Report")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        from ...engine.selfcheck import run_selfcheck

        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        device = DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)]
        progress, _ = engine_callbacks(feedback)
        try:
            report = run_selfcheck(layer.source(), device=device, progress=progress)
        except ValueError as exc:
            raise QgsProcessingException(str(exc)) from exc
        for line in report.lines():
            feedback.pushInfo(line)
        if not report.passed:
            feedback.reportError(self.tr("The selective scan does not match the reference: please report this."))
        return {self.PASSED: report.passed, self.REPORT: "\n".join(report.lines())}
