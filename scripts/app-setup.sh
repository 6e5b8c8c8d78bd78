#!/usr/bin/env bash
# What the desktop app needs on Debian/Ubuntu to build, run and be tested end to end.
set -euo pipefail
apt-get update
apt-get install -y --no-install-recommends libwebkit2gtk-4.1-dev libayatana-appindicator3-dev \
  librsvg2-dev libxdo-dev libssl-dev xvfb webkit2gtk-driver dunst dbus-x11 imagemagick nodejs npm
command -v tauri-driver >/dev/null || cargo install tauri-driver --locked
