//! A failed command: its exit status, its message and its typed kind (for `--json`).

use anyhow::anyhow;
use gpubook_client::ClientError;
use gpubook_proto::ErrorKind;

/// An error that knows its exit status.
#[derive(Debug)]
pub struct Failure {
    /// The exit status.
    pub code: u8,
    /// What to print.
    pub error: anyhow::Error,
    /// The typed error, for --json.
    pub kind: Option<ErrorKind>,
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        match error.downcast_ref::<ClientError>() {
            Some(c) => {
                let kind = c.kind();
                Failure {
                    code: exit_code(kind),
                    kind: Some(kind),
                    error,
                }
            }
            None => Failure {
                code: 1,
                error,
                kind: None,
            },
        }
    }
}

/// Exit status: an approval or denial named a revision the booking no longer has.
pub const EXIT_CHANGED: u8 = 9;

pub fn exit_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Invalid | ErrorKind::UnknownRequest | ErrorKind::Malformed => 2,
        ErrorKind::Conflict
        | ErrorKind::Maintenance
        | ErrorKind::NotAllowed
        | ErrorKind::OverPolicy
        | ErrorKind::NotStarted
        | ErrorKind::Ended => 3,
        ErrorKind::NotFound => 4,
        ErrorKind::Unavailable | ErrorKind::ConnectionLost => 5,
        ErrorKind::Incompatible => 6,
        ErrorKind::Changed => EXIT_CHANGED,
        _ => 1,
    }
}

pub fn usage(msg: String) -> Failure {
    Failure {
        code: 2,
        error: anyhow!(msg),
        kind: Some(ErrorKind::Invalid),
    }
}
