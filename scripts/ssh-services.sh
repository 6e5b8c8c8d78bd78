#!/usr/bin/env bash
# Installs what the SSH tests (crates/client/tests/ssh_*.rs) use for real: the OpenSSH server
# each test starts on 127.0.0.1 (its own port, host key and config) and the OpenSSH client tools
# (ssh -G resolves server names; ssh-keygen, ssh-agent and ssh-add make keys and hold them);
# passwd's useradd/chpasswd for the test users. Then it checks that sshd accepts a config.
#
# Source it (after scripts/calendar-services.sh, whose D-Bus and gnome-keyring the keyring test
# also uses) to get GPUBOOK_REQUIRE_SERVICES=1, so the SSH tests fail instead of skipping when a
# part is missing:
#     . scripts/ssh-services.sh
set -euo pipefail

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
for tool in ssh ssh-keygen ssh-agent ssh-add; do
  command -v "$tool" >/dev/null 2>&1 || { need+=(openssh-client); break; }
done
command -v useradd >/dev/null 2>&1 || need+=(passwd)
command -v sha256sum >/dev/null 2>&1 || need+=(coreutils)
command -v setsid >/dev/null 2>&1 || need+=(util-linux)
# The CI examples' test (crates/cli/tests/ci_examples_cli.rs) reads examples/ci/*.yml with PyYAML.
python3 -c 'import yaml' >/dev/null 2>&1 || need+=(python3-yaml)
if [ ${#need[@]} -gt 0 ]; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# sshd refuses to start without its privilege separation directory.
$sudo mkdir -p /run/sshd
check="$(mktemp -d)"
trap 'rm -rf "$check"' EXIT
ssh-keygen -q -t ed25519 -N "" -f "$check/host_key"
printf 'Port 2222\nListenAddress 127.0.0.1\nHostKey %s\nUsePAM yes\n' "$check/host_key" >"$check/sshd_config"
$sudo /usr/sbin/sshd -t -f "$check/sshd_config"
echo "ssh services: $(/usr/sbin/sshd -V 2>&1 | head -n 1)"

export GPUBOOK_REQUIRE_SERVICES=1
