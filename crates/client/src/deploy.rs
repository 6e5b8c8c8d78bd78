//! Reaching the agent on an SSH server: the system agent if it runs, else the person's own,
//! uploaded and started when missing or older (being written).

use crate::ssh::{Options, SshError, SshErrorKind};
use crate::{ClientError, Connection};
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

    /// The protocol's error kind: SSH failures as unavailable (unreachable, auth, host key,
    /// deploy) or invalid (a name that cannot be used).
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

/// Resolve, connect, find or deploy the agent, run `gpubook-agent bridge` over an exec
/// channel, handshake.
pub async fn connect_agent(
    spec: &str,
    opts: &Options,
    client: &str,
) -> Result<Connection, DeployError> {
    let _ = (spec, opts, client);
    todo!()
}
