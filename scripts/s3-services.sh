#!/usr/bin/env bash
# Installs what the S3 tests of stage-in and save (crates/agent/tests/s3_transfer.rs) use for
# real: moto's S3-compatible server (`moto_server`, from PyPI, into a venv of its own), which
# each test starts on 127.0.0.1 with its own bucket. Then it checks it once.
#
# Source it to get GPUBOOK_MOTO_SERVER (the server's command); the tests then fail, not skip,
# when it is missing:
#     . scripts/s3-services.sh
set -euo pipefail

venv="${GPUBOOK_S3_VENV:-/var/tmp/gpubook-s3-venv}"
if ! "$venv/bin/python" -c 'import moto.server' >/dev/null 2>&1; then
  py="$(command -v python3)"
  if ! "$py" -m venv "$venv" >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv
    "$py" -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]'
fi
"$venv/bin/python" -c 'import moto; print("s3 services: moto", moto.__version__)'

export GPUBOOK_MOTO_SERVER="$venv/bin/moto_server"
