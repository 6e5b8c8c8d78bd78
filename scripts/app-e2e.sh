#!/usr/bin/env bash
# The desktop app's end-to-end tests: builds the UI and the app (scripts/app-build.sh), then
# drives it with tauri-driver + WebKitWebDriver under Xvfb against real agents with simulated
# GPUs, a real D-Bus session bus and dunst (tests/e2e/tests/app.rs starts them all), then
# adds a lab server over SSH (tests/e2e/tests/ssh_app.rs).
# Screenshots go to $GPUBOOK_SCREENSHOTS (default target/screenshots).
# With GPUBOOK_REQUIRE_SERVICES=1 a missing tool fails the run instead of skipping it.
#   scripts/app-e2e.sh            the debug build
#   scripts/app-e2e.sh --release  the release build: the figures BENCHMARKS.md gives
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$PWD/target}"
export PATH="$HOME/.cargo/bin:$PATH"
missing=()
for t in Xvfb dbus-daemon dbus-send dbus-monitor gdbus dunst WebKitWebDriver tauri-driver runuser; do
  command -v "$t" >/dev/null || missing+=("$t")
done
if ((${#missing[@]})); then
  msg="app-e2e: missing ${missing[*]} (scripts/setup-debian.sh; cargo install tauri-driver --locked)"
  if [[ "${GPUBOOK_REQUIRE_SERVICES:-}" == 1 ]]; then echo "$msg" >&2; exit 1; fi
  echo "SKIPPED $msg"; exit 0
fi
profile=debug
args=()
if [[ "${1:-}" == "--release" ]]; then
  profile=release
  args=(--release)
fi
scripts/app-build.sh "${args[@]}"
export GPUBOOK_E2E=1
export GPUBOOK_APP_BINARY="$target/$profile/gpubook-app"
export GPUBOOK_AGENT_BINARY="$target/$profile/gpubook-agent"
export GPUBOOK_CLI_BINARY="$target/$profile/gpubook"
export GPUBOOK_SCREENSHOTS="${GPUBOOK_SCREENSHOTS:-$PWD/target/screenshots}"
# The baseline of the app's memory: an empty Tauri window (src-tauri/examples/empty-window.rs).
cargo build "${args[@]}" -p gpubook-app --example empty-window
export GPUBOOK_EMPTY_WINDOW_BINARY="$target/$profile/examples/empty-window"
cargo test -p gpubook-e2e --test app -- --nocapture
# The way to a lab server, clicked through: a real sshd on 127.0.0.1, a real Unix user, a
# D-Bus session with gnome-keyring (tests/e2e/tests/ssh_app.rs; root, scripts/ssh-services.sh
# and scripts/calendar-services.sh install the parts). Screenshots in $GPUBOOK_SCREENSHOTS/ssh.
cargo test -p gpubook-e2e --test ssh_app -- --nocapture
echo "app-e2e: screenshots in $GPUBOOK_SCREENSHOTS"
