#!/usr/bin/env bash
# Installs what is missing (scripts/app-setup.sh), builds and opens the desktop app. It starts a local agent for "This computer"
# (real GPUs through NVML, else 4 simulated ones) unless one already listens.
#   scripts/app-run.sh [--release]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/app-setup.sh
scripts/app-build.sh "$@"
profile=debug
[[ "${1:-}" == "--release" ]] && profile=release
dir="${CARGO_TARGET_DIR:-$PWD/target}/$profile"
GPUBOOK_AGENT_BINARY="${GPUBOOK_AGENT_BINARY:-$dir/gpubook-agent}" exec "$dir/gpubook-app"
