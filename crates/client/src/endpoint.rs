//! Where an agent is, and [`dial`] to reach it: `local` (find the socket), `unix:PATH`, or an
//! SSH server: an alias from `~/.ssh/config`, `user@host[:port]`, `ssh://[user@]host[:port]`.

use crate::connection::{ClientError, Connection};
use crate::deploy::{self, DeployError};
use crate::ssh;
use gpubook_proto::ErrorKind;
use std::path::PathBuf;
use thiserror::Error;

/// An agent's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix socket on this machine.
    Unix(PathBuf),
    /// An SSH server, as the person wrote it (resolved by [`ssh::SshHost::resolve`] on dial).
    Ssh(String),
}

/// Why a server address cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EndpointError {
    /// `unix:` with nothing after it.
    #[error("unix: needs a socket path, e.g. unix:/run/gpubook/agent.sock")]
    EmptySocketPath,
    /// Not any form of server address.
    #[error("{spec:?} is not a server: {why}. Use local, unix:PATH, an ssh alias, user@host[:port] or ssh://user@host[:port]")]
    Invalid {
        /// What was given.
        spec: String,
        /// What is wrong with it.
        why: String,
    },
}

impl Endpoint {
    /// Parses a server address: `local`, `unix:PATH`, an ssh alias, `user@host[:port]`,
    /// `ssh://[user@]host[:port]`. Checks the form only; nothing is contacted.
    pub fn parse(s: &str, uid: u32) -> Result<Self, EndpointError> {
        if s == "local" {
            return Ok(Endpoint::Unix(local_socket(uid)));
        }
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err(EndpointError::EmptySocketPath);
            }
            return Ok(Endpoint::Unix(PathBuf::from(p)));
        }
        check_ssh(s).map_err(|why| EndpointError::Invalid {
            spec: s.to_string(),
            why,
        })?;
        Ok(Endpoint::Ssh(s.to_string()))
    }

    /// Whether this is an SSH server (whose connection may drop and come back).
    pub fn is_ssh(&self) -> bool {
        matches!(self, Endpoint::Ssh(_))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Ssh(s) => f.write_str(s),
        }
    }
}

/// Checks `[ssh://][user@]host[:port]`.
fn check_ssh(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("it is empty".into());
    }
    if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("it contains {c:?}"));
    }
    if s.contains(',') {
        return Err("a comma separates servers; give them one by one".into());
    }
    let rest = s.strip_prefix("ssh://").unwrap_or(s);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') {
        return Err("a path is not part of an SSH server's address".into());
    }
    let host_port = match rest.rsplit_once('@') {
        Some((user, hp)) => {
            if user.is_empty() {
                return Err("the user before '@' is empty".into());
            }
            hp
        }
        None => rest,
    };
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, after)) => (h, after.strip_prefix(':')),
            None => return Err("an IPv6 address needs its closing ']'".into()),
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err("the host is empty".into());
    }
    if host.starts_with('-') {
        return Err("a host cannot start with '-'".into());
    }
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => {}
            _ => return Err(format!("{p:?} is not a port (1 to 65535)")),
        }
    }
    Ok(())
}

/// The local agent's socket: `$GPUBOOK_SOCKET`, else the system agent's if it runs, else
/// the person's own.
pub fn local_socket(uid: u32) -> PathBuf {
    if let Some(p) = gpubook_proto::paths::socket_from_env() {
        return p;
    }
    let system = PathBuf::from(gpubook_proto::paths::SYSTEM_SOCKET);
    if system.exists() {
        return system;
    }
    gpubook_proto::paths::personal_socket(uid)
}

/// Why [`dial`] got no connection.
#[derive(Debug, Error)]
pub enum DialError {
    /// The local socket, or the agent behind any transport, refused or failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// SSH or putting the agent on the server failed.
    #[error(transparent)]
    Deploy(#[from] DeployError),
}

impl DialError {
    /// The error as `{kind, message}`'s kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DialError::Client(c) => c.kind(),
            DialError::Deploy(d) => d.kind(),
        }
    }
}

/// Connects to the agent at `endpoint` and says hello as `client`: the socket directly, or
/// over SSH (putting the agent on the server first if it has none).
pub async fn dial(
    endpoint: &Endpoint,
    opts: &ssh::Options,
    client: &str,
) -> Result<Connection, DialError> {
    match endpoint {
        Endpoint::Unix(path) => Ok(Connection::unix(path, client).await?),
        Endpoint::Ssh(spec) => Ok(deploy::connect_agent(spec, opts, client).await?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_and_unix_stay_sockets() {
        assert!(matches!(
            Endpoint::parse("local", 1000),
            Ok(Endpoint::Unix(_))
        ));
        assert_eq!(
            Endpoint::parse("unix:/tmp/a.sock", 0),
            Ok(Endpoint::Unix("/tmp/a.sock".into()))
        );
        assert_eq!(
            Endpoint::parse("unix:", 0),
            Err(EndpointError::EmptySocketPath)
        );
    }

    #[test]
    fn ssh_forms_are_kept_as_written() {
        for s in [
            "lab1",
            "lab1.example.org",
            "alice@lab1",
            "alice@lab1:2222",
            "ssh://alice@lab1",
            "ssh://alice@lab1:2222",
            "ssh://lab1/",
            "alice@[::1]:22",
            "10.0.0.3:22",
        ] {
            assert_eq!(Endpoint::parse(s, 0), Ok(Endpoint::Ssh(s.into())), "{s}");
        }
    }

    #[test]
    fn bad_addresses_say_why() {
        for (s, why) in [
            ("", "empty"),
            ("a b", "' '"),
            ("a,b", "comma"),
            ("@host", "user"),
            ("alice@", "host is empty"),
            ("ssh://", "host is empty"),
            ("lab1:x", "port"),
            ("lab1:0", "port"),
            ("lab1:65536", "port"),
            ("ssh://lab1/path", "path"),
            ("-oProxyCommand=x", "'-'"),
            ("alice@[::1", "']'"),
        ] {
            match Endpoint::parse(s, 0) {
                Err(EndpointError::Invalid { why: w, .. }) => assert!(w.contains(why), "{s}: {w}"),
                other => panic!("{s}: {other:?}"),
            }
        }
    }
}
