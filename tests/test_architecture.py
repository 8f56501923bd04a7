"""The engine must stay free of QGIS and Qt, and importable as ``engine`` and as ``cssmamba.engine``."""

import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENGINE = os.path.join(ROOT, "engine")
FORBIDDEN = ("qgis", "PyQt5", "PyQt6", "processing", "sip")


def engine_imports():
    """Yield (file, line, imported module) for every import statement under engine/."""
    for dirpath, _, filenames in os.walk(ENGINE):
        for name in filenames:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                with open(path, encoding="utf-8") as handle:
                    tree = ast.parse(handle.read(), path)
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import):
                        for alias in node.names:
                            yield path, node.lineno, alias.name, 0
                    elif isinstance(node, ast.ImportFrom):
                        yield path, node.lineno, node.module or "", node.level


def test_engine_never_imports_qgis_qt_or_processing():
    offenders = [f"{os.path.relpath(p, ROOT)}:{line} imports {mod}" for p, line, mod, level in engine_imports()
                 if level == 0 and mod.split(".")[0] in FORBIDDEN]
    assert not offenders, "engine/ must not depend on QGIS or Qt:\n" + "\n".join(offenders)


def test_engine_imports_itself_only_relatively():
    offenders = [f"{os.path.relpath(p, ROOT)}:{line} imports {mod}" for p, line, mod, level in engine_imports()
                 if level == 0 and mod.split(".")[0] == "engine"]
    assert not offenders, "use relative imports inside engine/ so it also works as <plugin>.engine:\n" + "\n".join(offenders)


def test_architecture_check_catches_a_qgis_import(tmp_path, monkeypatch):
    bad = tmp_path / "engine"
    bad.mkdir()
    (bad / "leak.py").write_text("from qgis.core import QgsRasterLayer\n")
    monkeypatch.setattr(sys.modules[__name__], "ENGINE", str(bad))
    assert any(mod == "qgis.core" for _, _, mod, _ in engine_imports())


def test_engine_imports_without_qgis_in_a_fresh_interpreter():
    code = ("import sys, engine.selfcheck, engine.data.sample, engine.cli; "
            "leaked = [m for m in sys.modules if m.split('.')[0] in ('qgis', 'PyQt5', 'processing')]; "
            "print(', '.join(leaked)); sys.exit(1 if leaked else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, f"importing the engine pulled in {result.stdout.strip()} {result.stderr}"


def test_engine_works_as_a_subpackage_of_the_plugin(plugin_module):
    from cssmamba.engine.data import sample

    assert sample.__name__ == "cssmamba.engine.data.sample"
