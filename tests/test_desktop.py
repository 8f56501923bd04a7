"""QGIS desktop integration (offscreen): menu, toolbar and layer context-menu actions, the Processing
Toolbox shortcut, the German translation (in process and through qgis_process), `make i18n`, and
`make demo`'s script end to end with a short training."""

import importlib.util
import os
import re
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TS = os.path.join(ROOT, "i18n", "cssmamba_de.ts")
QM = os.path.join(ROOT, "i18n", "cssmamba_de.qm")
DIALOG_IDS = ["cssmamba:createroilayer", "cssmamba:train", "cssmamba:trainmultimodal", "cssmamba:classify",
              "cssmamba:accuracy"]

pytestmark = pytest.mark.qgis


class StubIface:
    """The few QgisInterface methods plugin.py calls, on real Qt widgets, so that what the plugin adds
    can be seen in (and must disappear from) a menu, a toolbar and the layer-action list."""

    def __init__(self) -> None:
        from qgis.gui import QgsMessageBar
        from qgis.PyQt.QtWidgets import QMainWindow, QMenu, QToolBar

        self.window = QMainWindow()
        self.raster_menu = QMenu("&Raster", self.window)
        self.toolbar = QToolBar(self.window)
        self.message_bar = QgsMessageBar(self.window)
        self.layer_actions = []
        self.active_layer = None

    def mainWindow(self):  # noqa: N802 (QGIS API)
        return self.window

    def plugin_submenu(self, name):
        return next((a.menu() for a in self.raster_menu.actions() if a.menu() and a.text() == name), None)

    def addPluginToRasterMenu(self, name, action):  # noqa: N802 (QGIS API)
        (self.plugin_submenu(name) or self.raster_menu.addMenu(name)).addAction(action)

    def removePluginRasterMenu(self, name, action):  # noqa: N802 (QGIS API)
        submenu = self.plugin_submenu(name)
        submenu.removeAction(action)
        if not submenu.actions():  # as QGIS does: an empty plugin submenu goes
            self.raster_menu.removeAction(submenu.menuAction())

    def addToolBarIcon(self, action):  # noqa: N802 (QGIS API)
        self.toolbar.addAction(action)

    def removeToolBarIcon(self, action):  # noqa: N802 (QGIS API)
        self.toolbar.removeAction(action)

    def pluginToolBar(self):  # noqa: N802 (QGIS API)
        return self.toolbar

    def addCustomActionForLayerType(self, action, menu, layer_type, all_layers):  # noqa: N802 (QGIS API)
        self.layer_actions.append((action, menu, layer_type, all_layers))

    def removeCustomActionForLayerType(self, action):  # noqa: N802 (QGIS API)
        before = len(self.layer_actions)
        self.layer_actions = [entry for entry in self.layer_actions if entry[0] is not action]
        return len(self.layer_actions) < before

    def activeLayer(self):  # noqa: N802 (QGIS API)
        return self.active_layer

    def messageBar(self):  # noqa: N802 (QGIS API)
        return self.message_bar

    def mapCanvas(self):  # noqa: N802 (QGIS API; the Processing dialogs ask for it)
        return None


@pytest.fixture
def desktop(qgis_app, plugin_module):
    iface = StubIface()
    plugin = plugin_module.classFactory(iface)
    plugin.initGui()
    yield iface, plugin
    plugin.unload()


@pytest.fixture
def opened_dialogs(monkeypatch):
    """Record what the plugin asks Processing to open instead of running a modal dialog."""
    import processing

    opened = []
    monkeypatch.setattr(processing, "execAlgorithmDialog", lambda alg, params: opened.append((alg, dict(params))))
    return opened


@pytest.fixture(scope="module")
def compiled_translations():
    """`make i18n`, as `make test` runs it: the .qm must come out of the checked-in .ts."""
    result = subprocess.run(["make", "-s", "i18n"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return QM


def test_menu_toolbar_and_layer_action_are_added_and_removed(desktop, opened_dialogs):
    from qgis.core import QgsApplication, QgsMapLayerType
    from qgis.PyQt.QtWidgets import QToolButton

    iface, plugin = desktop
    submenu = iface.plugin_submenu("&CSSMamba")
    names = [QgsApplication.processingRegistry().algorithmById(i).displayName() + "…" for i in DIALOG_IDS]
    assert [a.text() for a in submenu.actions()] == ["CSSMamba in the Processing Toolbox"] + names
    assert names == ["Create training ROI layer…", "Train CSSMamba…", "Train M3amba (multi-modal)…", "Classify raster…",
                     "Accuracy assessment…"]
    assert all(a.menu() is None for a in submenu.actions())  # plain entries, no submenus
    [button_action] = iface.toolbar.actions()
    assert button_action.toolTip() == "Show the CSSMamba tools in the Processing Toolbox"
    assert [a.text() for a in button_action.menu().actions()] == names
    assert iface.toolbar.widgetForAction(button_action).popupMode() == QToolButton.MenuButtonPopup
    [(layer_action, menu, layer_type, all_layers)] = iface.layer_actions
    assert (layer_action.text(), menu, layer_type, all_layers) == (
        "Classify raster with CSSMamba…", "", QgsMapLayerType.RasterLayer, True)

    for action in submenu.actions()[1:]:
        action.trigger()
    assert opened_dialogs == [(algorithm_id, {}) for algorithm_id in DIALOG_IDS]

    plugin.unload()
    assert iface.plugin_submenu("&CSSMamba") is None
    assert iface.toolbar.actions() == [] and iface.layer_actions == []
    assert QgsApplication.processingRegistry().providerById("cssmamba") is None
    plugin.unload()  # the fixture unloads again: a second unload must be harmless


def test_layer_context_action_opens_classify_with_that_raster(desktop, monkeypatch, tmp_path):
    """The real Processing dialog, so the INPUT preset is checked where the user sees it."""
    import processing
    import processing.tools.general
    from qgis.core import QgsProject, QgsRasterLayer
    from qgis.PyQt import sip

    from cssmamba.engine.data.sample import generate_sample

    iface, plugin = desktop
    dialogs = []
    monkeypatch.setattr(processing.tools.general, "iface", iface)
    monkeypatch.setattr(processing, "execAlgorithmDialog",
                        lambda alg, params: dialogs.append(processing.createAlgorithmDialog(alg, params)))
    layer = QgsRasterLayer(generate_sample(str(tmp_path), rows=16, cols=16, bands=12).raster, "scene")
    QgsProject.instance().addMapLayer(layer)
    try:
        iface.active_layer = layer
        iface.layer_actions[0][0].trigger()
        [dialog] = dialogs
        assert dialog.algorithm().id() == "cssmamba:classify"
        assert dialog.mainWidget().wrappers["INPUT"].parameterValue() == layer.id()
        sip.delete(dialog)  # now, not at interpreter exit, when Qt's timers complain
    finally:
        QgsProject.instance().removeMapLayer(layer.id())


def test_layer_context_action_without_a_raster_opens_classify_empty(desktop, opened_dialogs):
    iface, _ = desktop
    iface.layer_actions[0][0].trigger()
    assert opened_dialogs == [("cssmamba:classify", {})]


def test_toolbox_action_shows_exactly_the_provider_in_the_real_toolbox(desktop, monkeypatch):
    from qgis.PyQt.QtCore import QModelIndex, QObject, QSize, Qt, pyqtSignal

    import processing.gui.ProcessingToolbox as toolbox_module

    iface, plugin = desktop

    class ToolboxIface(QObject):  # what the Processing plugin's toolbox asks of iface when it is built
        currentLayerChanged = pyqtSignal(object)

        def iconSize(self, dock=False):  # noqa: N802 (QGIS API)
            return QSize(16, 16)

    monkeypatch.setattr(toolbox_module, "iface", ToolboxIface())
    toolbox = toolbox_module.ProcessingToolbox()
    iface.window.addDockWidget(Qt.RightDockWidgetArea, toolbox)
    toolbox.hide()  # as the Processing plugin leaves it until asked
    iface.window.show()
    iface.toolbar.actions()[0].trigger()
    assert toolbox.isUserVisible() and toolbox.searchBox.text() == "CSSMamba"
    model = toolbox.algorithmTree.model()
    [provider_row] = [model.index(r, 0) for r in range(model.rowCount(QModelIndex()))]
    algorithms = {model.index(a, 0, model.index(g, 0, provider_row)).data()
                  for g in range(model.rowCount(provider_row))
                  for a in range(model.rowCount(model.index(g, 0, provider_row)))}
    displayed = {a.displayName() for a in plugin.provider.algorithms()}
    assert provider_row.data() == "CSSMamba" and algorithms == displayed
    toolbox.deleteLater()


def test_toolbox_action_explains_when_processing_is_disabled(desktop):
    iface, plugin = desktop
    plugin.show_toolbox()
    [item] = iface.message_bar.items()
    assert "Processing plugin is disabled" in item.text()


def test_german_translation_follows_the_user_locale(qgis_app, plugin_module, compiled_translations):
    from qgis.core import QgsApplication, QgsSettings

    settings = QgsSettings()
    previous = settings.value("locale/userLocale")
    settings.setValue("locale/userLocale", "de_DE")
    try:
        plugin = plugin_module.classFactory(None)
        plugin.initProcessing()
        train = QgsApplication.processingRegistry().algorithmById("cssmamba:train")
        classify = QgsApplication.processingRegistry().algorithmById("cssmamba:classify").create()
        try:
            assert (train.displayName(), train.group()) == ("CSSMamba trainieren", "Training")
            assert classify.displayName() == "Raster klassifizieren"
            assert "Zu klassifizierendes Raster:" in classify.shortHelpString()   # the label, as the dialog shows it
            assert classify.parameterDefinition("MODEL").description() == "Modelldatei"
        finally:
            plugin.unload()
        english = plugin_module.classFactory(None)
        settings.setValue("locale/userLocale", "en_GB")
        english.initProcessing()
        try:
            assert QgsApplication.processingRegistry().algorithmById("cssmamba:train").displayName() == "Train CSSMamba"
        finally:
            english.unload()
    finally:
        if previous is None:
            settings.remove("locale/userLocale")
        else:
            settings.setValue("locale/userLocale", previous)


def test_qgis_process_speaks_german_with_a_german_profile(compiled_translations, tmp_path):
    """qgis_process never runs initGui: the translation must come with initProcessing."""
    ini = tmp_path / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text("[PythonPlugins]\ncssmamba=true\n\n[locale]\nuserLocale=de_DE\n")
    script = tmp_path / "qgis_process_german.sh"
    script.write_text(f'. "{ROOT}/scripts/qgis_env.sh"\nexport QGIS_CUSTOM_CONFIG_PATH="{tmp_path}"\n'
                      'export QT_QPA_PLATFORM=offscreen\nexec qgis_process.bin "$@"\n')
    result = subprocess.run(["bash", str(script), "list"], capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, root=ROOT))
    assert result.returncode == 0, result.stderr
    assert "cssmamba:train\tCSSMamba trainieren" in result.stdout
    assert "cssmamba:classify\tRaster klassifizieren" in result.stdout


def test_make_i18n_output_loads_and_ships_in_the_zip(compiled_translations, tmp_path):
    from qgis.PyQt.QtCore import QTranslator

    assert os.path.getmtime(compiled_translations) >= os.path.getmtime(TS)
    translator = QTranslator()
    assert translator.load(compiled_translations)
    assert translator.translate("CSSMamba", "Accuracy assessment") == "Genauigkeitsbewertung"
    result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_zip.py"), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(result.stdout.strip()) as archive:
        assert "cssmamba/i18n/cssmamba_de.qm" in archive.namelist()


def load_update_translations():
    spec = importlib.util.spec_from_file_location("update_translations",
                                                  os.path.join(ROOT, "scripts", "update_translations.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_update_translations_keeps_translations_and_marks_new_and_vanished_strings(tmp_path):
    update = load_update_translations()
    path = str(tmp_path / "cssmamba_de.ts")
    update.write_ts(path, "de_DE", {"Model <file> & more": ("Modell <Datei> & mehr", None),
                                    "Old text": ("Alter Text", None), "Draft": ("Entwurf", "unfinished")})
    language, existing = update.read_ts(path)
    merged = update.merge(["New text", "Draft", "Model <file> & more"], existing)
    assert language == "de_DE"
    assert merged == {"New text": ("", "unfinished"), "Draft": ("Entwurf", "unfinished"),
                      "Model <file> & more": ("Modell <Datei> & mehr", None), "Old text": ("Alter Text", "vanished")}
    (tmp_path / "plugin.py").write_text(
        'tr("a")\nself.tr("b" " c")\nQCoreApplication.translate("CSSMamba", "d")\n'
        'QCoreApplication.translate("Other", "e")\nself.tr(f"{x}")\nself.tr(HELP)\nprint("f")\n')
    assert update.strings_from_sources(str(tmp_path)) == ["a", "b c", "d"]
    assert "Classify raster with CSSMamba…" in update.strings_from_sources()


def test_every_user_visible_string_has_a_german_translation():
    """Fails when an algorithm's text changed without its translation: run scripts/update_translations.py."""
    result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "update_translations.py"), "--check"],
                            capture_output=True, text=True, timeout=300, env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_demo_log_drops_the_progress_ticks_that_run_into_log_lines():
    """Lines as qgis_process prints them during training (ticks without line breaks), through the demo's filter."""
    raw = ("0..cssmamba: 215,419 parameters, 14 bands\n.10.epoch 1/12: loss 1.8254\n..epoch 2/12: loss 1.7869\n"
           "20...epoch 3/12: loss 1.7504\n..50epoch 6/12: loss 1.6541\n…/sample.tif: 18 bad bands\n"
           "90../tmp/qp/m.pt written\n0...10...20...30...40...50...60...70...80...90...100 - done.\n"
           "class 1 roof                 train    30\n")
    result = subprocess.run(["sed", "-E", "-f", os.path.join(ROOT, "scripts", "progress_ticks.sed")], input=raw,
                            capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.splitlines() == [
        "cssmamba: 215,419 parameters, 14 bands", "epoch 1/12: loss 1.8254", "epoch 2/12: loss 1.7869",
        "epoch 3/12: loss 1.7504", "epoch 6/12: loss 1.6541", "…/sample.tif: 18 bad bands", "/tmp/qp/m.pt written",
        "0...10...20...30...40...50...60...70...80...90...100 - done.", "class 1 roof                 train    30"]


@pytest.mark.slow
def test_demo_script_runs_the_whole_job_through_qgis_process(tmp_path):
    """`make demo` with 2 epochs instead of 50 (the outputs, not the accuracy, are checked here)."""
    result = subprocess.run([os.path.join(ROOT, "scripts", "demo.sh"), str(tmp_path)], capture_output=True,
                            text=True, timeout=600, env=dict(os.environ, DEMO_EPOCHS="2"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name in ("demo_cssmamba.pt", "demo_classes.tif", "demo_clusters.tif", "demo_accuracy.json"):
        assert os.path.getsize(tmp_path / name) > 0
        assert f"{name:<20} {tmp_path / name}" in result.stdout
    assert "OA" in result.stdout and "KAPPA" in result.stdout
    assert re.search(r"^[0-9.]+epoch", result.stdout, re.MULTILINE) is None   # no progress ticks in the log lines
