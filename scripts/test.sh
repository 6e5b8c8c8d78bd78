#!/usr/bin/env bash
# Sets up and runs every test of gpubook, as CI does: formatting, clippy on all targets with
# warnings denied, and all tests, including the ones that need real Unix users (run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-debian.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
# Tests that need root (real Unix users) fail rather than skip when this is set.
if [ "$(id -u)" -eq 0 ]; then export GPUBOOK_REQUIRE_ROOT_TESTS=1; fi
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
. ./scripts/calendar-services.sh # Radicale, icalendar, D-Bus, gnome-keyring; sets GPUBOOK_PYTHON, GPUBOOK_REQUIRE_SERVICES=1
echo "== cargo test"
cargo test --workspace 2>&1
cargo test -p gpubook-proto --features ts --test ts_bindings
