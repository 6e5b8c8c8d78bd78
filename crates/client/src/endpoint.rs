//! Where an agent is: `local` (find the socket) or `unix:PATH`.

use std::path::PathBuf;

/// An agent's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix socket on this machine.
    Unix(PathBuf),
}

impl Endpoint {
    /// Parses `--server`: `local` or `unix:PATH`.
    pub fn parse(s: &str, uid: u32) -> Result<Self, String> {
        if s == "local" {
            return Ok(Endpoint::Unix(local_socket(uid)));
        }
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err("unix: needs a socket path, e.g. unix:/run/gpubook/agent.sock".into());
            }
            return Ok(Endpoint::Unix(PathBuf::from(p)));
        }
        Err(format!(
            "unknown server {s:?}: use local or unix:PATH (SSH servers come with the SSH transport)"
        ))
    }
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
