#!/usr/bin/env bash
# Start QGIS desktop with this plugin enabled in a profile kept inside the repository.
# Arguments are passed on to qgis (e.g. layers to open).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/qgis_env.sh
. "$root/scripts/qgis_env.sh"
unset QT_QPA_PLATFORM   # a desktop session needs a real display
ini="$QGIS_CUSTOM_CONFIG_PATH/profiles/default/QGIS/QGIS3.ini"
if ! grep -qx 'cssmamba=true' "$ini" 2>/dev/null; then
  QT_QPA_PLATFORM=offscreen qgis_process.bin plugins enable cssmamba >/dev/null 2>&1 || true
fi
exec qgis --noversioncheck "$@"
