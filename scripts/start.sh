#!/usr/bin/env bash
# Sets up and starts gpubook on "this computer": installs what is missing, builds the desktop
# app, the agent and the CLI, and opens the app. The app starts a local agent for "This
# computer" (real GPUs through NVML where an NVIDIA driver is present, otherwise four GPUs
# labelled "Simulated GPU N") unless one already runs. Without a display (a server, a
# container) the app runs on a virtual one (Xvfb) and the script says how to look at it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-debian.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
./scripts/app-build.sh --release
bin="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release"
export PATH="$bin:$PATH"
export GPUBOOK_AGENT_BINARY="$bin/gpubook-agent"

if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
  if ! command -v Xvfb >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get install -y -qq --no-install-recommends xvfb imagemagick >/dev/null
  fi
  export DISPLAY=:77
  if ! [ -e /tmp/.X11-unix/X77 ]; then
    nohup Xvfb :77 -screen 0 1600x1000x24 >/dev/null 2>&1 &
    for _ in $(seq 50); do [ -e /tmp/.X11-unix/X77 ] && break; sleep 0.1; done
  fi
  echo "No display here: the app runs on the virtual display :77."
  echo "Look at it with: DISPLAY=:77 import -window root shot.png"
fi

log="${XDG_STATE_HOME:-$HOME/.local/state}/gpubook/app.log"
mkdir -p "$(dirname "$log")"
nohup "$bin/gpubook-app" >"$log" 2>&1 &
echo "Started the gpubook app (pid $!); its log is $log"
for _ in $(seq 150); do gpubook whoami >/dev/null 2>&1 && break; sleep 0.2; done

demo() { echo; echo "\$ $*"; "$@" || true; }
demo gpubook whoami
demo gpubook gpus
echo
echo "Book by dragging across GPUs on the calendar, or from a shell: gpubook --help"
echo "gpubook, gpubook-agent and gpubook-app are in $bin."
