#!/usr/bin/env bash
# Run qgis_process with this plugin loaded, e.g. `scripts/qgis_process.sh list`.
# Calls qgis_process.bin: Debian's qgis_process wrapper fails on QGIS 3.22 (--noversioncheck).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/qgis_env.sh
. "$root/scripts/qgis_env.sh"
export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
ini="$QGIS_CUSTOM_CONFIG_PATH/profiles/default/QGIS/QGIS3.ini"
if ! grep -qx 'cssmamba=true' "$ini" 2>/dev/null; then
  qgis_process.bin plugins enable cssmamba >/dev/null 2>&1 || {
    echo "qgis_process could not enable the cssmamba plugin; run: QGIS_PLUGINPATH=$QGIS_PLUGINPATH qgis_process.bin plugins enable cssmamba" >&2
    exit 1
  }
fi
exec qgis_process.bin "$@"
