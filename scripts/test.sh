#!/usr/bin/env bash
# Sets up and runs every test of gpubook, as CI does: formatting, clippy on all targets with
# warnings denied, the front end's tests, every Rust test (real Unix users, a real sshd, Radicale,
# gnome-keyring), the generated TypeScript types, and the desktop app driven end to end under
# Xvfb (tauri-driver + WebKitWebDriver, dunst on a D-Bus session). Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
# The tests' require-or-skip rule (crates/testkit): with GPUBOOK_REQUIRE_ROOT_TESTS set, a test
# that needs root fails instead of skipping; with GPUBOOK_REQUIRE_SERVICES, one that needs
# Radicale, gnome-keyring or sshd. As root both are set here, so nothing skips silently. CI
# (.ci/run) sets them before this runs; then running as anyone else is refused here, before
# any test, instead of failing test by test.
if [ "$(id -u)" -eq 0 ]; then
  export GPUBOOK_REQUIRE_ROOT_TESTS=1 GPUBOOK_REQUIRE_SERVICES=1
elif [ -n "${GPUBOOK_REQUIRE_ROOT_TESTS:-}" ] && [ "${GPUBOOK_REQUIRE_ROOT_TESTS}" != 0 ]; then
  echo "scripts/test.sh: GPUBOOK_REQUIRE_ROOT_TESTS is set, so the tests that need root must run," >&2
  echo "but this runs as $(id -un). Run it as root: sudo -E $0" >&2
  echo "(or unset GPUBOOK_REQUIRE_ROOT_TESTS to let those tests skip, each saying so)." >&2
  exit 1
fi
./scripts/setup-debian.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
export PATH="$HOME/.cargo/bin:$PATH"
echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== ui: install, type-check, unit tests, build"
(cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run --silent check && npm run --silent test && npm run --silent build)

echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

. ./scripts/calendar-services.sh # Radicale, icalendar, D-Bus, gnome-keyring; sets GPUBOOK_PYTHON, GPUBOOK_REQUIRE_SERVICES=1
. ./scripts/ssh-services.sh      # sshd and the OpenSSH client tools
. ./scripts/s3-services.sh       # moto's S3 server; sets GPUBOOK_MOTO_SERVER
. ./scripts/mail-services.sh     # aiosmtpd's SMTP server; sets GPUBOOK_MAIL_PYTHON
. ./scripts/slurm-services.sh    # slurmctld + slurmd (4 gres/gpu) with munge; sets SLURM_CONF, GPUBOOK_SLURM=1
echo "== cargo test"
cargo test --workspace 2>&1

echo "== generated TypeScript types are current"
cargo test -p gpubook-proto --features ts --test ts_bindings
cargo test -p gpubook-desktop --features ts --test ts_bindings

echo "== the desktop app, end to end"
need=()
for t in Xvfb:xvfb WebKitWebDriver:webkit2gtk-driver dunst:dunst dbus-monitor:dbus-bin dbus-launch:dbus-x11 import:imagemagick xwininfo:x11-utils gdbus:libglib2.0-bin; do
  command -v "${t%%:*}" >/dev/null 2>&1 || need+=("${t##*:}")
done
# The tray test's StatusNotifierWatcher (tests/e2e/sni_watcher.py) runs on the system's Python.
/usr/bin/python3 -c 'from gi.repository import Gio' 2>/dev/null || need+=(python3-gi)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
command -v tauri-driver >/dev/null 2>&1 || cargo install tauri-driver --locked --quiet
./scripts/app-e2e.sh
echo "== packages: build, install, run the app, remove; the portable agents" && ./scripts/package-test.sh
