"""The plugin object QGIS holds: the Processing provider, its translation, and in QGIS desktop the
menu, toolbar button and layer context-menu entry that open the provider's tools."""

import os
from typing import Any, Dict, List, Optional

from qgis.core import QgsApplication, QgsMapLayerType, QgsSettings
from qgis.PyQt.QtCore import QCoreApplication, QLocale, QTranslator
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction, QDockWidget, QLineEdit, QMenu, QToolButton

from .provider.provider import ICON_PATH, CSSMambaProvider

I18N_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "i18n")
MENU = "&CSSMamba"
# The tools the menu and the toolbar button's drop-down open, in the order of the workflow.
DIALOG_ALGORITHMS = ("cssmamba:createroilayer", "cssmamba:train", "cssmamba:trainmultimodal", "cssmamba:classify",
                     "cssmamba:accuracy")
CLASSIFY_ALGORITHM = "cssmamba:classify"


def tr(text: str) -> str:
    """Translate in the context the algorithms use (provider/algorithm.py), so one .ts serves both."""
    return QCoreApplication.translate("CSSMamba", text)


def user_language() -> str:
    """Two-letter language of the QGIS user interface.

    QGIS desktop stores the language it runs in as ``locale/userLocale`` at every start (the
    user's override or the system locale), so ``qgis_process`` with the same profile speaks it
    too; without the setting the system locale decides.
    """
    locale = QgsSettings().value("locale/userLocale", "") or QLocale().name()
    return str(locale)[:2].lower()


def install_translator(language: Optional[str] = None) -> Optional[QTranslator]:
    """Install ``i18n/cssmamba_<language>.qm`` when it exists; None for English or a missing file.

    The caller keeps the returned translator (Qt holds no reference) and removes it on unload.
    """
    language = language or user_language()
    path = os.path.join(I18N_DIR, f"cssmamba_{language}.qm")
    if language == "en" or not os.path.isfile(path):
        return None
    translator = QTranslator()
    if not translator.load(path):
        return None
    QCoreApplication.installTranslator(translator)
    return translator


class CSSMambaPlugin:
    """Owns the ``cssmamba`` Processing provider and, in QGIS desktop, the plugin's actions.

    ``initProcessing`` is the one place the provider and the translation are set up and stays
    free of GUI calls: QGIS desktop calls ``initGui`` (which delegates to it) and ``qgis_process``
    calls ``initProcessing`` alone, because metadata.txt says ``hasProcessingProvider=yes``.
    """

    def __init__(self, iface) -> None:
        self.iface = iface
        self.provider: Optional[CSSMambaProvider] = None
        self.translator: Optional[QTranslator] = None
        self.toolbox_action: Optional[QAction] = None
        self.toolbar_action: Optional[QAction] = None
        self.layer_action: Optional[QAction] = None
        self.menu_actions: List[QAction] = []

    def initProcessing(self) -> None:  # noqa: N802 (QGIS API)
        if self.translator is None:
            self.translator = install_translator()
        if self.provider is None:
            self.provider = CSSMambaProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 (QGIS API)
        self.initProcessing()
        if self.iface is None or self.toolbox_action is not None:
            return
        window = self.iface.mainWindow()
        self.toolbox_action = QAction(QIcon(ICON_PATH), tr("CSSMamba in the Processing Toolbox"), window)
        self.toolbox_action.triggered.connect(self.show_toolbox)
        self.iface.addPluginToRasterMenu(MENU, self.toolbox_action)
        self.menu_actions = [self._dialog_action(algorithm_id) for algorithm_id in DIALOG_ALGORITHMS]
        for action in self.menu_actions:
            self.iface.addPluginToRasterMenu(MENU, action)
        # The toolbar button opens the toolbox; its arrow lists the same tools as the menu. (A menu entry
        # cannot be this action: an action with a menu shows as a submenu there.)
        self.toolbar_action = QAction(QIcon(ICON_PATH), "CSSMamba", window)
        self.toolbar_action.setToolTip(tr("Show the CSSMamba tools in the Processing Toolbox"))
        self.toolbar_action.triggered.connect(self.show_toolbox)
        self.toolbar_action.setMenu(QMenu(window))
        self.toolbar_action.menu().addActions(self.menu_actions)
        self.iface.addToolBarIcon(self.toolbar_action)
        self.iface.pluginToolBar().widgetForAction(self.toolbar_action).setPopupMode(QToolButton.MenuButtonPopup)
        self.layer_action = QAction(QIcon(ICON_PATH), tr("Classify raster with CSSMamba…"), window)
        self.layer_action.triggered.connect(self.classify_active_layer)
        self.iface.addCustomActionForLayerType(self.layer_action, "", QgsMapLayerType.RasterLayer, True)

    def _dialog_action(self, algorithm_id: str) -> QAction:
        """A menu action named like the algorithm (so it is translated with it) that opens its dialog."""
        algorithm = QgsApplication.processingRegistry().algorithmById(algorithm_id)
        action = QAction(algorithm.icon(), algorithm.displayName() + "…", self.iface.mainWindow())
        action.setObjectName(algorithm_id)
        action.triggered.connect(lambda: self.open_dialog(algorithm_id))
        return action

    def unload(self) -> None:
        if self.toolbox_action is not None:
            for action in self.menu_actions + [self.toolbox_action]:
                self.iface.removePluginRasterMenu(MENU, action)
            self.iface.removeToolBarIcon(self.toolbar_action)
            self.iface.removeCustomActionForLayerType(self.layer_action)
            self.toolbar_action.menu().deleteLater()
            for action in self.menu_actions + [self.toolbox_action, self.toolbar_action, self.layer_action]:
                action.deleteLater()
            self.toolbox_action, self.toolbar_action, self.layer_action, self.menu_actions = None, None, None, []
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        if self.translator is not None:
            QCoreApplication.removeTranslator(self.translator)
            self.translator = None

    def show_toolbox(self) -> None:
        """Open the Processing Toolbox searched for "CSSMamba", which lists exactly this provider's tools."""
        toolbox = self.iface.mainWindow().findChild(QDockWidget, "ProcessingToolbox")
        if toolbox is None:
            self.iface.messageBar().pushWarning(
                "CSSMamba", tr("The Processing plugin is disabled: enable it in Plugins ▸ Manage and Install Plugins."))
            return
        toolbox.setUserVisible(True)
        toolbox.raise_()
        toolbox.findChild(QLineEdit, "searchBox").setText("CSSMamba")

    def open_dialog(self, algorithm_id: str, parameters: Optional[Dict[str, Any]] = None) -> None:
        """Open an algorithm's dialog as the toolbox does (Processing is imported only when asked)."""
        import processing

        processing.execAlgorithmDialog(algorithm_id, parameters or {})

    def classify_active_layer(self) -> None:
        """The layer context-menu entry: Classify raster with the right-clicked (current) layer as INPUT."""
        layer = self.iface.activeLayer()
        parameters = {"INPUT": layer} if layer is not None and layer.type() == QgsMapLayerType.RasterLayer else {}
        self.open_dialog(CLASSIFY_ALGORITHM, parameters)
