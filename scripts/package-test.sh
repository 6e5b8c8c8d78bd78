#!/usr/bin/env bash
# The packages, tested as a person and an admin would use them, on this machine (as root):
#  1. scripts/package.sh --debug builds dist/ (the app and CLI of the test build, stripped;
#     the portable agents);
#  2. the agent builds: glibc 2.17 symbols at most, each serves whoami (aarch64 under
#     qemu-aarch64), and the x86_64 one serves in a Debian 11 root (glibc 2.31, chroot);
#  3. the app .deb: dpkg -i, `gpubook --version`, the app from /usr/bin under Xvfb shows its
#     window, the desktop entry and icons are there; dpkg -r leaves nothing under
#     /usr/lib/gpubook and the person's data (~/.config/gpubook, ~/.local/state/gpubook) alone;
#  4. the agent .deb beside the app's (no file owned twice): installed, enabled, removed; the
#     admin's policy and /var/lib/gpubook are left alone;
#  5. scripts/cross-check.sh: the app's crates check for x86_64-pc-windows-gnu (with the CLI) and
#     the client's for aarch64-apple-darwin.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
fail() { echo "package-test: FAIL: $*" >&2; exit 1; }
step() { echo "== package-test: $* ($((SECONDS - start)) s)"; }
need=()
for t in Xvfb:xvfb xwininfo:x11-utils dbus-run-session:dbus-daemon; do
  command -v "${t%%:*}" >/dev/null 2>&1 || need+=("${t##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

step "building the packages"
./scripts/package.sh --debug
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | sed -n 1p)"
app_deb="$(ls dist/gpubook_"${version}"_amd64.deb)"
agent_deb="dist/gpubook-agent_${version}_amd64.deb"
(cd dist && sha256sum -c --quiet SHA256SUMS) || fail "SHA256SUMS does not match dist/"

step "agent builds: symbols, qemu-aarch64, Debian 11 chroot"
./scripts/agents-check.sh dist/agents --debian11 "$(./scripts/debian11-root.sh)"

step "the client's crates for a Mac"
./scripts/cross-check.sh

work="$(mktemp -d /tmp/gpubook-package-test.XXXXXX)"
xvfb_pid=""
cleanup() {
  [ -n "$xvfb_pid" ] && kill "$xvfb_pid" 2>/dev/null
  dpkg -r gpubook gpubook-agent >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
# The person's data from before the install: it must outlive the package.
export HOME="$work/home"
mkdir -p "$HOME/.config/gpubook" "$HOME/.local/state/gpubook"
echo "mine" > "$HOME/.config/gpubook/servers.toml.keep"
echo "mine" > "$HOME/.local/state/gpubook/keep"

step "app .deb: install"
dpkg -i "$app_deb" >/dev/null || { apt-get install -f -y -qq >/dev/null; dpkg -i "$app_deb" >/dev/null; }
said="$(/usr/bin/gpubook --version)"
[ "$said" = "gpubook $version" ] || fail "gpubook --version said: $said"
for f in /usr/bin/gpubook-app /usr/lib/gpubook/agents/x86_64/gpubook-agent /usr/lib/gpubook/agents/aarch64/gpubook-agent; do
  [ -x "$f" ] || fail "$f is not in the package"
done
desktop="$(dpkg -L gpubook | grep '/usr/share/applications/.*\.desktop$')" || fail "no desktop entry"
grep -q '^Exec=gpubook-app' "$desktop" || fail "$desktop does not start gpubook-app: $(cat "$desktop")"
dpkg -L gpubook | grep '/usr/share/icons/hicolor/.*/apps/gpubook-app.png' >/dev/null || fail "no icons"
/usr/lib/gpubook/agents/x86_64/gpubook-agent --version >/dev/null

step "app .deb: the app from /usr/bin under Xvfb"
Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp 3>"$work/display" 2>/dev/null &
xvfb_pid=$!
for _ in $(seq 50); do [ -s "$work/display" ] && break; sleep 0.1; done
export DISPLAY=":$(cat "$work/display")"
# Its own session bus (notifications, keyring); This computer falls back to simulated GPUs.
dbus-run-session -- /usr/bin/gpubook-app >"$work/app.log" 2>&1 &
app_pid=$!
shown=""
for _ in $(seq 300); do
  if xwininfo -root -tree 2>/dev/null | grep '"gpubook"' >/dev/null; then shown=yes; break; fi
  kill -0 "$app_pid" 2>/dev/null || break
  sleep 0.1
done
# The agent it started for This computer runs the package's own build, and outlives the app.
package_agents() {
  for link in /proc/[0-9]*/exe; do
    case "$(readlink "$link" 2>/dev/null)" in
      /usr/lib/gpubook/agents/*) p=${link#/proc/}; echo "${p%/exe}" ;;
    esac
  done
}
for _ in $(seq 100); do [ -n "$(package_agents)" ] && break; sleep 0.1; done
kill "$app_pid" 2>/dev/null || true
wait "$app_pid" 2>/dev/null || true
[ -n "$shown" ] || { cat "$work/app.log" >&2; fail "the installed app showed no gpubook window"; }
echo "package-test: the installed app showed its window on $DISPLAY"
[ -n "$(package_agents)" ] || fail "the installed app started no agent for This computer"
echo "package-test: its agent for This computer runs (pid $(package_agents | tr '\n' ' '))"

step "agent .deb beside the app's"
mkdir -p /var/lib/gpubook && echo "bookings" > /var/lib/gpubook/package-test.keep
echo "package-test: systemctl is-system-running: $(systemctl is-system-running 2>&1 || true)"
dpkg -i "$agent_deb" >/dev/null
[ -x /usr/bin/gpubook-agent ] || fail "no /usr/bin/gpubook-agent"
grep -q '^ExecStart=/usr/bin/gpubook-agent serve --shared' /usr/lib/systemd/system/gpubook-agent.service \
  || fail "the unit does not run /usr/bin/gpubook-agent"
grep -q '^# ' /etc/gpubook/policy.toml || fail "no commented policy"
echo "package-test: gpubook-agent.service is $(systemctl is-enabled gpubook-agent.service 2>&1 || true) after install"
/usr/bin/gpubook-agent --version >/dev/null
echo "# the admin's edit" >> /etc/gpubook/policy.toml
# Again: the upgrade path of the maintainer scripts; the admin's policy is kept.
dpkg -i "$agent_deb" >/dev/null
grep -q "the admin's edit" /etc/gpubook/policy.toml || fail "an upgrade lost the admin's policy"
dpkg -r gpubook-agent >/dev/null
[ ! -e /usr/bin/gpubook-agent ] || fail "/usr/bin/gpubook-agent left after removal"
[ ! -e /usr/lib/systemd/system/gpubook-agent.service ] || fail "the unit left after removal"
grep -q "the admin's edit" /etc/gpubook/policy.toml || fail "removal lost the admin's policy"
[ -f /var/lib/gpubook/package-test.keep ] || fail "removal touched /var/lib/gpubook"
dpkg --purge gpubook-agent >/dev/null
rm -f /var/lib/gpubook/package-test.keep
rmdir /var/lib/gpubook 2>/dev/null || true

step "app .deb: remove"
dpkg -r gpubook >/dev/null
# Its prerm stopped the agents it had started (src-tauri/packaging/app-prerm.sh).
for _ in $(seq 100); do [ -z "$(package_agents)" ] && break; sleep 0.1; done
[ -z "$(package_agents)" ] || fail "the app's agent still runs after removal: pid $(package_agents)"
[ ! -e /usr/lib/gpubook ] || fail "files left under /usr/lib/gpubook: $(find /usr/lib/gpubook)"
[ ! -e /usr/bin/gpubook ] && [ ! -e /usr/bin/gpubook-app ] || fail "binaries left in /usr/bin"
[ "$(cat "$HOME/.config/gpubook/servers.toml.keep")" = mine ] || fail "removal touched ~/.config/gpubook"
[ "$(cat "$HOME/.local/state/gpubook/keep")" = mine ] || fail "removal touched ~/.local/state/gpubook"
step "ok"
