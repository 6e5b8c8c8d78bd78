//! Reaching the agent on an SSH server.
//!
//! 1. A system agent (its socket at [`gpubook_proto::paths::SYSTEM_SOCKET`]) is used when it
//!    runs: through a direct-streamlocal channel to its socket where sshd allows it (sshd
//!    connects as the person who logged in), else `gpubook-agent bridge` of the system's
//!    install runs over an exec channel as that person; either way the agent sees their
//!    uid. It is never replaced or overwritten; a system agent of another protocol major is
//!    reported (the handshake refuses it).
//! 2. Otherwise the person's own agent: `~/.local/share/gpubook/bin/gpubook-agent-VERSION`,
//!    where VERSION is the client's crate version and the start of the binary's SHA-256
//!    (`0.1.0-0123456789abcdef`). When one is needed and missing or corrupt (its checksum
//!    differs): the binary this client carries is uploaded to a temporary name, its checksum
//!    verified on the server (`sha256sum`), and renamed into place — an interrupted upload
//!    leaves only the temporary file, removed by a later connect, which uploads again.
//! 3. It is started detached (`setsid`) as `serve --gpus nvml` in personal mode, with its
//!    state in ~/.local/state/gpubook, and waited for until its socket appears. Its pid, its
//!    VERSION and the protocol major of the client that started it are recorded in
//!    `personal-agent.pid` there. `$GPUBOOK_REMOTE_GPUS` (e.g. `sim:2`) replaces `nvml`: a
//!    server without NVML is reported, never silently simulated.
//! 4. Which agent is used: the version recorded in `personal-agent.pid` decides (the
//!    Welcome's `agent_version` carries only the crate version, which the handshake gives
//!    after the choice is made; the recorded one also names the binary to bridge with).
//!    A running personal agent
//!    - of exactly this VERSION is bridged to at once (one exec channel);
//!    - of a newer or the same crate version (semver order; the same crate version with
//!      another checksum counts as the same, so the app and the CLI of two builds, or two
//!      laptops, take turns on one agent instead of replacing each other) is used as it is:
//!      nothing is uploaded, nothing stopped;
//!    - of a newer protocol major (recorded, or named in its handshake's refusal) is left
//!      running and reported: "update gpubook";
//!    - older, of an older protocol major, with an unreadable version, or that does not
//!      answer the handshake (a corrupt binary) is replaced: this client's binary is
//!      uploaded if needed, the old agent gets SIGTERM, and the new one is started on the
//!      same state directory. Its running jobs are handed over, not waited for: jobs keep
//!      running when the agent stops (their processes are their own session's) and the next
//!      agent re-adopts them from the state directory (crates/agent/src/jobs.rs); the state
//!      directory's lock guarantees the old agent is gone before the new one opens it.
//!      Handing over rather than waiting means an upgrade never waits hours for a training
//!      run to end (tests/ssh_deploy.rs checks that a running job's process lives on and
//!      the new agent reports it running).
//!
//!    The crate version this client claims is its own, or [`DeployOptions::version`] /
//!    `$GPUBOOK_AGENT_VERSION` (for tests and packagers). Starts are serialised by a lock
//!    on the server; the start script stops only the agent the client decided to replace,
//!    so two clients connecting at once never stop each other's fresh agent.

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
    /// The crate version this client claims for the agent it carries, which decides
    /// whether a running personal agent is older: else `$GPUBOOK_AGENT_VERSION`, else this
    /// crate's version. For tests and packagers; one that is not a semantic version is
    /// refused.
    pub version: Option<String>,
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
/// system agent's socket is there, or when the person's agent of exactly this version runs,
/// and otherwise reports what the account holds. Then the running agent's version decides
/// (see the module's docs): used as it is when it is not older, else replaced.
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
    let claimed = claimed_version(&server, deploy)?;
    let version = local
        .as_ref()
        .map(|l| l.version(&claimed))
        .unwrap_or_default();
    // A running agent that did not answer its handshake: replaced on the next round.
    let mut broken: Option<String> = None;
    for round in 0..4 {
        let (mut rd, wr) = session
            .exec_stream(&sh(
                BRIDGE_OR_PROBE,
                &[
                    system_socket,
                    &version,
                    deploy.system_binary.as_deref().unwrap_or(""),
                    broken.as_deref().unwrap_or(""),
                ],
            ))
            .await?;
        let first = read_line(&mut rd).await;
        if let Some(how) = first.strip_prefix("GPUBOOK-BRIDGE ") {
            let (what, bin) = how.split_once(' ').unwrap_or((how, "gpubook-agent"));
            if what == "system" {
                let conn = handshake(session, rd, wr, bin, client).await?;
                return Ok((conn, Reached::System { streamlocal: false }));
            }
            let version = bin
                .rsplit_once("gpubook-agent-")
                .map(|(_, v)| v.to_string());
            match (handshake(session, rd, wr, bin, client).await, version) {
                (Ok(conn), _) => return Ok((conn, Reached::Running)),
                // Our own agent that does not answer, or speaks an older major: the next
                // round replaces it.
                (Err(e), Some(v)) => {
                    replaceable(e, &server, &v)?;
                    broken = Some(v);
                    continue;
                }
                (Err(e), None) => return Err(e),
            }
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
        // What runs now, and whether to use it or replace it.
        let mut replace = String::new();
        if let Some(running) = &probe.running {
            let verdict = if broken.as_deref() == Some(running.version.as_str()) {
                Verdict::Replace
            } else {
                verdict(&claimed, running)
            };
            match verdict {
                Verdict::TooNew(major) => {
                    return Err(too_new(&server, &running.version, major));
                }
                Verdict::Use if running.usable => {
                    let bin = format!("{}/gpubook-agent-{}", probe.bin_dir, running.version);
                    match bridge(session, &bin, &probe.socket, client).await {
                        Ok(conn) => return Ok((conn, Reached::Running)),
                        Err(e) => {
                            replaceable(e, &server, &running.version)?;
                            broken = Some(running.version.clone());
                        }
                    }
                    continue;
                }
                // Not older, but without its socket or binary: perhaps another client is
                // starting it right now. The start script waits for that start, then says
                // what runs; still unusable on a later round: replaced.
                Verdict::Use if round == 0 => {}
                Verdict::Use | Verdict::Replace => replace = running.version.clone(),
            }
        }
        let local = match local {
            Ok(ref l) => l,
            Err(e) => return Err(e),
        };
        let mut uploaded = false;
        if probe.installed_sum(&version) != Some(local.sha256.as_str()) {
            upload(session, local, &version).await?;
            uploaded = true;
        }
        let gpus = deploy
            .gpus
            .clone()
            .or_else(|| std::env::var("GPUBOOK_REMOTE_GPUS").ok())
            .filter(|g| !g.is_empty())
            .unwrap_or_else(|| "nvml".into());
        let Some(started) = start(session, &version, &gpus, &replace).await? else {
            // Another client started another agent meanwhile: look again.
            continue;
        };
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
        return Ok((conn, reached));
    }
    Err(deploy_error(
        &server,
        "the personal gpubook agent kept changing while connecting (other clients starting \
         other versions at once?); connect again",
    ))
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
    /// The personal agent's socket.
    socket: String,
    /// The personal agent that runs, when it was not bridged to at once.
    running: Option<Running>,
}

/// A running personal agent, as its `personal-agent.pid` records it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Running {
    /// Its version: crate version and the start of its binary's SHA-256.
    version: String,
    /// The protocol major recorded when it was started (none in files of older clients).
    major: Option<u32>,
    /// Whether its socket and binary are there.
    usable: bool,
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
pid=""; ver=""; major=""; running=""
[ -f "$state/personal-agent.pid" ] && read -r pid ver major < "$state/personal-agent.pid"
if [ -n "$ver" ] && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
  if [ -S "$sock" ] && [ -x "$dir/gpubook-agent-$ver" ]; then
    # Our agent of exactly this version runs (or of any version, when this client carries
    # none): bridged to at once.
    if { [ "$ver" = "$2" ] || [ -z "$2" ]; } && [ "$ver" != "$4" ]; then
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
[ -n "$running" ] && echo "running=$running"
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
            socket: String::new(),
            running: None,
        };
        for line in text.lines() {
            match line.split_once('=') {
                Some(("nohome", why)) => p.no_home = Some(why.to_string()),
                Some(("dir", d)) => p.bin_dir = d.to_string(),
                Some(("sock", d)) => p.socket = d.to_string(),
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

    /// The crate version this client claims and the start of the checksum.
    fn version(&self, claimed: &str) -> String {
        format!("{claimed}-{}", &self.sha256[..16])
    }
}

/// The crate version this client claims for the agent it carries: [`DeployOptions::version`],
/// else `$GPUBOOK_AGENT_VERSION`, else this crate's version. One that is not a semantic
/// version is refused, so no agent is named with a version no client can compare.
fn claimed_version(server: &str, deploy: &DeployOptions) -> Result<String, DeployError> {
    let claimed = deploy
        .version
        .clone()
        .or_else(|| std::env::var("GPUBOOK_AGENT_VERSION").ok())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string());
    if semver(&claimed).is_none() {
        return Err(deploy_error(
            server,
            format!(
                "the agent version {claimed:?} (GPUBOOK_AGENT_VERSION) is not a semantic version \
                 like 0.2.0; unset it"
            ),
        ));
    }
    Ok(claimed)
}

/// What to do with a running personal agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Not older than this client: use it as it is.
    Use,
    /// Older, of an older protocol major, or its version unreadable: replace it.
    Replace,
    /// Of a newer protocol major (this one): this client must be updated.
    TooNew(u32),
}

/// Compares a running agent with the crate version this client claims.
fn verdict(claimed: &str, running: &Running) -> Verdict {
    match running.major {
        Some(m) if m > gpubook_proto::PROTOCOL_MAJOR => return Verdict::TooNew(m),
        Some(m) if m < gpubook_proto::PROTOCOL_MAJOR => return Verdict::Replace,
        _ => {}
    }
    let theirs = crate_version(&running.version).and_then(semver);
    match (theirs, semver(claimed)) {
        (Some(theirs), Some(ours)) if theirs >= ours => Verdict::Use,
        _ => Verdict::Replace,
    }
}

/// The crate-version part of an agent's version (`CRATE-CHECKSUM16`).
fn crate_version(version: &str) -> Option<&str> {
    let (v, sum) = version.rsplit_once('-')?;
    (sum.len() == 16 && sum.bytes().all(|b| b.is_ascii_hexdigit())).then_some(v)
}

/// A semantic version as the `semver` crate reads it, with its build metadata dropped: semver
/// ignores build metadata in precedence, and an agent built twice is the same version.
fn semver(v: &str) -> Option<semver::Version> {
    let mut v = semver::Version::parse(v).ok()?;
    v.build = semver::BuildMetadata::EMPTY;
    Some(v)
}

/// The protocol major of an agent that refused the handshake as incompatible, from its
/// message ("this agent speaks protocol N.M ...").
fn refused_major(e: &DeployError) -> Option<u32> {
    let Some(ClientError::Agent(body)) = e.client() else {
        return None;
    };
    if body.kind != gpubook_proto::ErrorKind::Incompatible {
        return None;
    }
    let rest = &body.message[body.message.find("speaks protocol ")? + "speaks protocol ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// What a failed handshake with the person's own agent of `version` means: `Ok` when it is
/// to be replaced (it does not answer, its bridge fails, it speaks an older major), else the
/// error to report (a newer major: update gpubook; SSH failures and refusals as they are).
fn replaceable(e: DeployError, server: &str, version: &str) -> Result<(), DeployError> {
    match refused_major(&e) {
        Some(m) if m > gpubook_proto::PROTOCOL_MAJOR => return Err(too_new(server, version, m)),
        Some(_) => return Ok(()),
        None => {}
    }
    match &e {
        DeployError::Ssh(s) if s.kind() == SshErrorKind::Deploy => Ok(()),
        DeployError::Client {
            error: ClientError::ConnectionLost | ClientError::Protocol(_),
            ..
        } => Ok(()),
        _ => Err(e),
    }
}

/// A personal agent of a newer protocol major: left running, and this client must be
/// updated.
fn too_new(server: &str, version: &str, major: u32) -> DeployError {
    DeployError::Client {
        server: server.to_string(),
        error: ClientError::Agent(gpubook_proto::ErrorBody::new(
            gpubook_proto::ErrorKind::Incompatible,
            format!(
                "your gpubook agent there (version {version}) speaks protocol {major}, newer than \
                 this gpubook's protocol {}: update gpubook (the running agent was left as it is)",
                gpubook_proto::PROTOCOL_MAJOR
            ),
        )),
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
async fn start(
    session: &Session,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn running(version: &str, major: Option<u32>) -> Running {
        Running {
            version: version.into(),
            major,
            usable: true,
        }
    }

    #[test]
    fn semver_orders_as_semver_does() {
        let order = [
            "0.9.9",
            "0.10.0-alpha",
            "0.10.0-alpha.1",
            "0.10.0-alpha.beta",
            "0.10.0-beta.2",
            "0.10.0-beta.11",
            "0.10.0-rc.1",
            "0.10.0",
            "0.10.1",
            "1.0.0",
        ];
        for w in order.windows(2) {
            let (a, b) = (semver(w[0]).unwrap(), semver(w[1]).unwrap());
            assert!(a < b, "{} < {}", w[0], w[1]);
        }
        assert_eq!(semver("1.2.3+build"), semver("1.2.3"));
        for bad in ["", "1", "1.2", "1.2.x", "1.2.3-", "1.2.3-a..b", "v1.2.3"] {
            assert_eq!(semver(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_an_older_agent_is_replaced() {
        let sum = "0123456789abcdef";
        let major = Some(gpubook_proto::PROTOCOL_MAJOR);
        let v = |c: &str| format!("{c}-{sum}");
        // Newer or the same crate version (another checksum too): used as it is.
        assert_eq!(verdict("0.1.0", &running(&v("0.1.0"), major)), Verdict::Use);
        assert_eq!(verdict("0.1.0", &running(&v("0.2.0"), None)), Verdict::Use);
        assert_eq!(
            verdict("0.1.0", &running(&v("0.1.0-rc.1-x"), major)),
            Verdict::Replace
        );
        // Older: replaced; so is an unreadable version.
        assert_eq!(
            verdict("0.2.0", &running(&v("0.1.9"), major)),
            Verdict::Replace
        );
        assert_eq!(verdict("0.2.0", &running("0.3.0", major)), Verdict::Replace);
        assert_eq!(
            verdict("0.2.0", &running(&v("junk"), major)),
            Verdict::Replace
        );
        // The protocol major first.
        let newer = gpubook_proto::PROTOCOL_MAJOR + 1;
        assert_eq!(
            verdict("0.2.0", &running(&v("0.1.0"), Some(newer))),
            Verdict::TooNew(newer)
        );
        assert_eq!(
            verdict("0.2.0", &running(&v("9.0.0"), Some(0))),
            Verdict::Replace
        );
    }

    #[test]
    fn a_claimed_version_must_be_semver() {
        let with = |v: &str| DeployOptions {
            version: Some(v.into()),
            ..DeployOptions::default()
        };
        assert_eq!(claimed_version("lab1", &with("0.3.1")).unwrap(), "0.3.1");
        let e = claimed_version("lab1", &with("new"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("lab1") && e.contains("semantic version"), "{e}");
    }

    #[test]
    fn a_refusal_names_the_agents_major() {
        let refusal = |m: &str| DeployError::Client {
            server: "lab1".into(),
            error: ClientError::Agent(gpubook_proto::ErrorBody::new(
                gpubook_proto::ErrorKind::Incompatible,
                m,
            )),
        };
        let e = gpubook_proto::negotiate(gpubook_proto::PROTOCOL_MAJOR + 1, 0).unwrap_err();
        assert_eq!(
            refused_major(&refusal(&e.message)),
            Some(gpubook_proto::PROTOCOL_MAJOR)
        );
        assert_eq!(
            refused_major(&refusal("this agent speaks protocol 99; x")),
            Some(99)
        );
        assert_eq!(refused_major(&refusal("no idea")), None);
    }
}
