#!/usr/bin/env bash
# Start QGIS desktop with this plugin enabled in a profile kept inside the repository.
# Arguments are passed on to qgis (e.g. layers to open).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
profile_dir="$root/.qgis-profile-desktop"
# shellcheck source=scripts/qgis_env.sh
. "$root/scripts/qgis_env.sh"
unset QT_QPA_PLATFORM   # a desktop session needs a real display
enable_plugin
exec qgis --noversioncheck "$@"
