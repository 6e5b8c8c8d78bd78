#!/usr/bin/env bash
# Installs what the desktop app needs on Debian/Ubuntu to build and run (and, with --e2e, to
# be tested end to end: Xvfb, WebKitWebDriver, dunst, D-Bus tools, tauri-driver).
set -euo pipefail
sudo=""
[[ "$(id -u)" -ne 0 ]] && sudo=sudo
pkgs=(libwebkit2gtk-4.1-dev libayatana-appindicator3-dev librsvg2-dev libxdo-dev libssl-dev)
command -v npm >/dev/null || pkgs+=(nodejs npm)
[[ "${1:-}" == "--e2e" ]] && pkgs+=(xvfb webkit2gtk-driver dunst dbus-x11 x11-utils imagemagick libglib2.0-bin python3-gi)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [[ "${1:-}" == "--e2e" ]] && ! command -v tauri-driver >/dev/null; then
  cargo install tauri-driver --locked
fi
