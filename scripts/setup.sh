#!/usr/bin/env bash
# Idempotent setup for a Debian 12 machine: Debian packages, the .venv, the plugin link.
# Every make target runs it first; when everything is in place it does nothing and takes ~1 s.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

# QGIS 3.22 LTR and its Python bindings; Xvfb for desktop screenshots; a C++ compiler and ninja
# for the optional compiled scan kernel; Qt's lrelease for translations; venv for ensurepip.
APT_PACKAGES=(qgis python3-qgis qgis-providers xvfb g++ ninja-build qttools5-dev-tools python3-venv)
# Overridable, e.g. to keep the venv elsewhere: CSSMAMBA_VENV, CSSMAMBA_REQUIREMENTS,
# CSSMAMBA_EXTRA_APT_PACKAGES (space-separated).
read -r -a extra_apt <<<"${CSSMAMBA_EXTRA_APT_PACKAGES:-}"
APT_PACKAGES+=("${extra_apt[@]}")
VENV="${CSSMAMBA_VENV:-$root/.venv}"
REQUIREMENTS="${CSSMAMBA_REQUIREMENTS:-$root/requirements.txt}"
STAMP="$VENV/.installed-requirements"

fail() { echo "setup: $*" >&2; exit 1; }

missing_packages() {
  local pkg
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
  done
}

install_debian_packages() {
  local missing
  mapfile -t missing < <(missing_packages)
  [ "${#missing[@]}" -eq 0 ] && return 0
  command -v apt-get >/dev/null || fail "these Debian packages are missing and apt-get is not available: ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || fail "these Debian packages are missing: ${missing[*]}. Install them as root: apt-get install --no-install-recommends ${missing[*]}"
    sudo="sudo"
  fi
  echo "setup: installing Debian packages: ${missing[*]}"
  local log; log=$(mktemp)
  if ! { $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    grep -E "^(E:|Err)" "$log" | tail -5 >&2
    rm -f "$log"
    fail "could not install the Debian package(s): ${missing[*]} (apt-get's errors above; check the package names and the network)."
  fi
  rm -f "$log"
  mapfile -t missing < <(missing_packages)
  [ "${#missing[@]}" -eq 0 ] || fail "apt-get finished but these Debian packages are still missing: ${missing[*]}"
}

requirements_hash() { cat "$REQUIREMENTS" constraints.txt | sha256sum | cut -d' ' -f1; }

build_venv() {
  if [ ! -x "$VENV/bin/python" ] || ! grep -q "include-system-site-packages = true" "$VENV/pyvenv.cfg" 2>/dev/null; then
    echo "setup: creating $VENV from /usr/bin/python3 with --system-site-packages"
    rm -rf "$VENV"
    /usr/bin/python3 -m venv --system-site-packages "$VENV" || fail "could not create the virtual environment $VENV (is python3-venv installed?)"
  fi
  [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(requirements_hash)" ] && return 0
  echo "setup: installing Python packages from $REQUIREMENTS into $VENV"
  local log; log=$(mktemp)
  if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REQUIREMENTS" -c constraints.txt >"$log" 2>&1; then
    local pkg
    pkg=$(grep -oE "(No matching distribution found for|Could not find a version that satisfies the requirement) [^ ]+" "$log" | head -1 | awk '{print $NF}')
    grep -E "^ERROR" "$log" | tail -5 >&2
    rm -f "$log"
    fail "pip could not install ${pkg:-the packages in $REQUIREMENTS}${pkg:+ (listed in $REQUIREMENTS)}; see pip's error above."
  fi
  rm -f "$log"
  "$VENV/bin/python" -c "import numpy, sys; sys.exit(int(numpy.__version__.split('.')[0]) >= 2)" \
    || fail "numpy >= 2 ended up in $VENV, but Debian's GDAL needs numpy 1.x: remove it with '$VENV/bin/pip uninstall numpy'"
  requirements_hash >"$STAMP"
}

install_debian_packages
build_venv
mkdir -p build/plugins
[ -L build/plugins/cssmamba ] || ln -sfn "$root" build/plugins/cssmamba
