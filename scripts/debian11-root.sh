#!/usr/bin/env bash
# Makes (once) a Debian 11 root, glibc 2.31, older than this machine's, to run the uploaded
# agent in with chroot: debootstrap from the Debian mirror, cached under /var/tmp so CI does
# not make it again each run. Prints its path.
#   ROOT=$(scripts/debian11-root.sh)
set -euo pipefail
root="${GPUBOOK_DEBIAN11_ROOT:-/var/tmp/gpubook-debian11-root}"
if [ ! -x "$root/usr/bin/ldd" ]; then
  if ! command -v debootstrap >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends debootstrap >&2
  fi
  rm -rf "$root.tmp"
  debootstrap --variant=minbase bullseye "$root.tmp" http://deb.debian.org/debian >&2
  rm -rf "$root"
  mv "$root.tmp" "$root"
fi
echo "$root"
