#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian/Ubuntu machine, lint, then run it.
# System packages (Xvfb and the Qt xcb libraries) are installed only where missing; the pinned
# CPU torch is installed before the package so pip never pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="xvfb xauth libgl1 libegl1 libdbus-1-3 libfontconfig1 libxkbcommon-x11-0 libxcb-cursor0 \
libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 \
libxcb-xinerama0 libxcb-xfixes0"

missing=""
for p in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing system packages:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

PY=${PYTHON:-python3}
$PY -m pip install -q --disable-pip-version-check "torch==2.13.0"
$PY -m pip install -q --disable-pip-version-check -e ".[test]"

# lint first ([tool.ruff] in pyproject.toml): a style or pyflakes error fails in seconds, not after the suite
$PY -m ruff check src tests benchmarks scripts

unset QT_QPA_PLATFORM  # napari's canvas needs a real (virtual) X server: pytest-xvfb starts one
exec $PY -m pytest "$@"
