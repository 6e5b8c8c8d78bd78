#!/usr/bin/env bash
# Builds the gpubook agent that the app and the CLI upload to lab servers, once per
# architecture, for glibc 2.17 and newer (CentOS 7, Ubuntu 20.04, Debian 11, RHEL 8, ...):
#     dist/agents/x86_64/gpubook-agent
#     dist/agents/aarch64/gpubook-agent
# with cargo-zigbuild (zig as the cross linker against glibc 2.17's symbols), in the `agent`
# profile of Cargo.toml (release, stripped, sized for upload). NVML is still loaded at run
# time (nvml-wrapper dlopens libnvidia-ml.so.1), and glibc is linked dynamically.
#
# zig comes from PyPI's `ziglang` in a venv of its own, cargo-zigbuild from crates.io; both
# are installed on first use. Set GPUBOOK_AGENTS_OUT to put the builds elsewhere.
#   scripts/agents.sh            build both
#   scripts/agents.sh --check    build both, then check their glibc symbol versions
set -euo pipefail
cd "$(dirname "$0")/.."
out="${GPUBOOK_AGENTS_OUT:-dist/agents}"
target_dir="${CARGO_TARGET_DIR:-target}"

venv="${GPUBOOK_ZIG_VENV:-/var/tmp/gpubook-zig-venv}"
if ! "$venv/bin/python" -m ziglang version >/dev/null 2>&1; then
  command -v python3 >/dev/null 2>&1 || { echo "agents.sh: python3 is needed for zig (PyPI ziglang)" >&2; exit 1; }
  python3 -m venv "$venv" 2>/dev/null || {
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv
    python3 -m venv "$venv"
  }
  "$venv/bin/pip" install --quiet --disable-pip-version-check ziglang
fi
# cargo-zigbuild runs `python3 -m ziglang` when no `zig` is on PATH: the venv's python3 first.
export PATH="$venv/bin:$PATH"
command -v cargo-zigbuild >/dev/null 2>&1 || cargo install cargo-zigbuild --locked --quiet

arches=(x86_64 aarch64)
for arch in "${arches[@]}"; do
  rustup target list --installed | grep -qx "$arch-unknown-linux-gnu" || rustup target add "$arch-unknown-linux-gnu"
done

for arch in "${arches[@]}"; do
  echo "agents.sh: building $arch (glibc 2.17)"
  cargo zigbuild --quiet --profile agent -p gpubook-agent --target "$arch-unknown-linux-gnu.2.17"
  mkdir -p "$out/$arch"
  install -m 0755 "$target_dir/$arch-unknown-linux-gnu/agent/gpubook-agent" "$out/$arch/gpubook-agent"
  ls -l "$out/$arch/gpubook-agent"
done

if [[ "${1:-}" == "--check" ]]; then
  ./scripts/agents-check.sh "$out"
fi
