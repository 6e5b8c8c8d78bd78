//! Errors as the web view receives them: typed, with a sentence a person understands.

use gpubook_client::deploy::DeployError;
use gpubook_client::endpoint::DialError;
use gpubook_client::ssh::SshErrorKind;
use gpubook_client::ClientError;
use gpubook_core::Conflict;
use gpubook_proto::ErrorKind;
use serde::{Deserialize, Serialize};

/// What went wrong, for the UI's logic: the agent's kinds plus the app's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export, export_to = "../app/"))]
#[serde(untagged)]
pub enum AppErrorKind {
    /// The agent refused or failed.
    Agent(ErrorKind),
    /// Something the app itself found.
    App(AppOnlyKind),
}

/// Error kinds that come from the app, not from an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export, export_to = "../app/"))]
#[serde(rename_all = "snake_case")]
pub enum AppOnlyKind {
    /// The server cannot be reached now.
    Unreachable,
    /// An SSH host key not seen before: `fingerprint` holds it for the person to accept.
    HostKeyUnknown,
    /// An SSH host key that differs from the remembered one.
    HostKeyChanged,
    /// Logging in failed.
    Auth,
    /// A bug or an unexpected failure in the app.
    Internal,
}

/// An error as the UI receives it (a rejected `invoke`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export, export_to = "../app/"))]
pub struct AppError {
    /// What kind of failure, for the UI's logic.
    pub kind: AppErrorKind,
    /// A sentence a person understands, naming the server where there is one.
    pub message: String,
    /// The server's id, when the error is about one.
    pub server: Option<String>,
    /// For refusals: the bookings in the way.
    pub conflicts: Vec<Conflict>,
    /// For host-key errors: the key's fingerprint.
    pub fingerprint: Option<String>,
    /// For `changed` (an approval or denial of a booking that changed since it was looked
    /// at): the booking's revision now, so the UI knows whether it shows the current shape.
    pub revision: Option<u32>,
}

impl AppError {
    /// An error of the app's own kind.
    pub fn app(kind: AppOnlyKind, message: impl Into<String>, server: Option<&str>) -> Self {
        Self {
            kind: AppErrorKind::App(kind),
            message: message.into(),
            server: server.map(str::to_string),
            conflicts: Vec::new(),
            fingerprint: None,
            revision: None,
        }
    }

    /// The same error, of kind `invalid` (bad input from the person).
    pub fn with_kind_invalid(mut self) -> Self {
        self.kind = AppErrorKind::Agent(ErrorKind::Invalid);
        self
    }

    /// A bug or unexpected failure.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::app(AppOnlyKind::Internal, message, None)
    }

    /// The server `id` (shown as `name`) is not connected now.
    pub fn unreachable(id: &str, name: &str, why: Option<&str>) -> Self {
        let mut message = format!("{name} cannot be reached right now");
        match why {
            Some(w) => message.push_str(&format!(" ({w}).")),
            None => message.push('.'),
        }
        message.push_str(" The app keeps trying and shows it as soon as it is back.");
        Self::app(AppOnlyKind::Unreachable, message, Some(id))
    }

    /// No server with this id.
    pub fn no_server(id: &str) -> Self {
        Self::app(
            AppOnlyKind::Internal,
            format!("There is no server \"{id}\" in the app; it may have been removed."),
            Some(id),
        )
    }

    /// A client error from the server `id` shown as `name`.
    pub fn from_client(e: ClientError, id: &str, name: &str) -> Self {
        match e {
            ClientError::Agent(body) => Self {
                kind: AppErrorKind::Agent(body.kind),
                message: format!("{name}: {}", body.message),
                server: Some(id.to_string()),
                conflicts: body.conflicts,
                fingerprint: None,
                revision: body.revision,
            },
            ClientError::Unreachable { error, .. } => {
                Self::unreachable(id, name, Some(&error.to_string()))
            }
            ClientError::ConnectionLost => Self {
                kind: AppErrorKind::Agent(ErrorKind::ConnectionLost),
                message: format!(
                    "The connection to {name} was lost before it answered; the change may or may not have been made. The calendar shows it once {name} is back."
                ),
                server: Some(id.to_string()),
                conflicts: Vec::new(),
                fingerprint: None,
                revision: None,
            },
            ClientError::Protocol(p) => Self {
                kind: AppErrorKind::Agent(ErrorKind::Malformed),
                message: format!("{name} answered something this app does not understand ({p}). Are the app and the agent of compatible versions?"),
                server: Some(id.to_string()),
                conflicts: Vec::new(),
                fingerprint: None,
                revision: None,
            },
        }
    }
}

impl AppError {
    /// A failure to reach server `id` (shown as `name`) over its transport.
    pub fn from_dial(e: DialError, id: &str, name: &str) -> Self {
        match e {
            DialError::Client(c) => Self::from_client(c, id, name),
            DialError::Deploy(d) => {
                if let Some(c) = d.client() {
                    return Self {
                        message: format!("{name}: {c}"),
                        ..Self::app(AppOnlyKind::Internal, "", Some(id))
                    };
                }
                let kind = match d.ssh_kind() {
                    Some(SshErrorKind::Unreachable) => AppErrorKind::App(AppOnlyKind::Unreachable),
                    Some(SshErrorKind::Auth) => AppErrorKind::App(AppOnlyKind::Auth),
                    Some(SshErrorKind::HostKeyUnknown) => {
                        AppErrorKind::App(AppOnlyKind::HostKeyUnknown)
                    }
                    Some(SshErrorKind::HostKeyChanged) => {
                        AppErrorKind::App(AppOnlyKind::HostKeyChanged)
                    }
                    Some(SshErrorKind::Config) => AppErrorKind::Agent(ErrorKind::Invalid),
                    _ => AppErrorKind::App(AppOnlyKind::Internal),
                };
                let fingerprint = match &d {
                    DeployError::Ssh(s) => s.fingerprint().map(str::to_string),
                    DeployError::Client { .. } => None,
                };
                Self {
                    kind,
                    message: upper_first(&d.to_string()),
                    server: Some(id.to_string()),
                    conflicts: Vec::new(),
                    fingerprint,
                    revision: None,
                }
            }
        }
    }
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AppError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_serialize_as_the_contract_says() {
        let e = AppError::unreachable("lab1", "lab1", None);
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["kind"], "unreachable");
        assert_eq!(v["server"], "lab1");
        assert!(v["conflicts"].as_array().unwrap().is_empty());
        assert!(v["fingerprint"].is_null());
        assert!(v["revision"].is_null());
        let a = AppError::from_client(
            ClientError::Agent(gpubook_proto::ErrorBody::new(
                ErrorKind::Conflict,
                "GPU 0 is taken",
            )),
            "local",
            "This computer",
        );
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v["kind"], "conflict");
        assert_eq!(v["message"], "This computer: GPU 0 is taken");
    }

    #[test]
    fn a_changed_booking_carries_its_revision_now() {
        let a = AppError::from_client(
            ClientError::Agent(gpubook_proto::ErrorBody {
                revision: Some(4),
                ..gpubook_proto::ErrorBody::new(
                    ErrorKind::Changed,
                    "booking 7 changed since you looked: GPU 0, 14:00 → 22:00, pending_approval",
                )
            }),
            "lab1",
            "lab1",
        );
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v["kind"], "changed");
        assert_eq!(v["revision"], 4);
        assert_eq!(
            v["message"],
            "lab1: booking 7 changed since you looked: GPU 0, 14:00 → 22:00, pending_approval"
        );
    }
}
