//! One SSH server connection, with the person's own SSH setup: the server name resolved as
//! `ssh` would ([`SshHost::resolve`]), the host key checked against known_hosts, the person
//! authenticated (ssh-agent, key files, keyboard-interactive, password), jump hosts followed,
//! and commands run on exec channels.
//!
//! libssh2 blocks, so each [`Session`] is a dedicated thread that owns the `ssh2::Session` and
//! every channel on it; async callers talk to it through messages. The thread serves all
//! channels at once (non-blocking libssh2, `poll` on the socket) and sends keepalives on a timer.
//!
//! Trust: a host key is accepted only when known_hosts has it, or when the person accepted it
//! (then it is appended there); a changed key is refused. Secrets (passphrases, passwords,
//! one-time codes) come from the OS keyring or a [`Prompt`], never from a file, and never reach
//! a log: anything holding one prints "hidden" in its Debug output.

mod auth;
mod config;
mod known_hosts;
mod session;

pub use config::{config_hosts, SshHost};
pub use known_hosts::{fingerprint, HostKey};
pub use session::{ChannelReader, ChannelWriter, Session};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// Asks the person for what the SSH setup does not hold: a secret, or a yes/no.
///
/// The CLI asks on the terminal; the app shows a dialog. Calls come from the session's own
/// thread and may block.
pub trait Prompt: Send + Sync + std::fmt::Debug {
    /// Ask for a secret (passphrase, password, one-time code). None = the person declined.
    fn secret(&self, server: &str, question: &str) -> Option<String>;
    /// Ask a yes/no question (store in keyring? accept this host key?).
    fn confirm(&self, question: &str) -> bool;
    /// A login to `server` begins (every connection, a reconnection too, logs in afresh): a
    /// prompt that answers each question once per login starts over. By default nothing.
    fn login_starts(&self, _server: &str) {}
}

/// How to connect beyond what the SSH config says.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Trust an unknown host key (and append it to known_hosts), as
    /// `--accept-new-host-key` asks. A changed key is refused regardless.
    pub accept_new_host_key: bool,
    /// Where to ask for secrets and confirmations; without one, a missing secret is an error.
    pub prompt: Option<Arc<dyn Prompt>>,
    /// Read passphrases and passwords from the OS keyring (and offer to store them there).
    pub keyring: bool,
    /// The person's SSH environment; by default this process's.
    pub env: SshEnv,
}

/// Where the person's SSH setup is: their home (~/.ssh), the config file and the ssh-agent.
/// Each field left `None` comes from this process (`$HOME`, `$GPUBOOK_SSH_CONFIG` else
/// ~/.ssh/config, `$SSH_AUTH_SOCK`).
#[derive(Debug, Clone, Default)]
pub struct SshEnv {
    /// The home whose ~/.ssh holds keys, config and known_hosts.
    pub home: Option<PathBuf>,
    /// The SSH config file (`ssh -F`).
    pub config: Option<PathBuf>,
    /// The ssh-agent's socket.
    pub agent_socket: Option<PathBuf>,
}

/// Where OpenSSH for Windows' ssh-agent service listens: a named pipe, which libssh2 opens.
#[cfg(windows)]
pub const WINDOWS_AGENT_PIPE: &str = r"\\.\pipe\openssh-ssh-agent";

impl SshEnv {
    /// The home directory in use.
    pub fn home(&self) -> PathBuf {
        self.home.clone().unwrap_or_else(config::process_home)
    }

    /// The ssh-agent's socket in use, if any. On Windows, without `SSH_AUTH_SOCK`, the named
    /// pipe of OpenSSH for Windows' agent service (libssh2 also tries Pageant there).
    pub fn agent_socket(&self) -> Option<PathBuf> {
        let env = self.agent_socket.clone().or_else(|| {
            std::env::var_os("SSH_AUTH_SOCK")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        });
        #[cfg(windows)]
        let env = env.or_else(|| Some(PathBuf::from(WINDOWS_AGENT_PIPE)));
        env
    }

    /// Whether `home` is the passwd entry's home (then OpenSSH finds ~/.ssh/config itself).
    pub(crate) fn home_is_own(&self, home: &Path) -> bool {
        config::passwd_home().as_deref() == Some(home)
    }
}

/// What a command run with [`Session::run`] gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Its exit status (-1 when the server did not say).
    pub status: i32,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
}

impl Output {
    /// Whether it exited with 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// Why an SSH connection, or a command on it, failed. Each message names the server and says
/// what to do.
#[derive(Debug, Error)]
pub enum SshError {
    /// The name is neither a Host of the SSH config nor a host that resolves.
    #[error("unknown server {server:?}: it is not a Host in ~/.ssh/config and not a host name that resolves ({detail}). Add it to ~/.ssh/config or use user@host[:port]")]
    UnknownAlias {
        /// The name as given.
        server: String,
        /// What the resolver said.
        detail: String,
    },
    /// The server name cannot be read.
    #[error("cannot read the server name {server:?}: {detail}. Use an alias from ~/.ssh/config, user@host[:port] or ssh://user@host[:port]")]
    BadSpec {
        /// The name as given.
        server: String,
        /// What is wrong.
        detail: String,
    },
    /// The SSH config could not be resolved (ssh -G failed, a ProxyJump loop).
    #[error("the SSH config for {server} cannot be used: {detail}")]
    Config {
        /// The server.
        server: String,
        /// What is wrong.
        detail: String,
    },
    /// No TCP connection (refused, no route) or the SSH handshake failed.
    #[error(
        "cannot reach {server} ({addr}): {detail}. Check that the host is up and that `{}` works",
        ssh_command(server)
    )]
    Unreachable {
        /// The server.
        server: String,
        /// The address tried.
        addr: String,
        /// Why.
        detail: String,
    },
    /// The server did not answer in time.
    #[error("{server} did not answer within {secs} s ({what}). Check the network, VPN or jump host; ConnectTimeout in ~/.ssh/config sets the limit")]
    Timeout {
        /// The server.
        server: String,
        /// What was waited for.
        what: String,
        /// The limit.
        secs: u64,
    },
    /// Every authentication method failed.
    #[error("cannot log in to {server} as {user}: tried {}. Check that `{}` works, or load your key with `ssh-add`", tried.join(", "), ssh_command(server))]
    Auth {
        /// The server.
        server: String,
        /// The remote user.
        user: String,
        /// What was tried, in order.
        tried: Vec<String>,
    },
    /// A key file's passphrase is wrong (or missing and nobody could be asked).
    #[error("the passphrase of {} for {server} is {}. {}", key.display(), if *missing { "needed" } else { "wrong" }, if *missing { "Load the key with `ssh-add`, or store the passphrase in the keyring from the app or a terminal" } else { "Type it again; a stored one was removed from the keyring if it was wrong" })]
    WrongPassphrase {
        /// The server.
        server: String,
        /// The key file.
        key: PathBuf,
        /// True when no passphrase could be had at all (no keyring entry, nobody to ask).
        missing: bool,
    },
    /// known_hosts has no key for this host.
    #[error("the host key of {server} is not known: {key_type} {fingerprint}. If that is the server's key (ask its admin), accept it (gpubook: --accept-new-host-key; or `{}` once)", ssh_command(server))]
    UnknownHostKey {
        /// The server.
        server: String,
        /// The key type, e.g. ssh-ed25519.
        key_type: String,
        /// SHA256:base64, as OpenSSH prints it.
        fingerprint: String,
        /// The key, to append to known_hosts once accepted.
        key: Box<HostKey>,
    },
    /// known_hosts has another key for this host: refused.
    #[error("the host key of {server} has CHANGED (now {key_type} {fingerprint}); known_hosts says otherwise at {}:{line}. Someone may be intercepting the connection. If the admin changed the key, remove that line (ssh-keygen -R {host}) and connect again", file.display())]
    ChangedHostKey {
        /// The server.
        server: String,
        /// The host name as known_hosts writes it.
        host: Box<str>,
        /// The presented key's type.
        key_type: String,
        /// The presented key's fingerprint.
        fingerprint: String,
        /// The known_hosts file holding the other key.
        file: PathBuf,
        /// Its line (1-based).
        line: usize,
    },
    /// known_hosts marks this very key `@revoked` (in any file, whatever another says): it is
    /// never accepted.
    #[error("the host key of {server} ({key_type} {fingerprint}) is REVOKED at {}:{line}: it must never be accepted, even where another known_hosts file lists it. Someone may be posing as the server with a stolen key. Ask its admin for the server's new key; do not remove that line", file.display())]
    RevokedHostKey {
        /// The server.
        server: String,
        /// The presented key's type.
        key_type: String,
        /// The presented key's fingerprint.
        fingerprint: String,
        /// The known_hosts file that revokes it.
        file: PathBuf,
        /// Its line (1-based).
        line: usize,
    },
    /// The remote account has no home directory it may write in.
    #[error("{server}: the account has no writable home directory ({detail}), so the personal gpubook agent cannot be installed. Ask the admin for a home, or to install the system agent (`gpubook-agent install --system`)")]
    NoWritableHome {
        /// The server.
        server: String,
        /// What the server said.
        detail: String,
    },
    /// The server's architecture (`uname -m`) has no agent build this gpubook carries.
    #[error("{server} is a {arch} machine, and this gpubook carries no agent build for {arch} (it has: {}; looked in {looked}). Ask the server's admin to install the gpubook-agent package or to run `gpubook-agent install --system` with a {arch} build, or build one for {arch} from source and set GPUBOOK_AGENT_BINARY to it", if have.is_empty() { "none".to_string() } else { have.join(", ") })]
    NoAgentBuild {
        /// The server.
        server: String,
        /// Its architecture, as its `uname -m` says.
        arch: String,
        /// The architectures this client has builds for.
        have: Vec<String>,
        /// Where builds were looked for.
        looked: String,
    },
    /// Deploying or starting the agent failed.
    #[error("{server}: {message}")]
    Deploy {
        /// The server.
        server: String,
        /// What went wrong and what to do.
        message: String,
    },
    /// The connection dropped.
    #[error("the SSH connection to {server} was lost ({reason}); it may come back: try again")]
    Lost {
        /// The server.
        server: String,
        /// What failed: libssh2's error, a hang-up.
        reason: String,
    },
    /// libssh2 failed in a way not covered above.
    #[error("SSH to {server} failed while {what}: {detail}")]
    Protocol {
        /// The server.
        server: String,
        /// What was being done.
        what: String,
        /// libssh2's message.
        detail: String,
    },
}

/// What kind of failure an [`SshError`] is, for exit codes and the app's error kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshErrorKind {
    /// The name cannot be used (unknown alias, bad spec, config).
    Config,
    /// The server cannot be reached now (or the connection dropped).
    Unreachable,
    /// Login refused (keys, password, passphrase).
    Auth,
    /// The host key is not known yet: ask the person.
    HostKeyUnknown,
    /// The host key changed: refused.
    HostKeyChanged,
    /// The agent could not be put on the server or started.
    Deploy,
}

impl SshErrorKind {
    /// The app's name for it (see notes/ipc.md).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "invalid",
            Self::Unreachable => "unreachable",
            Self::Auth => "auth",
            Self::HostKeyUnknown => "host_key_unknown",
            Self::HostKeyChanged => "host_key_changed",
            Self::Deploy => "internal",
        }
    }
}

impl SshError {
    /// What kind of failure this is.
    pub fn kind(&self) -> SshErrorKind {
        match self {
            Self::UnknownAlias { .. } | Self::BadSpec { .. } | Self::Config { .. } => {
                SshErrorKind::Config
            }
            Self::Unreachable { .. } | Self::Timeout { .. } | Self::Lost { .. } => {
                SshErrorKind::Unreachable
            }
            Self::Protocol { .. } => SshErrorKind::Unreachable,
            Self::Auth { .. } | Self::WrongPassphrase { .. } => SshErrorKind::Auth,
            Self::UnknownHostKey { .. } => SshErrorKind::HostKeyUnknown,
            Self::ChangedHostKey { .. } | Self::RevokedHostKey { .. } => {
                SshErrorKind::HostKeyChanged
            }
            Self::NoWritableHome { .. } | Self::NoAgentBuild { .. } | Self::Deploy { .. } => {
                SshErrorKind::Deploy
            }
        }
    }

    /// The host key's fingerprint, for host-key errors.
    pub fn fingerprint(&self) -> Option<&str> {
        match self {
            Self::UnknownHostKey { fingerprint, .. }
            | Self::ChangedHostKey { fingerprint, .. }
            | Self::RevokedHostKey { fingerprint, .. } => Some(fingerprint),
            _ => None,
        }
    }

    /// The server the error is about.
    pub fn server(&self) -> &str {
        match self {
            Self::UnknownAlias { server, .. }
            | Self::BadSpec { server, .. }
            | Self::Config { server, .. }
            | Self::Unreachable { server, .. }
            | Self::Timeout { server, .. }
            | Self::Auth { server, .. }
            | Self::WrongPassphrase { server, .. }
            | Self::UnknownHostKey { server, .. }
            | Self::ChangedHostKey { server, .. }
            | Self::RevokedHostKey { server, .. }
            | Self::NoWritableHome { server, .. }
            | Self::NoAgentBuild { server, .. }
            | Self::Deploy { server, .. }
            | Self::Lost { server, .. }
            | Self::Protocol { server, .. } => server,
        }
    }
}

/// The OpenSSH command that reaches `server` as gpubook names it: an alias or `user@host` as
/// it is, `user@host:port` as `ssh -p port user@host` (OpenSSH reads no port after a colon;
/// an `ssh://` URL it reads itself).
pub fn ssh_command(server: &str) -> String {
    if !server.starts_with("ssh://") {
        if let Some((host, port)) = server.rsplit_once(':') {
            let bracketed = host.contains('[');
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (bracketed || !host.contains(':'))
            {
                let host = host.replace(['[', ']'], "");
                return format!("ssh -p {port} {host}");
            }
        }
    }
    format!("ssh {server}")
}

#[cfg(test)]
mod tests {
    use super::ssh_command;

    #[test]
    fn the_ssh_command_a_person_can_paste() {
        assert_eq!(ssh_command("lab1"), "ssh lab1");
        assert_eq!(ssh_command("ana@lab1"), "ssh ana@lab1");
        assert_eq!(ssh_command("ana@10.0.0.5:2222"), "ssh -p 2222 ana@10.0.0.5");
        assert_eq!(ssh_command("ana@[fe80::1]:2222"), "ssh -p 2222 ana@fe80::1");
        assert_eq!(
            ssh_command("ssh://ana@lab1:2222"),
            "ssh ssh://ana@lab1:2222"
        );
        // A bare IPv6 address has colons but no port.
        assert_eq!(ssh_command("fe80::1"), "ssh fe80::1");
    }
}
