#!/usr/bin/env bash
# A display for napari on a Linux machine without a desktop (a server, a container, CI):
# a virtual X server (Xvfb), Mesa's OpenGL and the X libraries that Qt 6 loads. The tests
# start Xvfb themselves (pytest-xvfb); `xvfb-run -a napari-domain-adapt demo` runs the demo.
# Debian and Ubuntu; run as root or as a user who may sudo.
set -euo pipefail

if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: this script uses apt-get (Debian, Ubuntu); install the same packages with your" \
    "system's package manager: Xvfb, xauth, Mesa (libGL, libEGL, DRI drivers), libxkbcommon-x11," \
    "xcb-util-cursor, -image, -keysyms, -renderutil, -wm, dbus, fontconfig" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends \
  xvfb xauth libgl1 libegl1 libgl1-mesa-dri libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 \
  libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 \
  libxcb-shape0 libxcb-cursor0 libdbus-1-3 libfontconfig1 >/dev/null
echo "installed: Xvfb, Mesa and the X libraries Qt needs"
