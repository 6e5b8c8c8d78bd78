//! Errors as they cross the wire: `{kind, message}`, with the conflicting bookings or the
//! broken rule where there are some. `kind` is for programs, `message` for people.

use gpubook_core::{Conflict, PlanError, Rule};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What kind of error; programs match on this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Another booking holds the GPUs then; `conflicts` says which.
    Conflict,
    /// The person may not do this.
    NotAllowed,
    /// No such booking or GPU.
    NotFound,
    /// The request makes no sense.
    Invalid,
    /// Beyond the lab's policy, and not approvable; `rule` says which.
    OverPolicy,
    /// The agent cannot do it now (GPUs unreadable, store failing, shutting down).
    Unavailable,
    /// Protocol majors differ.
    Incompatible,
    /// A request type this agent does not know.
    UnknownRequest,
    /// A frame that is not a JSON message.
    Malformed,
    /// A frame over the size limit.
    TooLarge,
    /// The connection to the agent was lost before an answer came.
    ConnectionLost,
    /// A bug in the agent.
    Internal,
    /// The booking changed since the client looked (an approval or denial named an older
    /// revision); `revision` is the current one. Added in 1.2.
    Changed,
    /// The booking's slot has not started yet (what needs it on: the job's environment).
    /// Added in 1.3.
    NotStarted,
    /// The booking is over: its slot ended, or it was cancelled or denied. Added in 1.3.
    Ended,
    /// Some of the GPUs are out of service for maintenance then. Added in 1.4.
    Maintenance,
    /// A kind this client does not know (from a newer agent).
    #[serde(other)]
    Other,
}

impl ErrorKind {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Conflict => "conflict",
            Self::NotAllowed => "not_allowed",
            Self::NotFound => "not_found",
            Self::Invalid => "invalid",
            Self::OverPolicy => "over_policy",
            Self::Unavailable => "unavailable",
            Self::Incompatible => "incompatible",
            Self::UnknownRequest => "unknown_request",
            Self::Malformed => "malformed",
            Self::TooLarge => "too_large",
            Self::ConnectionLost => "connection_lost",
            Self::Internal => "internal",
            Self::Changed => "changed",
            Self::NotStarted => "not_started",
            Self::Ended => "ended",
            Self::Maintenance => "maintenance",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[error("{message}")]
pub struct ErrorBody {
    /// For programs.
    pub kind: ErrorKind,
    /// For people: a sentence that says what is wrong and, where it helps, what to do.
    pub message: String,
    /// For `conflict`: the bookings in the way (owner, GPUs, times).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<Conflict>,
    /// For `over_policy`: the rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
    /// For `changed`: the booking's current revision. Added in 1.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u32>,
}

impl ErrorBody {
    /// An error with no details.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            conflicts: Vec::new(),
            rule: None,
            revision: None,
        }
    }
}

impl From<PlanError> for ErrorBody {
    fn from(e: PlanError) -> Self {
        let message = e.to_string();
        match e {
            PlanError::Conflict(conflicts) => Self {
                kind: ErrorKind::Conflict,
                message,
                conflicts,
                rule: None,
                revision: None,
            },
            PlanError::NotAllowed(_) => Self::new(ErrorKind::NotAllowed, message),
            PlanError::Maintenance(_) => Self::new(ErrorKind::Maintenance, message),
            PlanError::Busy(_) => Self::new(ErrorKind::Conflict, message),
            PlanError::NotFound(_) => Self::new(ErrorKind::NotFound, message),
            PlanError::Invalid(_) => Self::new(ErrorKind::Invalid, message),
            PlanError::OverPolicy { rule, .. } => Self {
                kind: ErrorKind::OverPolicy,
                message,
                conflicts: Vec::new(),
                rule: Some(rule),
                revision: None,
            },
            PlanError::Changed { revision, .. } => Self {
                revision: Some(revision),
                ..Self::new(ErrorKind::Changed, message)
            },
        }
    }
}
