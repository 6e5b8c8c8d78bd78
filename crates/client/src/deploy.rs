//! Reaching the agent on an SSH server.
//!
//! 1. A system agent (its socket at [`gpubook_proto::paths::SYSTEM_SOCKET`]) is used when it
//!    runs: through a direct-streamlocal channel to its socket where sshd allows it (sshd
//!    connects as the person who logged in), else `gpubook-agent bridge` of the system's
//!    install runs over an exec channel as that person; either way the agent sees their uid. It is never replaced or overwritten; a
//!    system agent of another protocol major is reported (the handshake refuses it).
//! 2. Otherwise the person's own agent: `~/.local/share/gpubook/bin/gpubook-agent-VERSION`,
//!    where VERSION is the client's crate version and the start of the binary's SHA-256, so
//!    any other binary is another version. Missing or corrupt (its checksum differs): the
//!    binary this client carries is uploaded to a temporary name, its checksum verified on the
//!    server (`sha256sum`), and renamed into place — an interrupted upload leaves only the
//!    temporary file, removed by a later connect, which uploads again.
//! 3. It is started detached (`setsid`) as `serve --gpus nvml` in personal mode, with its
//!    state in ~/.local/state/gpubook, its pid and version in `personal-agent.pid` there, and
//!    waited for until its socket appears. `$GPUBOOK_REMOTE_GPUS` (e.g. `sim:2`) replaces
//!    `nvml`: a server without NVML is reported, never silently simulated.
//! 4. Upgrade: a running personal agent of another version gets SIGTERM; jobs keep running
//!    when the agent stops and the next agent on the same state directory re-adopts them
//!    (crates/agent/src/jobs.rs), so the new one takes them over without stopping them. The
//!    state directory's lock guarantees the old one is gone before the new one opens it.

use crate::ssh::{Options, Session, SshError, SshErrorKind, Target};
use crate::{ClientError, Connection};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use thiserror::Error;

/// Why the agent on a server could not be reached.
#[derive(Debug, Error)]
pub enum DeployError {
    /// SSH failed, or the agent could not be put there or started.
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// The agent was reached but refused the handshake (another major, ...).
    #[error("{server}: {error}")]
    Client {
        /// The server.
        server: String,
        /// The agent's answer.
        error: ClientError,
    },
}

impl DeployError {
    /// The kind of SSH failure, or `None` for the agent's own refusal (see [`Self::client`]).
    pub fn ssh_kind(&self) -> Option<SshErrorKind> {
        match self {
            DeployError::Ssh(e) => Some(e.kind()),
            DeployError::Client { .. } => None,
        }
    }

    /// The agent's refusal, if that is what this is.
    pub fn client(&self) -> Option<&ClientError> {
        match self {
            DeployError::Client { error, .. } => Some(error),
            DeployError::Ssh(_) => None,
        }
    }

    /// The protocol's error kind: unreachable and deploy failures as unavailable, login and
    /// host-key refusals as not allowed, a name that cannot be used as invalid.
    pub fn kind(&self) -> gpubook_proto::ErrorKind {
        match self {
            DeployError::Client { error, .. } => error.kind(),
            DeployError::Ssh(e) => match e.kind() {
                SshErrorKind::Config => gpubook_proto::ErrorKind::Invalid,
                SshErrorKind::Unreachable => gpubook_proto::ErrorKind::Unavailable,
                SshErrorKind::Auth
                | SshErrorKind::HostKeyUnknown
                | SshErrorKind::HostKeyChanged => gpubook_proto::ErrorKind::NotAllowed,
                SshErrorKind::Deploy => gpubook_proto::ErrorKind::Unavailable,
            },
        }
    }
}

/// What to deploy; by default from the environment.
#[derive(Debug, Clone, Default)]
pub struct DeployOptions {
    /// The agent binary to upload: else `$GPUBOOK_AGENT_BINARY`, else `gpubook-agent` next
    /// to this program.
    pub binary: Option<PathBuf>,
    /// `--gpus` of a personal agent: else `$GPUBOOK_REMOTE_GPUS`, else `nvml`.
    pub gpus: Option<String>,
    /// The system agent's socket on the server [default: the documented system place].
    pub system_socket: Option<String>,
    /// The system agent's binary on the server [default: found there, in /usr/local/bin,
    /// /usr/bin or on PATH].
    pub system_binary: Option<String>,
    /// Do not try a direct-streamlocal channel to the system agent first (always run the
    /// bridge on an exec channel).
    pub exec_only: bool,
}

/// Which agent a connection reached, and what was done to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reached {
    /// The system agent: through a direct-streamlocal channel to its socket
    /// (`streamlocal`), else through `gpubook-agent bridge` on an exec channel.
    System {
        /// Whether a direct-streamlocal channel reached it.
        streamlocal: bool,
    },
    /// The person's own agent, already running.
    Running,
    /// The person's own agent, started now (`uploaded`: the binary was uploaded first;
    /// `replaced`: the version of the agent it replaced).
    Started {
        /// Whether the binary was uploaded.
        uploaded: bool,
        /// The version of a running agent it replaced.
        replaced: Option<String>,
    },
}

/// Resolve, connect, find or deploy the agent, run `gpubook-agent bridge` over an exec
/// channel, handshake.
pub async fn connect_agent(
    spec: &str,
    opts: &Options,
    client: &str,
) -> Result<Connection, DeployError> {
    let (conn, _) = connect_agent_with(spec, opts, &DeployOptions::default(), client).await?;
    Ok(conn)
}

/// [`connect_agent`] with explicit deployment options; also says which agent it reached.
pub async fn connect_agent_with(
    spec: &str,
    opts: &Options,
    deploy: &DeployOptions,
    client: &str,
) -> Result<(Connection, Reached), DeployError> {
    let target = Target::resolve_with(spec, &opts.env)?;
    let session = Session::connect(&target, opts).await?;
    agent_over(&session, deploy, client).await
}

/// On a logged-in session: find or deploy the agent, bridge to it, handshake.
///
/// The usual case costs one exec channel: a script that runs the bridge at once when the
/// system agent's socket is there, or when the person's agent of this version runs, and
/// otherwise reports what the account holds (then the agent is uploaded and started).
pub async fn agent_over(
    session: &Session,
    deploy: &DeployOptions,
    client: &str,
) -> Result<(Connection, Reached), DeployError> {
    let server = session.server().to_string();
    let system_socket = deploy
        .system_socket
        .as_deref()
        .unwrap_or(gpubook_proto::paths::SYSTEM_SOCKET);
    // The system agent through a direct-streamlocal channel, where sshd allows it: no
    // process started on the server. Refused (not allowed, no socket): on to the exec way.
    if !deploy.exec_only {
        if let Ok((rd, wr)) = session.direct_streamlocal(system_socket).await {
            match Connection::over(rd, wr, client).await {
                Ok(conn) => return Ok((conn, Reached::System { streamlocal: true })),
                // The system agent answered and refused (another major): reported as is.
                Err(error @ ClientError::Agent(_)) => {
                    return Err(DeployError::Client { server, error })
                }
                Err(_) => {}
            }
        }
    }
    // Without a binary to upload the system agent may still be there: fail only when needed.
    let local = LocalAgent::find(&server, deploy);
    let version = local.as_ref().map(|l| l.version()).unwrap_or_default();
    let (mut rd, wr) = session
        .exec_stream(&sh(
            BRIDGE_OR_PROBE,
            &[
                system_socket,
                &version,
                deploy.system_binary.as_deref().unwrap_or(""),
            ],
        ))
        .await?;
    let first = read_line(&mut rd).await;
    if let Some(how) = first.strip_prefix("GPUBOOK-BRIDGE ") {
        let bin = how
            .split_once(' ')
            .map(|(_, b)| b)
            .unwrap_or("gpubook-agent");
        let reached = if how.starts_with("system") {
            Reached::System { streamlocal: false }
        } else {
            Reached::Running
        };
        let conn = handshake(session, rd, wr, bin, client).await?;
        return Ok((conn, reached));
    }
    drop(wr);
    let probe = Probe::read(session, first, rd).await?;
    if let Some(why) = &probe.no_home {
        return Err(SshError::NoWritableHome {
            server,
            detail: why.clone(),
        }
        .into());
    }
    let local = local?;
    let mut uploaded = false;
    if probe.installed_sum(&version) != Some(local.sha256.as_str()) {
        upload(session, &local, &version).await?;
        uploaded = true;
    }
    let gpus = deploy
        .gpus
        .clone()
        .or_else(|| std::env::var("GPUBOOK_REMOTE_GPUS").ok())
        .filter(|g| !g.is_empty())
        .unwrap_or_else(|| "nvml".into());
    let started = start(session, &version, &gpus).await?;
    let bin = format!("{}/gpubook-agent-{version}", probe.bin_dir);
    let conn = bridge(session, &bin, &started.socket, client).await?;
    let reached = if started.started {
        Reached::Started {
            uploaded,
            replaced: started.replaced,
        }
    } else {
        Reached::Running
    };
    Ok((conn, reached))
}

/// Quotes `s` for a POSIX shell.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `sh -c SCRIPT sh ARGS...`, whatever the login shell is.
fn sh(script: &str, args: &[&str]) -> String {
    let mut cmd = format!("sh -c {} sh", quote(script));
    for a in args {
        cmd.push(' ');
        cmd.push_str(&quote(a));
    }
    cmd
}

fn deploy_error(server: &str, message: impl Into<String>) -> DeployError {
    SshError::Deploy {
        server: server.to_string(),
        message: message.into(),
    }
    .into()
}

/// What the account holds when no agent could be bridged to at once.
#[derive(Debug)]
struct Probe {
    /// Why the home cannot take the agent.
    no_home: Option<String>,
    /// ~/.local/share/gpubook/bin.
    bin_dir: String,
    /// (version, sha256) of the installed personal binary of this version.
    installed: Vec<(String, String)>,
}

const BRIDGE_OR_PROBE: &str = r#"
sys="$1"
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
pid=""; ver=""
[ -f "$state/personal-agent.pid" ] && read -r pid ver < "$state/personal-agent.pid"
# Our agent of this version runs (or of any version, when this client carries none).
if [ -n "$ver" ] && { [ "$ver" = "$2" ] || [ -z "$2" ]; } && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ -S "$sock" ] && [ -x "$dir/gpubook-agent-$ver" ]; then
  echo "GPUBOOK-BRIDGE personal $dir/gpubook-agent-$ver"
  exec "$dir/gpubook-agent-$ver" bridge --socket "$sock"
fi
if ! mkdir -p "$dir" 2>/dev/null || [ ! -w "$dir" ]; then echo "nohome=cannot write $dir"; echo GPUBOOK-PROBE-END; exit 0; fi
echo "dir=$dir"
f="$dir/gpubook-agent-$2"
if [ -n "$2" ] && [ -e "$f" ]; then
  if [ -f "$f" ]; then s=$(sha256sum "$f" 2>/dev/null | cut -d' ' -f1); else s=notafile; fi
  echo "have=$2 ${s:-unreadable}"
fi
echo GPUBOOK-PROBE-END
"#;

/// Reads one line (without its newline) from the start of a channel, byte by byte so that
/// nothing after it is taken from the agent's stream.
async fn read_line(rd: &mut crate::ssh::ChannelReader) -> String {
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
    async fn read(
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
        };
        for line in text.lines() {
            match line.split_once('=') {
                Some(("nohome", why)) => p.no_home = Some(why.to_string()),
                Some(("dir", d)) => p.bin_dir = d.to_string(),
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

    fn installed_sum(&self, version: &str) -> Option<&str> {
        self.installed
            .iter()
            .find(|(v, _)| v == version)
            .map(|(_, s)| s.as_str())
    }
}

/// A file's size and modification time: when both are unchanged, so is its checksum.
type Stamp = (u64, Option<std::time::SystemTime>);

/// Checksums of agent binaries this process read already, so a connect hashes a binary of
/// tens of megabytes once, not every time. A plain mutex: never held across an await.
static CHECKSUMS: std::sync::Mutex<Vec<(PathBuf, Stamp, String)>> =
    std::sync::Mutex::new(Vec::new());

/// The agent binary this client carries.
#[derive(Debug)]
struct LocalAgent {
    /// Where it is.
    path: PathBuf,
    /// Its bytes, when they were read now (not when the checksum came from the cache).
    bytes: Option<Vec<u8>>,
    /// Their SHA-256, hex.
    sha256: String,
}

impl LocalAgent {
    fn find(server: &str, deploy: &DeployOptions) -> Result<Self, DeployError> {
        let path = deploy
            .binary
            .clone()
            .or_else(|| std::env::var_os("GPUBOOK_AGENT_BINARY").map(PathBuf::from))
            .or_else(|| {
                std::env::current_exe()
                    .ok()
                    .and_then(|e| e.parent().map(|d| d.join("gpubook-agent")))
            })
            .ok_or_else(|| {
                deploy_error(
                    server,
                    "no agent binary to upload: set GPUBOOK_AGENT_BINARY",
                )
            })?;
        let unreadable = |e: std::io::Error| {
            deploy_error(
                server,
                format!(
                    "no gpubook agent runs there and the agent binary to upload cannot be read at {}: {e}. Install gpubook-agent next to gpubook, or set GPUBOOK_AGENT_BINARY",
                    path.display()
                ),
            )
        };
        let meta = std::fs::metadata(&path).map_err(unreadable)?;
        let stamp = (meta.len(), meta.modified().ok());
        let known = CHECKSUMS
            .lock()
            .unwrap()
            .iter()
            .find(|(p, s, _)| *p == path && *s == stamp)
            .map(|(_, _, sum)| sum.clone());
        if let Some(sha256) = known {
            return Ok(Self {
                path,
                bytes: None,
                sha256,
            });
        }
        let bytes = std::fs::read(&path).map_err(unreadable)?;
        let sha256 = hex(&Sha256::digest(&bytes));
        let mut cache = CHECKSUMS.lock().unwrap();
        cache.retain(|(p, _, _)| *p != path);
        cache.push((path.clone(), stamp, sha256.clone()));
        Ok(Self {
            path,
            bytes: Some(bytes),
            sha256,
        })
    }

    /// Its bytes, read again when the checksum came from the cache.
    fn bytes(&self, server: &str) -> Result<std::borrow::Cow<'_, [u8]>, DeployError> {
        match &self.bytes {
            Some(b) => Ok(std::borrow::Cow::Borrowed(b)),
            None => {
                let b = std::fs::read(&self.path).map_err(|e| {
                    deploy_error(
                        server,
                        format!("cannot read the agent binary {}: {e}", self.path.display()),
                    )
                })?;
                if hex(&Sha256::digest(&b)) != self.sha256 {
                    return Err(deploy_error(
                        server,
                        format!(
                            "the agent binary {} changed while connecting; connect again",
                            self.path.display()
                        ),
                    ));
                }
                Ok(std::borrow::Cow::Owned(b))
            }
        }
    }

    /// The crate version and the start of the checksum.
    fn version(&self) -> String {
        format!("{}-{}", env!("CARGO_PKG_VERSION"), &self.sha256[..16])
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const UPLOAD: &str = r#"
set -u
dir="$HOME/.local/share/gpubook/bin"
final="$dir/gpubook-agent-$1"
# What an interrupted upload left behind.
find "$dir" -maxdepth 1 -name '.upload-*' -mmin +10 -exec rm -f {} + 2>/dev/null
tmp="$dir/.upload-$1-$$"
umask 022
if ! cat > "$tmp"; then rm -f "$tmp"; echo "writing $tmp failed (disk full?)" >&2; exit 3; fi
sum=$(sha256sum "$tmp" | cut -d' ' -f1)
if [ "$sum" != "$2" ]; then rm -f "$tmp"; echo "the uploaded agent's checksum is $sum, not $2 (the transfer was damaged)" >&2; exit 4; fi
chmod 755 "$tmp"
if [ -e "$final" ] && [ ! -f "$final" ]; then rm -f "$tmp"; echo "$final exists and is not a file gpubook made: remove it" >&2; exit 5; fi
if ! mv -f "$tmp" "$final"; then rm -f "$tmp"; echo "cannot replace $final: remove it" >&2; exit 5; fi
"#;

async fn upload(session: &Session, local: &LocalAgent, version: &str) -> Result<(), DeployError> {
    let out = session
        .run(
            &sh(UPLOAD, &[version, &local.sha256]),
            &local.bytes(session.server())?,
        )
        .await?;
    if !out.success() {
        return Err(deploy_error(
            session.server(),
            format!(
                "uploading the gpubook agent ({}) failed: {}. Connecting again retries",
                local.path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(())
}

/// What the start script did.
#[derive(Debug)]
struct Started {
    /// The agent's socket.
    socket: String,
    /// Whether it started one now.
    started: bool,
    /// The version it replaced.
    replaced: Option<String>,
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
[ -f "$pidf" ] && read -r pid ver < "$pidf"
if alive "$pid"; then
  if [ "$ver" = "$1" ] && [ -S "$sock" ]; then echo "socket=$sock"; exit 0; fi
  # Another version: stop it; its jobs keep running and the new agent re-adopts them.
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
echo "$pid $1" > "$pidf"
i=0
while [ ! -S "$sock" ]; do
  if ! alive "$pid"; then echo "the agent stopped at start:" >&2; tail -n 5 "$log" >&2; exit 7; fi
  i=$((i+1)); if [ $i -gt 200 ]; then echo "the agent did not open $sock within 20 s:" >&2; tail -n 5 "$log" >&2; exit 8; fi
  sleep 0.1
done
echo "started=$pid"
echo "socket=$sock"
"#;

async fn start(session: &Session, version: &str, gpus: &str) -> Result<Started, DeployError> {
    let out = session.run(&sh(START, &[version, gpus]), b"").await?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let lower = err.to_lowercase();
        let hint = if gpus == "nvml" && (lower.contains("nvml") || lower.contains("nvidia")) {
            ". The server has no NVIDIA driver (NVML) the agent can use; to try gpubook there with simulated GPUs, set GPUBOOK_REMOTE_GPUS=sim:2"
        } else {
            ""
        };
        return Err(deploy_error(
            session.server(),
            format!(
                "starting the personal gpubook agent failed: {}{hint}",
                err.trim()
            ),
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
            _ => {}
        }
    }
    if s.socket.is_empty() {
        return Err(deploy_error(
            session.server(),
            format!("the agent's start was not understood: {text:?}"),
        ));
    }
    Ok(s)
}

/// Runs `BIN bridge --socket SOCKET` and says hello through it.
async fn bridge(
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
async fn handshake(
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
    inner: crate::ssh::ChannelReader,
    /// Standard error once the output ended.
    seen: std::sync::Arc<std::sync::Mutex<Option<String>>>,
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
