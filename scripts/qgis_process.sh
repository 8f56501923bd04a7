#!/usr/bin/env bash
# Run qgis_process with this plugin loaded, e.g. `scripts/qgis_process.sh list`.
# Calls qgis_process.bin: Debian's qgis_process wrapper fails on QGIS 3.22 (--noversioncheck).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/qgis_env.sh
. "$root/scripts/qgis_env.sh"
export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
enable_plugin
exec qgis_process.bin "$@"
