#!/usr/bin/env bash
# Checks the agent builds of scripts/agents.sh as a lab server would run them:
#  - the highest GLIBC_ symbol version each needs (objdump -T) is at most 2.17, glibc is
#    linked dynamically and NVML is not linked (nvml-wrapper dlopens it at run time);
#  - each is under 10 MB;
#  - each serves: `serve --gpus sim:2`, then the real CLI (`gpubook --server unix:SOCKET
#    whoami`) over its socket; the aarch64 one under qemu-aarch64 (qemu-user) with Debian's
#    aarch64 libc (libc6-arm64-cross) as its root;
#  - with --debian11 ROOT: the x86_64 build serves inside a Debian 11 root (glibc 2.31,
#    made by scripts/debian11-root.sh), entered with chroot.
# Usage: scripts/agents-check.sh [DIR] [--debian11 ROOT]   (DIR: dist/agents)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="dist/agents"
root=""
while [ $# -gt 0 ]; do
  case "$1" in
    --debian11) root="$2"; shift 2 ;;
    *) dir="$1"; shift ;;
  esac
done
target_dir="${CARGO_TARGET_DIR:-target}"
cli="${GPUBOOK_CLI:-$target_dir/debug/gpubook}"
[ -x "$cli" ] || cargo build --quiet -p gpubook-cli
need=()
command -v objdump >/dev/null 2>&1 || need+=(binutils)
command -v qemu-aarch64 >/dev/null 2>&1 || need+=(qemu-user)
[ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] || need+=(libc6-arm64-cross)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

fail() { echo "agents-check: FAIL: $*" >&2; exit 1; }
work="$(mktemp -d /tmp/gpubook-agents-check.XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# serve NAME SOCKET COMMAND...: starts an agent, waits for its socket, asks whoami through it.
serve() {
  local name="$1" sock="$2"; shift 2
  "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
  local pid=$! i=0
  while [ ! -S "$sock" ]; do
    kill -0 "$pid" 2>/dev/null || { cat "$work/$name.log" >&2; fail "$name: the agent stopped at start"; }
    i=$((i + 1)); [ $i -le 300 ] || { cat "$work/$name.log" >&2; fail "$name: no socket within 30 s"; }
    sleep 0.1
  done
  local said
  said="$("$cli" --server "unix:$sock" whoami 2>&1)" || { echo "$said" >&2; fail "$name: whoami failed"; }
  grep -q "$(id -un)" <<<"$said" || { echo "$said" >&2; fail "$name: whoami does not name $(id -un)"; }
  echo "agents-check: $name serves: $(echo "$said" | tr '\n' ' ')"
  kill "$pid"
}

for arch in x86_64 aarch64; do
  bin="$dir/$arch/gpubook-agent"
  [ -x "$bin" ] || fail "no $bin (run scripts/agents.sh)"
  machine="$(readelf -h "$bin" | sed -n 's/^ *Machine: *//p')"
  case "$arch:$machine" in x86_64:*X86-64* | aarch64:*AArch64*) ;; *) fail "$arch: built for $machine" ;; esac
  max="$(objdump -T "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)"
  [ -n "$max" ] || fail "$arch: no GLIBC_ symbols: not linked dynamically against glibc?"
  [ "$(printf '%s\n2.17\n' "$max" | sort -V | tail -n 1)" = "2.17" ] || fail "$arch: needs GLIBC_$max (> 2.17)"
  needed="$(readelf -d "$bin" | grep NEEDED || true)"
  grep -q 'libc.so.6' <<<"$needed" || fail "$arch: libc.so.6 not among its libraries"
  grep -qi nvidia <<<"$needed" && fail "$arch: links NVML at build time (it must dlopen it)"
  grep -aq 'libnvidia-ml.so.1' "$bin" || fail "$arch: does not name libnvidia-ml.so.1 to dlopen"
  size=$(stat -c %s "$bin")
  [ "$size" -lt 10000000 ] || fail "$arch: $size bytes (goal: under 10 MB)"
  echo "agents-check: $arch: GLIBC_$max at most, $size bytes, glibc dynamic, NVML at run time"
done

# Without an NVIDIA driver here, --gpus nvml must fail at run time naming the library it
# dlopens (a build that linked NVML would not start at all, with the loader's words).
said="$("$dir/x86_64/gpubook-agent" serve --gpus nvml --socket "$work/nvml.sock" --state-dir "$work/nvml" 2>&1 || true)"
if [ ! -e /dev/nvidiactl ]; then
  grep -q 'cannot load libnvidia-ml.so.1' <<<"$said" || { echo "$said" >&2; fail "x86_64: --gpus nvml without a driver did not say so"; }
  echo "agents-check: x86_64 --gpus nvml with no driver: $said"
fi

mkdir -p "$work/x86_64" "$work/aarch64"
serve x86_64 "$work/x86_64/agent.sock" \
  "$dir/x86_64/gpubook-agent" serve --gpus sim:2 --socket "$work/x86_64/agent.sock" --state-dir "$work/x86_64/state"
serve aarch64-under-qemu "$work/aarch64/agent.sock" \
  qemu-aarch64 -L /usr/aarch64-linux-gnu "$dir/aarch64/gpubook-agent" serve --gpus sim:2 \
  --socket "$work/aarch64/agent.sock" --state-dir "$work/aarch64/state"

if [ -n "$root" ]; then
  [ -x "$root/bin/sh" ] || fail "$root is not a Debian root (scripts/debian11-root.sh makes one)"
  # sed reads all of ldd's output (head would close the pipe early: SIGPIPE under pipefail).
  glibc="$(chroot "$root" /usr/bin/ldd --version 2>/dev/null | sed -n '1s/.* //p')" || fail "cannot run ldd in $root"
  [ -n "$glibc" ] || fail "no glibc version from $root"
  mkdir -p "$root/opt/gpubook-check"
  cp "$dir/x86_64/gpubook-agent" "$root/opt/gpubook-check/gpubook-agent"
  rm -rf "$root/opt/gpubook-check/run" "$root/opt/gpubook-check/state"
  mkdir -p "$root/opt/gpubook-check/run"
  # The agent reads /proc (its jobs' processes): the host's, mounted for the run.
  mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
  serve "x86_64-in-debian11-chroot(glibc-$glibc)" "$root/opt/gpubook-check/run/agent.sock" \
    chroot "$root" /opt/gpubook-check/gpubook-agent serve --gpus sim:2 \
    --socket /opt/gpubook-check/run/agent.sock --state-dir /opt/gpubook-check/state
  wait 2>/dev/null || true
  umount "$root/proc" 2>/dev/null || true
fi
echo "agents-check: ok"
