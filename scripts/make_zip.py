"""Build the installable plugin zip: the folder ``cssmamba/`` with only what QGIS needs."""

import argparse
import configparser
import glob
import os
import sys
import zipfile
from typing import List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INCLUDED_FILES = ["metadata.txt", "__init__.py", "plugin.py", "LICENSE", "README.md"]
INCLUDED_DIRS = ["engine", "provider", "ui", "resources", "i18n"]
SKIPPED_PARTS = {"__pycache__", "_build"}
SKIPPED_SUFFIXES = (".pyc", ".ts")  # translations ship compiled (.qm)


def plugin_files():
    """Yield (path on disk, path in the zip) for every file the plugin needs."""
    for name in INCLUDED_FILES:
        yield os.path.join(ROOT, name), os.path.join("cssmamba", name)
    for folder in INCLUDED_DIRS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, folder)):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_PARTS)
            for filename in sorted(filenames):
                if filename.endswith(SKIPPED_SUFFIXES):
                    continue
                path = os.path.join(dirpath, filename)
                yield path, os.path.join("cssmamba", os.path.relpath(path, ROOT))


def stale_translations() -> List[str]:
    """The .ts files whose compiled .qm is missing or older: a zip without them would be silently English."""
    return [ts for ts in sorted(glob.glob(os.path.join(ROOT, "i18n", "*.ts")))
            if not os.path.exists(ts[:-3] + ".qm") or os.path.getmtime(ts[:-3] + ".qm") < os.path.getmtime(ts)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="dist", help="output folder (default dist)")
    args = parser.parse_args()
    stale = stale_translations()
    if stale:
        print(f"make_zip: the translations {', '.join(map(os.path.basename, stale))} are not compiled or out of "
              "date: run 'make i18n' (or 'make zip', which does)", file=sys.stderr)
        return 1
    metadata = configparser.ConfigParser()
    metadata.read(os.path.join(ROOT, "metadata.txt"))
    version = metadata["general"]["version"]
    os.makedirs(args.out, exist_ok=True)
    target = os.path.join(args.out, f"cssmamba-{version}.zip")
    partial = target + ".partial"
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, name in plugin_files():
            archive.write(path, name)
    os.replace(partial, target)
    print(target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
