//! Starting the person's agent detached, and bridging to it with a handshake.

use super::upload::LocalAgent;
use super::{deploy_error, quote, sh, DeployError, PACKAGED_AGENTS};
use crate::ssh::Session;
use crate::{ClientError, Connection};
use std::path::Path;

/// What the start script did.
#[derive(Debug)]
pub(super) struct Started {
    /// The agent's socket.
    pub(super) socket: String,
    /// Whether it started one now.
    pub(super) started: bool,
    /// The version it replaced.
    pub(super) replaced: Option<String>,
}

const START: &str = r#"
set -u
bin="$HOME/.local/share/gpubook/bin/gpubook-agent-$1"
state="${XDG_STATE_HOME:-$HOME/.local/state}/gpubook"
if [ -n "${XDG_RUNTIME_DIR:-}" ]; then sock="$XDG_RUNTIME_DIR/gpubook/agent.sock"; else sock="/tmp/gpubook-$(id -u)/agent.sock"; fi
mkdir -p "$state" || exit 3
# One start at a time (the app and the CLI may connect at once): the second waits, then
# finds the first one's agent running.
if command -v flock >/dev/null 2>&1; then exec 9>"$state/start.lock" && flock -w 30 9; fi
pidf="$state/personal-agent.pid"
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
pid=""; ver=""
[ -f "$pidf" ] && read -r pid ver _major < "$pidf"
if alive "$pid"; then
  # This version runs (another client started it meanwhile): used, unless it is the one to
  # replace (it did not answer).
  if [ "$ver" = "$1" ] && [ "$ver" != "$3" ] && [ -S "$sock" ]; then echo "socket=$sock"; exit 0; fi
  # Only the agent the client decided to replace ($3) is stopped; any other one (another
  # client started it meanwhile) is reported, and the client looks again.
  if [ -z "$3" ] || [ "$ver" != "$3" ]; then echo "other=$ver"; exit 0; fi
  # Older: stop it; its jobs keep running and the new agent re-adopts them.
  kill -TERM "$pid"
  i=0
  while alive "$pid"; do
    i=$((i+1)); if [ $i -gt 150 ]; then echo "the running agent (pid $pid, version $ver) did not stop within 15 s" >&2; exit 6; fi
    sleep 0.1
  done
  echo "replaced=$ver"
fi
# No agent of ours runs: a socket left behind is stale.
[ -S "$sock" ] && rm -f "$sock"
log="$state/agent.log"
cd / || exit 3
# Its own session, so it outlives this SSH session; the lock's descriptor is not passed on.
if command -v setsid >/dev/null 2>&1; then detach=setsid; else detach=nohup; fi
$detach "$bin" serve --gpus "$2" --state-dir "$state" --socket "$sock" </dev/null >>"$log" 2>&1 9>&- &
pid=$!
echo "$pid $1 $4" > "$pidf"
i=0
while [ ! -S "$sock" ]; do
  if ! alive "$pid"; then echo "the agent stopped at start:" >&2; tail -n 5 "$log" >&2; exit 7; fi
  i=$((i+1)); if [ $i -gt 200 ]; then echo "the agent did not open $sock within 20 s:" >&2; tail -n 5 "$log" >&2; exit 8; fi
  sleep 0.1
done
echo "started=$pid"
echo "socket=$sock"
"#;

/// Starts this version's agent, stopping the running one only when it is `replace`; `None`
/// when another agent than expected runs (nothing was done).
pub(super) async fn start(
    session: &Session,
    local: &LocalAgent,
    version: &str,
    gpus: &str,
    replace: &str,
) -> Result<Option<Started>, DeployError> {
    let major = gpubook_proto::PROTOCOL_MAJOR.to_string();
    let out = session
        .run(&sh(START, &[version, gpus, replace, &major]), b"")
        .await?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(deploy_error(
            session.server(),
            start_failure(&err, gpus, &local.path),
        ));
    }
    let mut s = Started {
        socket: String::new(),
        started: false,
        replaced: None,
    };
    for line in text.lines() {
        match line.split_once('=') {
            Some(("socket", p)) => s.socket = p.to_string(),
            Some(("started", _)) => s.started = true,
            Some(("replaced", v)) => s.replaced = Some(v.to_string()),
            Some(("other", _)) => return Ok(None),
            _ => {}
        }
    }
    if s.socket.is_empty() {
        return Err(deploy_error(
            session.server(),
            format!("the agent's start was not understood: {text:?}"),
        ));
    }
    Ok(Some(s))
}

/// What to tell the person when the start script failed with `err`: the loader's words made
/// plain for a build that needs a newer glibc than the server's, a hint for a server without
/// NVML.
fn start_failure(err: &str, gpus: &str, build: &Path) -> String {
    let err = err.trim();
    let lower = err.to_lowercase();
    // The loader: "version `GLIBC_2.34' not found (required by ...)".
    if let Some(at) = err.find("GLIBC_").filter(|_| lower.contains("not found")) {
        let needs: String = err[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
            .collect();
        return format!(
            "the gpubook agent build {} needs {needs}, newer than this server's C library, so it \
             cannot start there. Install the gpubook package (its agent builds in \
             {PACKAGED_AGENTS} run on glibc 2.17 and up) or build them with scripts/agents.sh and \
             set GPUBOOK_AGENTS_DIR to them. The server said: {err}",
            build.display()
        );
    }
    let hint = if gpus == "nvml" && (lower.contains("nvml") || lower.contains("nvidia")) {
        ". The server has no NVIDIA driver (NVML) the agent can use; to try gpubook there with simulated GPUs, set GPUBOOK_REMOTE_GPUS=sim:2"
    } else {
        ""
    };
    format!("starting the personal gpubook agent failed: {err}{hint}")
}

/// Runs `BIN bridge --socket SOCKET` and says hello through it.
pub(super) async fn bridge(
    session: &Session,
    bin: &str,
    socket: &str,
    client: &str,
) -> Result<Connection, DeployError> {
    let (rd, wr) = session
        .exec_stream(&format!(
            "exec {} bridge --socket {}",
            quote(bin),
            quote(socket)
        ))
        .await?;
    handshake(session, rd, wr, bin, client).await
}

/// Says hello over a bridge's channel; a bridge that failed is reported with what it said.
pub(super) async fn handshake(
    session: &Session,
    rd: crate::ssh::ChannelReader,
    wr: crate::ssh::ChannelWriter,
    bin: &str,
    client: &str,
) -> Result<Connection, DeployError> {
    let stderr_of = std::sync::Arc::new(std::sync::Mutex::new(None));
    let reader = Watched {
        inner: rd,
        seen: stderr_of.clone(),
    };
    match Connection::over(reader, wr, client).await {
        Ok(c) => Ok(c),
        Err(error) => {
            let said = stderr_of
                .lock()
                .unwrap()
                .take()
                .map(|e: String| e.trim().to_string())
                .filter(|e| !e.is_empty());
            match (error, said) {
                (ClientError::ConnectionLost, Some(said)) => Err(deploy_error(
                    session.server(),
                    format!("the gpubook agent's bridge ({bin}) failed: {said}"),
                )),
                (error, _) => Err(DeployError::Client {
                    server: session.server().to_string(),
                    error,
                }),
            }
        }
    }
}

/// A channel reader that, at its end, keeps the command's standard error for the message.
#[derive(Debug)]
struct Watched {
    /// The channel.
    pub(super) inner: crate::ssh::ChannelReader,
    /// Standard error once the output ended.
    pub(super) seen: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, std::task::Poll::Ready(_)) && buf.filled().len() == before {
            let e = String::from_utf8_lossy(&self.inner.stderr()).into_owned();
            *self.seen.lock().unwrap() = Some(e);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_glibc_too_old_is_said_plainly() {
        let loader = "the agent stopped at start:\n/home/u/.local/share/gpubook/bin/gpubook-agent-0.1.0-0123456789abcdef: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.34' not found (required by /home/u/.local/share/gpubook/bin/gpubook-agent-0.1.0-0123456789abcdef)";
        let m = start_failure(loader, "nvml", Path::new("/opt/gpubook/gpubook-agent"));
        assert!(
            m.contains("needs GLIBC_2.34, newer than this server's"),
            "{m}"
        );
        assert!(m.contains("/opt/gpubook/gpubook-agent"), "{m}");
        assert!(m.contains(PACKAGED_AGENTS) && m.contains("2.17"), "{m}");
        let nvml = start_failure(
            "cannot load libnvidia-ml.so.1",
            "nvml",
            Path::new("/x/gpubook-agent"),
        );
        assert!(nvml.contains("GPUBOOK_REMOTE_GPUS=sim:2"), "{nvml}");
        assert!(!nvml.contains("glibc"), "{nvml}");
    }
}
