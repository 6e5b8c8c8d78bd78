//! Where agents put their sockets, so clients find them without being told.

use std::path::PathBuf;

/// The system agent's socket (installed by an admin; jobs run as their owners).
pub const SYSTEM_SOCKET: &str = "/run/gpubook/agent.sock";

/// A personal agent's socket: `$XDG_RUNTIME_DIR/gpubook/agent.sock`, or
/// `/tmp/gpubook-UID/agent.sock` where there is no runtime directory.
pub fn personal_socket(uid: u32) -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("gpubook").join("agent.sock"),
        None => PathBuf::from(format!("/tmp/gpubook-{uid}")).join("agent.sock"),
    }
}

/// `$GPUBOOK_SOCKET` when set: the socket both the agent and the clients use, if given.
pub fn socket_from_env() -> Option<PathBuf> {
    std::env::var_os("GPUBOOK_SOCKET")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}
