//! What the account holds: the one script that bridges at once to a running agent or reports
//! what is there, and its report read back.

use super::{deploy_error, DeployError};
use crate::ssh::Session;

/// What the account holds when no agent could be bridged to at once.
#[derive(Debug)]
pub(super) struct Probe {
    /// Why the home cannot take the agent.
    pub(super) no_home: Option<String>,
    /// ~/.local/share/gpubook/bin.
    pub(super) bin_dir: String,
    /// (version, sha256) of the installed personal binary of this version.
    pub(super) installed: Vec<(String, String)>,
    /// The personal agent's socket.
    pub(super) socket: String,
    /// The server's architecture, as its `uname -m` says.
    pub(super) arch: String,
    /// The personal agent that runs, when it was not bridged to at once.
    pub(super) running: Option<Running>,
}

/// A running personal agent, as its `personal-agent.pid` records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Running {
    /// Its version: crate version and the start of its binary's SHA-256.
    pub(super) version: String,
    /// The protocol major recorded when it was started (none in files of older clients).
    pub(super) major: Option<u32>,
    /// Whether its socket and binary are there.
    pub(super) usable: bool,
}

pub(super) const BRIDGE_OR_PROBE: &str = r#"
sys="$1"
# The builds this client carries, ARCH=VERSION each: the one for this machine's architecture.
arch=$(uname -m 2>/dev/null)
case "$arch" in arm64) arch=aarch64 ;; amd64) arch=x86_64 ;; esac
want=""
for p in $2; do case "$p" in "$arch="*) want="${p#*=}" ;; esac; done
if [ -S "$sys" ]; then
  bin="$3"
  if [ -z "$bin" ]; then
    for b in /usr/local/bin/gpubook-agent /usr/bin/gpubook-agent "$(command -v gpubook-agent 2>/dev/null)"; do
      if [ -n "$b" ] && [ -x "$b" ]; then bin="$b"; break; fi
    done
  fi
  [ -n "$bin" ] || bin=gpubook-agent
  echo "GPUBOOK-BRIDGE system $bin"
  exec "$bin" bridge --socket "$sys"
fi
if [ -z "${HOME:-}" ] || [ ! -d "$HOME" ]; then echo "nohome=no home directory (HOME=${HOME:-unset})"; echo GPUBOOK-PROBE-END; exit 0; fi
dir="$HOME/.local/share/gpubook/bin"
state="${XDG_STATE_HOME:-$HOME/.local/state}/gpubook"
if [ -n "${XDG_RUNTIME_DIR:-}" ]; then sock="$XDG_RUNTIME_DIR/gpubook/agent.sock"; else sock="/tmp/gpubook-$(id -u)/agent.sock"; fi
pid=""; ver=""; major=""; running=""
[ -f "$state/personal-agent.pid" ] && read -r pid ver major < "$state/personal-agent.pid"
if [ -n "$ver" ] && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
  if [ -S "$sock" ] && [ -x "$dir/gpubook-agent-$ver" ]; then
    # Our agent of exactly this version runs (or of any version, when this client carries
    # none for this architecture): bridged to at once.
    if { [ "$ver" = "$want" ] || [ -z "$want" ]; } && [ "$ver" != "$4" ]; then
      echo "GPUBOOK-BRIDGE personal $dir/gpubook-agent-$ver"
      exec "$dir/gpubook-agent-$ver" bridge --socket "$sock"
    fi
    running="$pid $ver ${major:--} 1"
  else
    running="$pid $ver ${major:--} 0"
  fi
fi
if ! mkdir -p "$dir" 2>/dev/null || [ ! -w "$dir" ]; then echo "nohome=cannot write $dir"; echo GPUBOOK-PROBE-END; exit 0; fi
echo "dir=$dir"
echo "sock=$sock"
echo "arch=${arch:-unknown}"
[ -n "$running" ] && echo "running=$running"
f="$dir/gpubook-agent-$want"
if [ -n "$want" ] && [ -e "$f" ]; then
  if [ -f "$f" ]; then s=$(sha256sum "$f" 2>/dev/null | cut -d' ' -f1); else s=notafile; fi
  echo "have=$want ${s:-unreadable}"
fi
echo GPUBOOK-PROBE-END
"#;

/// Reads one line (without its newline) from the start of a channel, byte by byte so that
/// nothing after it is taken from the agent's stream.
pub(super) async fn read_line(rd: &mut crate::ssh::ChannelReader) -> String {
    use tokio::io::AsyncReadExt;
    let mut line = Vec::new();
    while line.len() < 4096 {
        match rd.read_u8().await {
            Ok(b'\n') | Err(_) => break,
            Ok(b) => line.push(b),
        }
    }
    String::from_utf8_lossy(&line).into_owned()
}

impl Probe {
    /// Reads the probe's report (`first` is its first line, already read).
    pub(super) async fn read(
        session: &Session,
        first: String,
        mut rd: crate::ssh::ChannelReader,
    ) -> Result<Probe, DeployError> {
        use tokio::io::AsyncReadExt;
        let mut rest = Vec::new();
        let _ = rd.read_to_end(&mut rest).await;
        let text = format!("{first}\n{}", String::from_utf8_lossy(&rest));
        if !text.contains("GPUBOOK-PROBE-END") {
            return Err(deploy_error(
                session.server(),
                format!(
                    "looking for the gpubook agent failed (status {}): {}{}",
                    rd.exit_status().unwrap_or(-1),
                    text.trim(),
                    String::from_utf8_lossy(&rd.stderr()).trim()
                ),
            ));
        }
        let mut p = Probe {
            no_home: None,
            bin_dir: String::new(),
            installed: Vec::new(),
            socket: String::new(),
            arch: String::new(),
            running: None,
        };
        for line in text.lines() {
            match line.split_once('=') {
                Some(("nohome", why)) => p.no_home = Some(why.to_string()),
                Some(("dir", d)) => p.bin_dir = d.to_string(),
                Some(("sock", d)) => p.socket = d.to_string(),
                Some(("arch", a)) => p.arch = a.to_string(),
                Some(("running", r)) => {
                    let f: Vec<&str> = r.split(' ').collect();
                    if let [_pid, version, major, usable] = f[..] {
                        p.running = Some(Running {
                            version: version.to_string(),
                            major: major.parse().ok(),
                            usable: usable == "1",
                        });
                    }
                }
                Some(("have", vs)) => {
                    if let Some((v, s)) = vs.split_once(' ') {
                        p.installed.push((v.to_string(), s.to_string()));
                    }
                }
                _ => {}
            }
        }
        Ok(p)
    }

    pub(super) fn installed_sum(&self, version: &str) -> Option<&str> {
        self.installed
            .iter()
            .find(|(v, _)| v == version)
            .map(|(_, s)| s.as_str())
    }
}
