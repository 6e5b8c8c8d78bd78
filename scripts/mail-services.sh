#!/usr/bin/env bash
# Installs what the notification tests (crates/agent/tests/notify_delivery.rs) use for real:
# aiosmtpd's SMTP server (from PyPI, into a venv of its own), which each test starts on
# 127.0.0.1 and whose mails the test reads with Python's own e-mail parser. Then it checks it
# once.
#
# Source it to get GPUBOOK_MAIL_PYTHON (the venv's python, with aiosmtpd); the tests then fail,
# not skip, when it is missing:
#     . scripts/mail-services.sh
set -euo pipefail

venv="${GPUBOOK_MAIL_VENV:-/var/tmp/gpubook-mail-venv}"
if ! "$venv/bin/python" -c 'import aiosmtpd' >/dev/null 2>&1; then
  py="$(command -v python3)"
  if ! "$py" -m venv "$venv" >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv
    "$py" -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check aiosmtpd
fi
"$venv/bin/python" -c 'import aiosmtpd; print("mail services: aiosmtpd", aiosmtpd.__version__)'

export GPUBOOK_MAIL_PYTHON="$venv/bin/python"
