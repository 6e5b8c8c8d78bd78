#!/usr/bin/env bash
# Sets up and starts gpubook on "this computer": builds it, starts a local agent (real GPUs
# through NVML where an NVIDIA driver is present, otherwise four clearly labelled simulated
# GPUs), then shows a short demo of the gpubook CLI against it. The agent keeps running.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-debian.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --quiet -p gpubook-agent -p gpubook-cli
bin="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release"
export PATH="$bin:$PATH"

state="${XDG_STATE_HOME:-$HOME/.local/state}/gpubook"
gpus="sim:4"
if [ -e /dev/nvidia0 ] || command -v nvidia-smi >/dev/null 2>&1; then gpus="nvml"; fi
if gpubook whoami >/dev/null 2>&1; then
  echo "A gpubook agent is already running."
else
  mkdir -p "$state"
  nohup gpubook-agent serve --state-dir "$state" --gpus "$gpus" >"$state/agent.log" 2>&1 &
  echo $! >"$state/agent.pid"
  for _ in $(seq 50); do gpubook whoami >/dev/null 2>&1 && break; sleep 0.1; done
  echo "Started gpubook-agent ($gpus); its log is $state/agent.log"
fi

demo() { echo; echo "\$ $*"; "$@" || true; }
demo gpubook whoami
demo gpubook gpus
demo gpubook book --gpu 0,1 --start "+1h" --for 3h --title "demo: two GPUs this afternoon"
demo gpubook book --count 2 --asap --for 2h --title "demo: queued, as soon as possible"
demo gpubook ls
demo gpubook policy
echo
echo "gpubook and gpubook-agent are in $bin. Try: gpubook --help"
echo "Stop the agent with: kill \$(cat $state/agent.pid)"
