"""Collect the plugin's user-visible strings into the Qt Linguist files ``i18n/cssmamba_<lang>.ts``.

pylupdate5 cannot do this: the algorithms keep their names, groups and help texts in class
constants that reach ``tr()`` only at run time, and it would file ``self.tr`` calls under each
class's name instead of the one context, "CSSMamba", that ``provider/algorithm.py`` and
``plugin.py`` translate in. So the strings come from two places:

* the algorithms themselves, instantiated in QGIS: display name, group, help text, parameter and
  output descriptions, enum options, file filters (``tr()`` ran on them with no translator installed);
* every literal ``tr("…")`` / ``QCoreApplication.translate("CSSMamba", "…")`` in plugin.py and
  provider/ (menu entries, messages).

Existing translations are kept; new strings are added unfinished; strings no longer used are
kept as "vanished" so a reworded text can reuse its old translation. ``--check`` changes nothing
and fails when a string has no finished translation. ``make i18n`` compiles the .ts files.
"""

import argparse
import ast
import glob
import os
import sys
import xml.etree.ElementTree as ET
from typing import Dict, Iterable, List, Optional, Tuple
from xml.sax.saxutils import escape

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN_PARENT = os.path.join(ROOT, "build", "plugins")
CONTEXT = "CSSMamba"
SOURCE_FILES = ["plugin.py", "provider/**/*.py"]


def strings_from_sources(root: str = ROOT) -> List[str]:
    """Literal arguments of ``tr(…)`` and ``translate("CSSMamba", …)`` calls in the plugin's Python files."""
    found: List[str] = []
    for pattern in SOURCE_FILES:
        for path in sorted(glob.glob(os.path.join(root, pattern), recursive=True)):
            with open(path, encoding="utf-8") as handle:
                tree = ast.parse(handle.read(), path)
            for node in ast.walk(tree):
                text = _translated_literal(node)
                if text:
                    found.append(text)
    return found


def _translated_literal(node: ast.AST) -> Optional[str]:
    if not isinstance(node, ast.Call):
        return None
    name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
    args = [arg.value if isinstance(arg, ast.Constant) else None for arg in node.args]
    if name == "tr" and len(args) == 1 and isinstance(args[0], str):
        return args[0]
    if name == "translate" and len(args) == 2 and args[0] == CONTEXT and isinstance(args[1], str):
        return args[1]
    return None


def strings_from_algorithms() -> List[str]:
    """Names, groups, help texts and parameter/output texts of the provider's algorithms, in English."""
    from qgis.core import QgsApplication, QgsProcessingParameterEnum

    if PLUGIN_PARENT not in sys.path:
        sys.path.insert(0, PLUGIN_PARENT)
    from cssmamba.provider.provider import CSSMambaProvider  # no plugin object: no translator installed

    provider = CSSMambaProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    found: List[str] = []
    try:
        for algorithm in sorted(provider.algorithms(), key=lambda a: a.id()):
            found += [type(algorithm).DISPLAY_NAME, type(algorithm).GROUP, type(algorithm).HELP]
            for parameter in algorithm.parameterDefinitions():
                found += [parameter.description(), parameter.help()]
                if isinstance(parameter, QgsProcessingParameterEnum):
                    found += parameter.options()
                if hasattr(parameter, "fileFilter"):  # file and file-destination parameters
                    found.append(parameter.fileFilter())
            found += [output.description() for output in algorithm.outputDefinitions()]
    finally:
        QgsApplication.processingRegistry().removeProvider(provider)
    return [text for text in found if text]


def collect_strings() -> List[str]:
    """Every string to translate, each once, in a stable order (algorithms first, then the sources)."""
    return list(dict.fromkeys(strings_from_algorithms() + strings_from_sources()))


Entry = Tuple[str, Optional[str]]  # (translation, type attribute: None = finished, "unfinished", "vanished")


def read_ts(path: str) -> Tuple[str, Dict[str, Entry]]:
    """The language and the messages of an existing .ts file (empty for a new one)."""
    language = os.path.splitext(os.path.basename(path))[0].split("_", 1)[-1]
    if not os.path.exists(path):
        return language, {}
    root = ET.parse(path).getroot()
    messages: Dict[str, Entry] = {}
    for message in root.iter("message"):
        translation = message.find("translation")
        messages[message.findtext("source", "")] = (translation.text or "", translation.get("type"))
    return root.get("language", language), messages


def merge(current: Iterable[str], existing: Dict[str, Entry]) -> Dict[str, Entry]:
    """Current strings with their translations (new ones unfinished), then the vanished ones."""
    merged: Dict[str, Entry] = {}
    for source in current:
        text, kind = existing.get(source, ("", "unfinished"))
        merged[source] = (text, "unfinished" if kind in ("vanished", "obsolete") or not text else kind)
    for source, (text, _) in existing.items():
        if source not in merged and text:
            merged[source] = (text, "vanished")
    return merged


def write_ts(path: str, language: str, messages: Dict[str, Entry]) -> None:
    """Write the .ts in Qt Linguist's layout (one context), atomically."""
    lines = ['<?xml version="1.0" encoding="utf-8"?>', "<!DOCTYPE TS>",
             f'<TS version="2.1" language="{language}" sourcelanguage="en">', "<context>",
             f"    <name>{CONTEXT}</name>"]
    for source, (text, kind) in messages.items():
        attribute = f' type="{kind}"' if kind else ""
        lines += ["    <message>", f"        <source>{escape(source)}</source>",
                  f"        <translation{attribute}>{escape(text)}</translation>", "    </message>"]
    lines += ["</context>", "</TS>", ""]
    partial = path + ".partial"
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    os.replace(partial, path)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ts", nargs="*", help="the .ts files (default: i18n/*.ts); a new name starts a language")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; fail when a string has no finished translation")
    args = parser.parse_args(argv)
    paths = args.ts or sorted(glob.glob(os.path.join(ROOT, "i18n", "*.ts")))

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    current = collect_strings()
    status = 0
    for path in paths:
        language, existing = read_ts(path)
        merged = merge(current, existing)
        missing = [source for source, (_, kind) in merged.items() if kind == "unfinished"]
        if args.check:
            if missing:
                status = 1
                print(f"{path}: {len(missing)} of {len(current)} strings have no finished translation "
                      "(run scripts/update_translations.py, then translate them in Qt Linguist or the .ts):")
                for source in missing:
                    print("  " + source.splitlines()[0][:100])
            continue
        write_ts(path, language, merged)
        print(f"{path}: {len(current)} strings, {len(missing)} to translate")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
