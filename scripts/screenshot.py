"""Make docs/screenshot.png: QGIS desktop under Xvfb showing what an analyst sees after Classify raster on
the EnMAP Potsdam mosaic: the styled class map with its legend, the cluster map and the true-colour
mosaic in map views beside it, and the CSSMamba tools in the Processing Toolbox.

Run it with the project's Python (`make screenshot`). It starts QGIS itself (xvfb-run, a throwaway
profile in English, the plugin enabled) with this same file as the ``--code`` script; inside QGIS it
trains CSSMamba for a few epochs through Processing (or takes --model), classifies with
``processing.runAndLoadResults`` (so the layers are styled by the plugin, as in the GUI), lays out the
window, waits until every map has rendered, saves the PNG and quits. The outer process gives up after
--timeout seconds and kills QGIS.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import sysconfig
import tempfile
import traceback
from typing import Any, Dict, List, Optional

CONFIG_ENV = "CSSMAMBA_SCREENSHOT_CONFIG"  # set for the QGIS process: run the inside part


# ---- outside QGIS: start it under Xvfb and wait -------------------------------------------------------

def repository() -> str:
    """The checkout; asked only outside QGIS, whose ``--code`` runs this file without ``__file__``."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_profile(folder: str) -> None:
    """A fresh profile: plugin and Processing enabled, English, no version check, so every run looks the same."""
    ini = os.path.join(folder, "profiles", "default", "QGIS", "QGIS3.ini")
    os.makedirs(os.path.dirname(ini))
    with open(ini, "w") as handle:
        handle.write("[PythonPlugins]\ncssmamba=true\nprocessing=true\n\n"
                     "[locale]\noverrideFlag=true\nuserLocale=en_US\n\n[qgis]\ncheckVersion=false\n")


def qgis_environment(profile: str, config_path: str) -> Dict[str, str]:
    """What scripts/qgis_env.sh sets up, with the throwaway profile, and a real (virtual) display."""
    plugin_parent = os.path.join(repository(), "build", "plugins")
    os.makedirs(plugin_parent, exist_ok=True)
    if not os.path.islink(os.path.join(plugin_parent, "cssmamba")):
        os.symlink(repository(), os.path.join(plugin_parent, "cssmamba"))
    env = dict(os.environ, QGIS_PLUGINPATH=plugin_parent, QGIS_CUSTOM_CONFIG_PATH=profile,
               XDG_RUNTIME_DIR=os.path.join(profile, "runtime"), **{CONFIG_ENV: config_path})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [sysconfig.get_paths()["purelib"], env.get("PYTHONPATH")]))
    env.pop("QT_QPA_PLATFORM", None)  # `make` exports offscreen; Xvfb is the display here
    os.makedirs(env["XDG_RUNTIME_DIR"], mode=0o700)
    return env


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = repository()
    parser.add_argument("--out", default=os.path.join(root, "docs", "screenshot.png"), help="PNG to write")
    parser.add_argument("--model", help="a model trained on the EnMAP Potsdam mosaic to use instead of training "
                                        "(an earlier run leaves one in build/screenshot/)")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs when no --model (default 30)")
    parser.add_argument("--size", default="1600x1000", help="window and screen size (default 1600x1000)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds before QGIS is killed (default 900)")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    work = os.path.join(root, "build", "screenshot")
    os.makedirs(work, exist_ok=True)
    status_path = os.path.join(work, "status.json")
    if os.path.exists(status_path):
        os.remove(status_path)
    config = {"out": os.path.abspath(args.out), "model": args.model and os.path.abspath(args.model),
              "epochs": args.epochs, "width": width, "height": height,
              "data": os.path.join(os.path.dirname(root), "shared", "data", "enmap_potsdam"), "work": work,
              "status": status_path}
    with tempfile.TemporaryDirectory(prefix="cssmamba-qgis-profile-") as profile:
        write_profile(profile)
        config_path = os.path.join(profile, "screenshot.json")
        with open(config_path, "w") as handle:
            json.dump(config, handle)
        command = ["xvfb-run", "-a", "-s", f"-screen 0 {width}x{height}x24",
                   "qgis", "--noversioncheck", "--nologo", "--code", os.path.abspath(__file__)]
        qgis = subprocess.Popen(command, env=qgis_environment(profile, config_path), start_new_session=True)
        try:
            qgis.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(qgis.pid, signal.SIGKILL)
            qgis.wait()
            print(f"screenshot: QGIS did not finish within {args.timeout} s and was killed", file=sys.stderr)
            return 1
    if not os.path.exists(status_path):
        print(f"screenshot: QGIS exited (status {qgis.returncode}) without a result; see its output above",
              file=sys.stderr)
        return 1
    with open(status_path) as handle:
        status = json.load(handle)
    if status.get("error"):
        print("screenshot: failed inside QGIS:\n" + status["error"], file=sys.stderr)
        return 1
    print(f"screenshot: {status['out']} ({status['caption']})")
    return 0


# ---- inside QGIS (run by `qgis --code`) -------------------------------------------------------------

def train_and_classify(config: Dict[str, Any]) -> Dict[str, Any]:
    """Train (unless a model is given) and classify through Processing; the outputs load styled."""
    import processing
    from qgis.core import QgsProcessingFeedback

    class Feedback(QgsProcessingFeedback):
        """Prints the algorithm log, so the terminal shows the training progress."""

        def pushInfo(self, info: str) -> None:  # noqa: N802 (QGIS API)
            print(info, flush=True)

        def pushWarning(self, warning: str) -> None:  # noqa: N802 (QGIS API)
            print("warning: " + warning, flush=True)

    mosaic = os.path.join(config["data"], "enmap_potsdam_mosaic.tif")
    model = config["model"]
    if not model:
        model = os.path.join(config["work"], "enmap_potsdam_cssmamba.pt")
        processing.run("cssmamba:train", {
            "INPUT": mosaic, "ROIS": os.path.join(config["data"], "enmap_potsdam_rois.gpkg"),
            "CLASS_FIELD": "class_id", "NAME_FIELD": "class_name", "EPOCHS": config["epochs"],
            "OUTPUT_MODEL": model, "OUTPUT_REPORT": os.path.join(config["work"], "training_report.html")},
            feedback=Feedback())
    outputs = processing.runAndLoadResults("cssmamba:classify", {
        "INPUT": mosaic, "MODEL": model, "OUTPUT": os.path.join(config["work"], "cssmamba_classes.tif"),
        "OUTPUT_CLUSTERS": os.path.join(config["work"], "cssmamba_clusters.tif")}, feedback=Feedback())
    return {"mosaic": mosaic, "model": model, **outputs}


def dock_of(widget: Any) -> Any:
    """The dock widget a map view's canvas sits in."""
    from qgis.PyQt.QtWidgets import QDockWidget

    while not isinstance(widget, QDockWidget):
        widget = widget.parent()
    return widget


def lay_out(iface: Any, plugin: Any, paths: Dict[str, Any]) -> List[Any]:
    """Left: the legend over the CSSMamba tools; centre: the class map; right: true colour over the
    cluster map, in two map views. Returns every canvas, to wait for their rendering."""
    from qgis.core import QgsMapThemeCollection, QgsProject, QgsRasterLayer
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtWidgets import QDockWidget

    project = QgsProject.instance()
    root = project.layerTreeRoot()
    by_source = {os.path.realpath(layer.source()): layer for layer in project.mapLayers().values()}
    classes = by_source[os.path.realpath(paths["OUTPUT"])]
    clusters = by_source[os.path.realpath(paths["OUTPUT_CLUSTERS"])]
    mosaic = QgsRasterLayer(paths["mosaic"], "EnMAP mosaic (true colour)")
    from cssmamba.provider.styling import true_colour_renderer  # the plugin, loaded in this QGIS

    mosaic.setRenderer(true_colour_renderer(mosaic))
    project.addMapLayer(mosaic, False)
    root.addLayer(mosaic)  # at the bottom of the legend
    for index, layer in enumerate((classes, clusters)):
        node = root.findLayer(layer.id())
        root.insertChildNode(index, node.clone())
        root.removeChildNode(node)
    root.findLayer(classes.id()).setExpanded(True)  # the class names and colours
    root.findLayer(clusters.id()).setExpanded(False)  # 18 clusters: too long a legend for the picture
    root.findLayer(clusters.id()).setItemVisibilityChecked(False)
    root.findLayer(mosaic.id()).setExpanded(False)

    themes = project.mapThemeCollection()
    for name, layer in (("True colour", mosaic), ("Clusters", clusters)):
        record = QgsMapThemeCollection.MapThemeRecord()
        record.setLayerRecords([QgsMapThemeCollection.MapThemeLayerRecord(layer)])
        themes.insert(name, record)
    window = iface.mainWindow()
    for dock in window.findChildren(QDockWidget):
        if dock.objectName() != "Layers":
            dock.hide()
    plugin.show_toolbox()
    layers, toolbox = window.findChild(QDockWidget, "Layers"), window.findChild(QDockWidget, "ProcessingToolbox")
    window.addDockWidget(Qt.LeftDockWidgetArea, toolbox)
    window.splitDockWidget(layers, toolbox, Qt.Vertical)
    toolbox.algorithmTree.selectionModel().clearSelection()
    canvases, views = [iface.mapCanvas()], []
    for title, theme in (("EnMAP mosaic, true colour", "True colour"), ("CSSMamba cluster map", "Clusters")):
        canvas = iface.createNewMapCanvas(title)
        canvas.setTheme(theme)
        canvases.append(canvas)
        views.append(dock_of(canvas))
        window.addDockWidget(Qt.RightDockWidgetArea, views[-1])
    window.splitDockWidget(views[0], views[1], Qt.Vertical)
    window.resizeDocks([layers, views[0]], [300, 440], Qt.Horizontal)
    window.resizeDocks([layers, toolbox, views[0], views[1]], [500, 400, 450, 450], Qt.Vertical)
    for canvas in canvases:
        canvas.setDestinationCrs(mosaic.crs())
        canvas.setExtent(mosaic.extent())
        canvas.refreshAllLayers()
    return canvases


def inside_qgis(config_path: str) -> None:
    """Schedule the work once QGIS's event loop runs; report success or the traceback in the status file."""
    from qgis.core import QgsProject
    from qgis.PyQt.QtCore import QTimer
    from qgis.utils import iface, plugins

    with open(config_path) as handle:
        config = json.load(handle)
    state: Dict[str, Any] = {}

    def finish(status: Dict[str, Any]) -> None:
        with open(config["status"], "w") as handle:
            json.dump(status, handle)
        QgsProject.instance().setDirty(False)  # no "save the project?" question on exit
        QTimer.singleShot(0, iface.actionExit().trigger)  # QGIS's own shutdown: plugins unload first

    def fail() -> None:
        finish({"error": traceback.format_exc()})

    def build() -> None:
        try:
            window = iface.mainWindow()
            window.setGeometry(0, 0, config["width"], config["height"])
            paths = train_and_classify(config)
            state["canvases"] = lay_out(iface, plugins["cssmamba"], paths)
            state["quiet_polls"] = 0
            state["timer"] = QTimer()
            state["timer"].timeout.connect(poll)
            state["timer"].start(250)
        except Exception:  # reported to the outer process, which fails with it
            fail()

    def poll() -> None:
        """Save once no canvas has drawn for 2 s (the map views render after the main canvas)."""
        try:
            drawing = any(canvas.isDrawing() for canvas in state["canvases"])
            state["quiet_polls"] = 0 if drawing else state["quiet_polls"] + 1
            if state["quiet_polls"] < 8:
                return
            state["timer"].stop()
            os.makedirs(os.path.dirname(config["out"]), exist_ok=True)
            if not iface.mainWindow().grab().save(config["out"]):
                raise OSError(f"could not write {config['out']}")
            trained = "" if config["model"] else f", trained for {config['epochs']} epochs"
            finish({"out": config["out"], "caption": f"EnMAP Potsdam mosaic, CSSMamba{trained}"})
        except Exception:  # reported to the outer process, which fails with it
            fail()

    QTimer.singleShot(1000, build)
    globals()["_screenshot_state"] = state  # keep the timers alive after this script returns


if os.environ.get(CONFIG_ENV) and "qgis.utils" in sys.modules:
    inside_qgis(os.environ[CONFIG_ENV])
elif __name__ == "__main__":
    raise SystemExit(main())
