#!/usr/bin/env bash
# Builds the system agent's packages for servers from the portable builds of scripts/agents.sh
# (glibc 2.17 and up): dist/gpubook-agent_VERSION_{amd64,arm64}.deb with Debian's dpkg-deb,
# dist/gpubook-agent-VERSION-1.{x86_64,aarch64}.rpm with rpmbuild. The files are what
# `gpubook-agent install --system --package --root DIR --no-start` writes:
#   /usr/bin/gpubook-agent, /usr/lib/systemd/system/gpubook-agent.service,
#   /etc/gpubook/policy.toml (commented; a conffile: an admin's edits are kept)
# The maintainer scripts enable and start the unit on install, restart it on upgrade (its
# KillMode=process leaves running jobs alone; the new agent adopts them), stop and disable it
# on removal; /var/lib/gpubook (the bookings) is never removed.
# Usage: scripts/package-agent.sh VERSION
set -euo pipefail
cd "$(dirname "$0")/.."
version="$1"
stage="dist/stage/agent-pkg"
unit=gpubook-agent.service
has_systemd='[ -d /run/systemd/system ]'

postinst="#!/bin/sh
set -e
if [ \"\$1\" = configure ]; then
  if [ -z \"\$2\" ]; then
    # First install: enabled (works without a running systemd too), started where it runs.
    systemctl enable $unit >/dev/null 2>&1 || true
    if $has_systemd; then systemctl daemon-reload; systemctl start $unit || true; fi
  elif $has_systemd; then
    # Upgrade: the new binary runs; running jobs are left alone and re-adopted.
    systemctl daemon-reload
    systemctl try-restart $unit || true
  fi
fi
"
prerm="#!/bin/sh
set -e
if [ \"\$1\" = remove ]; then
  if $has_systemd; then systemctl stop $unit || true; fi
  systemctl disable $unit >/dev/null 2>&1 || true
fi
"
postrm="#!/bin/sh
set -e
# The bookings in /var/lib/gpubook and the jobs' logs stay, even on purge: they are the lab's.
if $has_systemd; then systemctl daemon-reload || true; fi
"

for arch in x86_64 aarch64; do
  bin="dist/agents/$arch/gpubook-agent"
  [ -x "$bin" ] || { echo "package-agent.sh: no $bin (run scripts/agents.sh)" >&2; exit 1; }
  root="$stage/$arch/root"
  rm -rf "$stage/$arch"
  mkdir -p "$root"
  # The files as today's installer lays them out, by the x86_64 build (it runs here).
  "dist/agents/x86_64/gpubook-agent" install --system --package --root "$root" --no-start >/dev/null
  install -m 0755 "$bin" "$root/usr/bin/gpubook-agent"
  # The state directory is systemd's (StateDirectory=), not the package's.
  rm -rf "$root/var"

  # .deb
  deb_arch=$([ $arch = x86_64 ] && echo amd64 || echo arm64)
  mkdir -p "$root/DEBIAN"
  cat > "$root/DEBIAN/control" <<EOF
Package: gpubook-agent
Version: $version
Architecture: $deb_arch
Maintainer: gpubook <gpubook@users.noreply.github.com>
Section: admin
Priority: optional
Installed-Size: $(du -sk "$root/usr" | cut -f1)
Recommends: systemd
Homepage: https://github.com/gpubook/gpubook
Description: gpubook agent: the lab's GPU bookings, enforced on this server
 The system service that holds a GPU server's bookings, runs booked jobs as their
 owners and stops them at their slots' ends. Users reach it with the gpubook app or
 CLI over SSH; its socket is /run/gpubook/agent.sock.
EOF
  echo /etc/gpubook/policy.toml > "$root/DEBIAN/conffiles"
  printf '%s' "$postinst" > "$root/DEBIAN/postinst"
  printf '%s' "$prerm" > "$root/DEBIAN/prerm"
  printf '%s' "$postrm" > "$root/DEBIAN/postrm"
  chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
  dpkg-deb --root-owner-group -Zxz --build "$root" "dist/gpubook-agent_${version}_${deb_arch}.deb" >/dev/null
  rm -rf "$root/DEBIAN"

  # .rpm ($1 in the scriptlets: how many versions are installed after the step)
  top="$PWD/$stage/$arch/rpm"
  mkdir -p "$top/SPECS"
  cat > "$top/SPECS/gpubook-agent.spec" <<EOF
Name: gpubook-agent
Version: $version
Release: 1
Summary: gpubook agent: the lab's GPU bookings, enforced on this server
License: MIT OR Apache-2.0
URL: https://github.com/gpubook/gpubook
%define debug_package %{nil}
%define __strip /bin/true
%define _build_id_links none
%description
The system service that holds a GPU server's bookings, runs booked jobs as their owners and
stops them at their slots' ends. Its socket is /run/gpubook/agent.sock.
%install
cp -a $PWD/$root/. %{buildroot}/
%files
/usr/bin/gpubook-agent
/usr/lib/systemd/system/gpubook-agent.service
%dir /etc/gpubook
%config(noreplace) /etc/gpubook/policy.toml
%post
if [ \$1 -eq 1 ]; then
  systemctl enable $unit >/dev/null 2>&1 || :
  if $has_systemd; then systemctl daemon-reload; systemctl start $unit || :; fi
elif $has_systemd; then
  systemctl daemon-reload; systemctl try-restart $unit || :
fi
%preun
if [ \$1 -eq 0 ]; then
  if $has_systemd; then systemctl stop $unit || :; fi
  systemctl disable $unit >/dev/null 2>&1 || :
fi
%postun
if $has_systemd; then systemctl daemon-reload || :; fi
EOF
  rpmbuild --quiet -bb --target "$arch" --define "_topdir $top" "$top/SPECS/gpubook-agent.spec" 2>&1 | grep -v '^warning: .*not a valid' || true
  cp "$top/RPMS/$arch/gpubook-agent-$version-1.$arch.rpm" dist/
done
ls -l dist/gpubook-agent*
