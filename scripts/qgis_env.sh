# Sourced by scripts that start QGIS (qgis_process.sh, run_qgis.sh): the plugin on the plugin
# path, a profile kept inside the repository, and the venv's packages (torch, …) visible to the
# Python that QGIS embeds. Expects $root to be the repository root.
plugin_dir="$root/build/plugins"
mkdir -p "$plugin_dir"
# QGIS names a plugin after its folder; the repository root is the plugin folder, so link it.
[ -L "$plugin_dir/cssmamba" ] || ln -sfn "$root" "$plugin_dir/cssmamba"
export QGIS_PLUGINPATH="$plugin_dir"
# qgis_process and the tests use .qgis-profile; QGIS desktop (run_qgis.sh) passes its own profile, since
# a desktop start switches on QGIS's GRASS and SAGA plugins, which then make every qgis_process run warn.
export QGIS_CUSTOM_CONFIG_PATH="${profile_dir:-$root/.qgis-profile}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$root/.qgis-profile/runtime}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
if [ ! -x "$root/.venv/bin/python" ]; then
  echo "The project's Python environment is missing: run 'make setup' first." >&2
  exit 1
fi
venv_site=$("$root/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
export PYTHONPATH="$venv_site${PYTHONPATH:+:$PYTHONPATH}"

# Enable the plugin in the profile once (qgis_process and QGIS desktop read the same setting).
enable_plugin() {
  local ini="$QGIS_CUSTOM_CONFIG_PATH/profiles/default/QGIS/QGIS3.ini"
  grep -qx 'cssmamba=true' "$ini" 2>/dev/null && return 0
  QT_QPA_PLATFORM=offscreen qgis_process.bin plugins enable cssmamba >/dev/null 2>&1 || {
    echo "qgis_process could not enable the cssmamba plugin; run: QGIS_PLUGINPATH=$QGIS_PLUGINPATH qgis_process.bin plugins enable cssmamba" >&2
    return 1
  }
}
