#!/usr/bin/env bash
# `cargo check` (only: CI stays cheap) of the app's crates for the desktop platforms besides
# Linux. Windows (x86_64-pc-windows-gnu): core, proto, client, desktop and the CLI, with
# Debian's mingw-w64 as the C compiler of the bundled C parts (libssh2, OpenSSL, ring). A Mac
# (aarch64-apple-darwin): core, proto and client, with zig (PyPI's ziglang, the venv of
# scripts/agents.sh) as the C compiler; what blocks the desktop crate there is said in the
# README ("Desktop platforms").
set -euo pipefail
cd "$(dirname "$0")/.."

# Windows first: it needs no venv.
if ! command -v x86_64-w64-mingw32-gcc >/dev/null; then
  echo "cross-check: x86_64-w64-mingw32-gcc is missing (apt-get install gcc-mingw-w64-x86-64)" >&2
  exit 1
fi
rustup target list --installed | grep -qx x86_64-pc-windows-gnu || rustup target add x86_64-pc-windows-gnu
cargo check --quiet --target x86_64-pc-windows-gnu \
  -p gpubook-core -p gpubook-proto -p gpubook-client -p gpubook-desktop -p gpubook-cli -p gpubook-app
echo "cross-check: gpubook-core, -proto, -client, -desktop, -cli and the Tauri app check for x86_64-pc-windows-gnu"

venv="${GPUBOOK_ZIG_VENV:-/var/tmp/gpubook-zig-venv}"
[ -x "$venv/bin/python" ] && "$venv/bin/python" -m ziglang version >/dev/null 2>&1 || {
  python3 -m venv "$venv" && "$venv/bin/pip" install --quiet --disable-pip-version-check ziglang
}
rustup target list --installed | grep -qx aarch64-apple-darwin || rustup target add aarch64-apple-darwin
# cc-rs adds `-arch arm64` and `--target=arm64-apple-macosx`, which zig cc does not take.
cat > "$venv/bin/zigcc-aarch64-macos" <<SH
#!/bin/sh
skip=""
for a in "\$@"; do
  shift
  if [ -n "\$skip" ]; then skip=""; continue; fi
  case "\$a" in -arch) skip=1; continue ;; --target=*) continue ;; esac
  set -- "\$@" "\$a"
done
exec "$venv/bin/python" -m ziglang cc -target aarch64-macos "\$@"
SH
printf '#!/bin/sh\nexec "%s/bin/python" -m ziglang ar "$@"\n' "$venv" > "$venv/bin/zigar"
printf '#!/bin/sh\nexec "%s/bin/python" -m ziglang ranlib "$@"\n' "$venv" > "$venv/bin/zigranlib"
chmod +x "$venv/bin/zigcc-aarch64-macos" "$venv/bin/zigar" "$venv/bin/zigranlib"
export CC_aarch64_apple_darwin="$venv/bin/zigcc-aarch64-macos" AR_aarch64_apple_darwin="$venv/bin/zigar" \
  RANLIB_aarch64_apple_darwin="$venv/bin/zigranlib"
cargo check --quiet --target aarch64-apple-darwin -p gpubook-core -p gpubook-proto -p gpubook-client
echo "cross-check: gpubook-core, gpubook-proto and gpubook-client check for aarch64-apple-darwin"
