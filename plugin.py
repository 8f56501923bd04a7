"""The plugin object QGIS holds: registers the Processing provider and removes it again."""

from typing import Optional

from qgis.core import QgsApplication

from .provider.provider import CSSMambaProvider


class CSSMambaPlugin:
    """Owns the ``cssmamba`` Processing provider for the lifetime of the plugin.

    ``initProcessing`` is the one place the provider is created: QGIS desktop calls ``initGui``
    (which delegates here) and ``qgis_process`` calls ``initProcessing`` alone, because
    metadata.txt says ``hasProcessingProvider=yes``.
    """

    def __init__(self, iface) -> None:
        self.iface = iface
        self.provider: Optional[CSSMambaProvider] = None

    def initProcessing(self) -> None:  # noqa: N802 (QGIS API)
        if self.provider is None:
            self.provider = CSSMambaProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 (QGIS API)
        self.initProcessing()

    def unload(self) -> None:
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
