#!/usr/bin/env bash
# Builds gpubook's Linux packages into dist/, with dist/SHA256SUMS:
#   gpubook_VERSION_ARCH.deb, gpubook-VERSION-1.ARCH.rpm   the desktop app (Tauri's bundler):
#       /usr/bin/gpubook-app, /usr/bin/gpubook (the CLI), the agent builds it uploads in
#       /usr/lib/gpubook/agents/{x86_64,aarch64}/gpubook-agent, desktop entry and icons
#   gpubook-agent_VERSION_{amd64,arm64}.deb, gpubook-agent-VERSION-1.{x86_64,aarch64}.rpm
#       the system agent for servers (scripts/package-agent.sh)
#   agents/{x86_64,aarch64}/gpubook-agent                   the portable agent builds
#
#   scripts/package.sh            release build of the app and the CLI
#   scripts/package.sh --debug    the debug build (CI: already built by the tests), stripped
#   scripts/package.sh --agent    only the agent builds and the agent packages
# The agents are always the size-tuned glibc 2.17 builds of scripts/agents.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
only_agent=false
for a in "$@"; do
  case "$a" in
    --debug) profile=debug ;;
    --agent) only_agent=true ;;
    *) echo "package.sh: unknown option $a" >&2; exit 2 ;;
  esac
done
target_dir="${CARGO_TARGET_DIR:-target}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | sed -n 1p)"
mkdir -p dist
rm -f dist/*.deb dist/*.rpm dist/SHA256SUMS

./scripts/agents.sh
./scripts/package-agent.sh "$version"

if ! $only_agent; then
  need=()
  command -v rpmbuild >/dev/null 2>&1 || need+=(rpm)
  command -v strip >/dev/null 2>&1 || need+=(binutils)
  if [ ${#need[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
  fi
  # Tauri's CLI from npm (a prebuilt binary in the registry package), kept out of ui/.
  tauri_dir="${GPUBOOK_TAURI_CLI:-/var/tmp/gpubook-tauri-cli}"
  if [ ! -x "$tauri_dir/node_modules/.bin/tauri" ]; then
    mkdir -p "$tauri_dir"
    npm install --prefix "$tauri_dir" --no-audit --no-fund --loglevel=error @tauri-apps/cli@2
  fi
  if [ "$profile" = release ]; then ./scripts/app-build.sh --release; else ./scripts/app-build.sh; fi
  # The bundler takes the app from TARGET/PROFILE: a stripped copy in a target dir of its own
  # (the shared build stays as it is; a debug build carries hundreds of MB of debug info).
  bundle_target="$PWD/dist/stage/target"
  mkdir -p "$bundle_target/$profile"
  strip -o "$bundle_target/$profile/gpubook-app" "$target_dir/$profile/gpubook-app"
  strip -o dist/stage/gpubook "$target_dir/$profile/gpubook"
  flag=()
  [ "$profile" = debug ] && flag=(--debug)
  (cd src-tauri && CARGO_TARGET_DIR="$bundle_target" "$tauri_dir/node_modules/.bin/tauri" bundle "${flag[@]}" --bundles deb,rpm)
  cp "$bundle_target/$profile/bundle/deb/"*.deb "$bundle_target/$profile/bundle/rpm/"*.rpm dist/
fi

(cd dist && sha256sum ./*.deb ./*.rpm agents/*/gpubook-agent | sed 's| \./| |' > SHA256SUMS)
echo "package.sh: dist/"
ls -l dist/*.deb dist/*.rpm
