#!/usr/bin/env bash
# Installs what the calendar tests (crates/client/tests) use for real: Radicale and Xandikos
# (the two CalDAV servers each test starts on 127.0.0.1) and Python's icalendar (the independent parser), from
# PyPI into the Python found first; D-Bus and gnome-keyring (the keyring test starts its own
# session bus and an unlocked keyring) from apt. Then it checks each one once.
#
# Source it to get GPUBOOK_PYTHON (the Python that has the packages) and
# GPUBOOK_REQUIRE_SERVICES=1 (the tests then fail, not skip, when a part is missing):
#     . scripts/calendar-services.sh
set -euo pipefail

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

need=()
command -v dbus-daemon >/dev/null 2>&1 || need+=(dbus-daemon)
command -v dbus-send >/dev/null 2>&1 || need+=(dbus-bin)
command -v gnome-keyring-daemon >/dev/null 2>&1 || need+=(gnome-keyring)
command -v python3 >/dev/null 2>&1 || need+=(python3 python3-pip python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

py="${GPUBOOK_PYTHON:-$(command -v python3)}"
if ! "$py" -c 'import radicale, xandikos, icalendar' >/dev/null 2>&1; then
  # A Python that refuses system-wide pip (PEP 668, Debian's own) gets a venv of its own.
  if ! "$py" -m pip install --quiet --disable-pip-version-check radicale xandikos icalendar 2>/dev/null; then
    venv="${GPUBOOK_CALENDAR_VENV:-/var/tmp/gpubook-calendar-venv}"
    if ! "$py" -m venv "$venv" >/dev/null 2>&1; then
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv
      "$py" -m venv "$venv"
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check radicale xandikos icalendar
    py="$venv/bin/python"
  fi
fi

# The interpreter itself, not a launcher shim (pyenv's needs its own environment).
py="$("$py" -c 'import sys; print(sys.executable)')"
"$py" -c 'import radicale, xandikos, icalendar; print("calendar services: Radicale", radicale.VERSION, "Xandikos", ".".join(map(str, xandikos.__version__)), "and icalendar", icalendar.__version__)'
dbus-daemon --version | head -n 1
gnome-keyring-daemon --version 2>/dev/null | head -n 1 || true

export GPUBOOK_PYTHON="$py"
export GPUBOOK_REQUIRE_SERVICES=1
