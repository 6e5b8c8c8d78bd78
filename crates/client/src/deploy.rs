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
//!    differs): the build this client carries for the server's architecture (its `uname -m`,
//!    asked by the same script that looks for a running agent; builds per architecture in
//!    [`PACKAGED_AGENTS`], see `deploy/builds.rs`; none for it: [`SshError::NoAgentBuild`])
//!    is uploaded to a temporary name, its checksum
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

use crate::ssh::{Options, Session, SshError, SshErrorKind, SshHost};
use crate::{ClientError, Connection};
use std::path::PathBuf;
use thiserror::Error;

pub use builds::{packaged_agent, PACKAGED_AGENTS};

mod builds;
mod probe;
mod start;
mod upload;
mod version;

use builds::Builds;
use probe::{read_line, Probe, BRIDGE_OR_PROBE};
use start::{bridge, handshake, start};
use upload::upload;
use version::{claimed_version, replaceable, too_new, verdict, Verdict};

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
    /// The one agent binary to upload, for the architecture its ELF header names; else
    /// [`agents_dir`](Self::agents_dir), else `$GPUBOOK_AGENT_BINARY`, else
    /// `$GPUBOOK_AGENTS_DIR`, else [`PACKAGED_AGENTS`] (see `deploy/builds.rs`).
    pub binary: Option<PathBuf>,
    /// Where the builds per architecture are (`<arch>/gpubook-agent`); `gpubook-agent` next
    /// to this program comes after them, for its own architecture.
    pub agents_dir: Option<PathBuf>,
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
    let target = SshHost::resolve_with(spec, &opts.env)?;
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
    let builds = Builds::find(&server, deploy);
    let claimed = claimed_version(&server, deploy)?;
    // One per architecture: the probe picks the one for the server's `uname -m`.
    let versions = builds
        .as_ref()
        .map(|b| b.versions(&claimed))
        .unwrap_or_default();
    // A running agent that did not answer its handshake: replaced on the next round.
    let mut broken: Option<String> = None;
    for round in 0..4 {
        let (mut rd, wr) = session
            .exec_stream(&sh(
                BRIDGE_OR_PROBE,
                &[
                    system_socket,
                    &versions,
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
        let local = match builds {
            Ok(ref b) => b.for_arch(&server, &probe.arch)?,
            Err(e) => return Err(e),
        };
        let version = local.version(&claimed);
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
        let Some(started) = start(session, local, &version, &gpus, &replace).await? else {
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
